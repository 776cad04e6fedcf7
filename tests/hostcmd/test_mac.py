"""M6 / M8 (generate and verify a MAC) through the host-command port, against a real server.

Every MAC is checked against tests/reference.py (pyca/cryptography only, nothing from hsmsvc)
under the clear key the fixture formed the stored key from.
"""

from __future__ import annotations

import secrets

import pytest

from tests import reference as ref
from tests.hostcmd.conftest import HostEnv

# nickntg/thalessimulatorlibrary, ThalesCore.Tests/HostCommandTests.vb (M6 / M8 tests): the HSM 8000
# form "0 1 03 2 003 U19D2…CA1 0040 <64H>" (mode 0, hex input, MAC algorithm 2N 03, padding 2, a TAK
# under the variant test LMK). In the payShield 10K form the 2N algorithm 03 is MAC size 0 and
# algorithm 3; the key is the fixture's "tak", that TAK decoded from the test LMK (testlmk.py).
NICK_MESSAGE = b"72C29C2371CC9BDB65B779B8E8D37B29ECC154AA56A8799FAE2F498F76ED92F2"
NICK_MAC = b"5F1448EE"


def pad(data: bytes, method: str, block: int = 8) -> bytes:
    """ISO/IEC 9797-1:2011 padding methods 1, 2 (0x80 then zeros) and 3 (a block holding the bit
    length of the data, then method 1); "0" is none."""
    if method == "2":
        data += b"\x80"
    elif method == "3":
        data = (8 * len(data)).to_bytes(block, "big") + data
    return data + bytes(-len(data) % block)


def m6(key: bytes, msg: bytes, *, mode: bytes = b"0", fmt: bytes = b"1", size: bytes = b"0", alg: bytes = b"3",
       padding: bytes = b"2", key_type: bytes = b"003", length: bytes | None = None, mac: bytes | None = None) -> bytes:
    """An M6, or with ``mac`` an M8, in the payShield 10K layout."""
    n = b"%04X" % len(msg) if length is None else length
    code = b"M6" if mac is None else b"M8"
    return code + mode + fmt + size + alg + padding + key_type + key + n + msg + (mac or b"")


def test_published_example(host: HostEnv) -> None:
    with host.host() as c:
        r = c.call(m6(host.tokens["tak"], NICK_MESSAGE))
        # The HSM 8000 simulator answers "00" "0008" "5F1448EE": its M7 has a 4H MAC length. payShield
        # 10K's M7 carries the MAC alone, as here.
        assert (r.code, r.error, r.fields) == (b"M7", b"00", NICK_MAC)
        assert ref.retail_mac(host.clear["tak"], pad(bytes.fromhex(NICK_MESSAGE.decode()), "2"))[:4].hex().upper() \
            == NICK_MAC.decode()
        r = c.call(m6(host.tokens["tak"], NICK_MESSAGE, mac=NICK_MAC))
        assert (r.code, r.error, r.fields) == (b"M9", b"00", b"")
        r = c.call(m6(host.tokens["tak"], NICK_MESSAGE, mac=b"5F1448EF"))
        assert (r.code, r.error) == (b"M9", b"01")


@pytest.mark.parametrize("padding", [b"0", b"1", b"2", b"3"])
@pytest.mark.parametrize("size", [b"0", b"1"])
def test_algorithm_1_under_a_zak(host: HostEnv, padding: bytes, size: bytes) -> None:
    data = secrets.token_bytes(24)
    want = ref.cbc_mac("TDES", host.clear["mak"], pad(data, padding.decode()))[:4 if size == b"0" else 8]
    with host.host() as c:
        r = c.call(m6(host.tokens["mak"], data.hex().encode(), size=size, alg=b"1", padding=padding,
                      key_type=b"008"))
        assert (r.error, r.fields) == (b"00", want.hex().upper().encode())
        r = c.call(m6(host.tokens["mak"], data.hex().encode(), size=size, alg=b"1", padding=padding,
                      key_type=b"008", mac=r.fields))
        assert r.error == b"00"


