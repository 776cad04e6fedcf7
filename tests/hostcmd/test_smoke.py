from tests.hostcmd.conftest import HostEnv


def test_nc(host: HostEnv) -> None:
    with host.host() as c:
        r = c.call(b"NC")
        assert (r.code, r.error) == (b"ND", b"00")