def test_cmac_binary_and_text_input(host: HostEnv) -> None:
    data = b"PAYMENT 0000123450 EUR"  # text, and binary without X'19
    want = ref.cmac("AES", host.clear["mak-cmac"], data)[:8]
    with host.host() as c:
        for fmt in (b"0", b"2"):
            r = c.call(m6(host.tokens["mak-cmac"], data, fmt=fmt, size=b"1", alg=b"6", padding=b"0", key_type=b"FFF"))
            assert (r.error, r.fields) == (b"00", want.hex().upper().encode())


def test_key_by_label(host: HostEnv) -> None:
    with host.host() as c:
        r = c.call(m6(host.label("tak"), NICK_MESSAGE))
        assert (r.error, r.fields) == (b"00", NICK_MAC)
        r = c.call(m6(host.label("tak"), NICK_MESSAGE, key_type=b"FFF", mac=NICK_MAC))
        assert r.error == b"00"


@pytest.mark.parametrize(("change", "error"), [
    ({"mode": b"1"}, b"02"),  # a first block of a chained message: not offered
    ({"mode": b"X"}, b"02"),
    ({"fmt": b"3"}, b"03"),
    ({"size": b"2"}, b"15"),
    ({"alg": b"2"}, b"04"),
    ({"alg": b"A"}, b"04"),
    ({"padding": b"4"}, b"09"),
    ({"key_type": b"001"}, b"05"),
    ({"key_type": b"008"}, b"29"),  # the TAK named as a ZAK
    ({"length": b"00G0"}, b"06"),
    ({"length": b"0041"}, b"06"),  # more than the message holds
    ({"length": b"0000"}, b"06"),
    ({"length": b"003F"}, b"15"),  # an odd count of hex characters (and one left over)
    ({"alg": b"6"}, b"29"),  # the TAK is bound to algorithm 3
])
def test_refusals(host: HostEnv, change: dict[str, bytes], error: bytes) -> None:
    with host.host() as c:
        r = c.call(m6(host.tokens["tak"], NICK_MESSAGE, **change))
        assert (r.code, r.error, r.fields) == (b"M7", error, b"")


def test_unpadded_message_must_be_whole_blocks(host: HostEnv) -> None:
    with host.host() as c:
        assert c.call(m6(host.tokens["tak"], NICK_MESSAGE[:-2], padding=b"0")).error == b"80"
        assert c.call(m6(host.tokens["tak"], NICK_MESSAGE + b"00", padding=b"0")).error == b"80"


def test_trailing_data_and_bad_mac(host: HostEnv) -> None:
    with host.host() as c:
        assert c.call(m6(host.tokens["tak"], NICK_MESSAGE) + b"00").error == b"15"
        assert c.call(m6(host.tokens["tak"], NICK_MESSAGE, mac=b"5F1448")).error == b"15"
        assert c.call(m6(host.tokens["tak"], NICK_MESSAGE, mac=b"5F1448EG")).error == b"15"


def test_wrong_keys(host: HostEnv) -> None:
    with host.host() as c:
        assert c.call(m6(host.tokens["zpk"], NICK_MESSAGE, key_type=b"FFF")).error == b"29"
        assert c.call(m6(host.tokens["dek"], NICK_MESSAGE, key_type=b"FFF", mac=NICK_MAC)).error == b"29"
        assert c.call(m6(b"L06hc.nop", NICK_MESSAGE)).error == b"10"
        # The variant-LMK cryptogram of the example itself: another HSM's key, a key scheme error.
        assert c.call(m6(b"U19D25F349FD03CC3556BB05F65283CA1", NICK_MESSAGE)).error == b"26"


def test_principal_without_the_method(host: HostEnv) -> None:
    with host.host("issuer") as c:
        r = c.call(m6(host.tokens["tak"], NICK_MESSAGE))
        assert (r.code, r.error, r.fields) == (b"M7", b"17", b"")
        assert c.call(m6(host.tokens["tak"], NICK_MESSAGE, mac=NICK_MAC)).error == b"17"
    with host.host("branch") as c:  # may use branch.* keys only: another's key is not found
        assert c.call(m6(host.tokens["tak"], NICK_MESSAGE)).error == b"10"
