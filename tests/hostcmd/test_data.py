"""M0 / M2 / M4 (encrypt, decrypt, translate data) through the host-command port, against a real
server.

Every ciphertext is checked against pyca/cryptography (tests/reference.py, nothing from hsmsvc)
under the clear key the fixture formed the stored key from.
"""

from __future__ import annotations

import secrets

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from tests import reference as ref
from tests.hostcmd.conftest import HostEnv

_BLOCK = {"dek": 8, "dek-aes": 16, "dek-b": 16}


def cipher(name: str, clear: bytes, data: bytes, iv: bytes | None, decrypt: bool = False) -> bytes:
    """ECB (iv None) or CBC encipherment of whole blocks, SP 800-38A 6.1 / 6.2."""
    c = Cipher(ref.primitive("TDES" if _BLOCK[name] == 8 else "AES", clear), modes.ECB() if iv is None
               else modes.CBC(iv))
    ctx = c.decryptor() if decrypt else c.encryptor()
    return ctx.update(data) + ctx.finalize()


def field(data: bytes, fmt: bytes = b"1") -> bytes:
    """Message length (4H, characters as sent) and the message in format ``fmt``."""
    out = data.hex().upper().encode() if fmt == b"1" else data
    return b"%04X" % len(out) + out


def m0(key: bytes, msg: bytes, *, code: bytes = b"M0", mode: bytes = b"00", fmt_in: bytes = b"1",
       fmt_out: bytes = b"1", key_type: bytes = b"00B", iv: bytes = b"") -> bytes:
    return code + mode + fmt_in + fmt_out + key_type + key + iv + msg


@pytest.mark.parametrize("name", ["dek", "dek-aes"])
@pytest.mark.parametrize("mode", [b"00", b"01"])
def test_encrypt_decrypt(host: HostEnv, name: str, mode: bytes) -> None:
    bs = _BLOCK[name]
    data, iv = secrets.token_bytes(4 * bs), secrets.token_bytes(bs)
    cbc = mode == b"01"
    want = cipher(name, host.clear[name], data, iv if cbc else None)
    iv_field = iv.hex().upper().encode() if cbc else b""
    chain = want[-bs:].hex().upper().encode() if cbc else b""  # the IV that continues the chain
    with host.host() as c:
        r = c.call(m0(host.tokens[name], field(data), mode=mode, iv=iv_field))
        assert (r.code, r.error, r.fields) == (b"M1", b"00", chain + field(want))
        r = c.call(m0(host.tokens[name], field(want), code=b"M2", mode=mode, iv=iv_field, key_type=b"FFF"))
        assert (r.code, r.error, r.fields) == (b"M3", b"00", chain + field(data))


def test_published_layout_and_binary_formats(host: HostEnv) -> None:
    # ut-codec-payshield's M0 fixture "0011 00B U… 0020 0400980C0002AE900AF140D0C21230D7" (ECB, hex in,
    # hex out), under the fixture's TDES DEK (the fixture's key is under an unknown LMK).
    data = bytes.fromhex("0400980C0002AE900AF140D0C21230D7")
    want = cipher("dek", host.clear["dek"], data, None)
    with host.host() as c:
        r = c.call(b"M0001100B" + host.tokens["dek"] + b"0020" + data.hex().upper().encode())
        assert (r.error, r.fields) == (b"00", b"0020" + want.hex().upper().encode())
        # Binary in, hex out; hex in, binary out (a plaintext whose ciphertext holds no X'19, which the
        # framing would take for the end of the message).
        plain = next(p for p in (secrets.token_bytes(16) for _ in range(100))
                     if b"\x19" not in p + cipher("dek", host.clear["dek"], p, None))
        ct = cipher("dek", host.clear["dek"], plain, None)
        assert c.call(m0(host.tokens["dek"], field(plain, b"0"), fmt_in=b"0")).fields == field(ct)
        assert c.call(m0(host.tokens["dek"], field(plain), fmt_out=b"0")).fields == field(ct, b"0")
        assert c.call(m0(host.tokens["dek"], field(ct, b"2"), code=b"M2", fmt_in=b"2", fmt_out=b"2")).fields \
            == field(plain, b"0")


def test_key_by_label(host: HostEnv) -> None:
    data = secrets.token_bytes(32)
    with host.host() as c:
        r = c.call(m0(host.label("dek-b"), field(data), key_type=b"00A"))
        assert (r.error, r.fields) == (b"00", field(cipher("dek-b", host.clear["dek-b"], data, None)))


def test_translate(host: HostEnv) -> None:
    """M4: TDES CBC under "dek" to AES CBC under "dek-b"; the result deciphers under the destination key
    with the IV M5 carries (hsmsvc's own, not the request's destination IV)."""
    data, src_iv, dst_iv = secrets.token_bytes(32), secrets.token_bytes(8), secrets.token_bytes(16)
    ct = cipher("dek", host.clear["dek"], data, src_iv)
    with host.host() as c:
        r = c.call(b"M4" + b"01" + b"01" + b"1" + b"1" + b"00B" + host.tokens["dek"] + b"FFF" + host.tokens["dek-b"]
                   + src_iv.hex().upper().encode() + dst_iv.hex().upper().encode() + field(ct))
        assert (r.code, r.error) == (b"M5", b"00")
        iv, rest = bytes.fromhex(r.fields[:32].decode()), r.fields[32:]
        assert int(rest[:4], 16) == len(rest) - 4 == 64
        assert cipher("dek-b", host.clear["dek-b"], bytes.fromhex(rest[4:].decode()), iv, decrypt=True) == data
        # ECB to ECB: no IVs either way.
        ct = cipher("dek-aes", host.clear["dek-aes"], data, None)
        r = c.call(b"M40000" + b"11" + b"00B" + host.label("dek-aes") + b"00B" + host.tokens["dek"] + field(ct))
        assert (r.error, r.fields) == (b"00", field(cipher("dek", host.clear["dek"], data, None)))


def _m4(host: HostEnv, **change: bytes) -> bytes:
    f = {"src_mode": b"00", "dst_mode": b"00", "fmt_in": b"1", "fmt_out": b"1", "src_type": b"00B",
         "src": host.tokens["dek"], "dst_type": b"00B", "dst": host.tokens["dek-b"], "msg": field(bytes(32))}
    f.update(change)
    return b"M4" + b"".join(f[k] for k in ("src_mode", "dst_mode", "fmt_in", "fmt_out", "src_type", "src",
                                           "dst_type", "dst", "msg"))


def test_refusals(host: HostEnv) -> None:
    tok = host.tokens["dek"]
    with host.host() as c:
        for request, error in [
            (m0(tok, field(bytes(16)), mode=b"02"), b"02"),  # CFB: not offered
            (m0(tok, field(bytes(16)), mode=b"0X"), b"02"),
            (m0(tok, field(bytes(16)), fmt_in=b"3"), b"03"),
            (m0(tok, field(bytes(16)), fmt_out=b"X"), b"04"),
            (m0(tok, field(bytes(16)), key_type=b"001"), b"05"),
            (m0(tok, b"00G0" + bytes(16).hex().encode()), b"06"),
            (m0(tok, b"0022" + bytes(16).hex().encode()), b"06"),
            (m0(tok, field(bytes(12))), b"80"),  # not whole blocks: no padding
            (m0(tok, field(bytes(16)) + b"00"), b"15"),
            (m0(tok, field(bytes(16)), mode=b"01", iv=b"00112233"), b"06"),  # IV too short: the length misread
            (m0(host.tokens["mak"], field(bytes(16)), key_type=b"FFF"), b"29"),
            (m0(b"L06hc.nop", field(bytes(16))), b"10"),
            (m0(tok, field(bytes(16)), code=b"M2", mode=b"03"), b"02"),
            (_m4(host, dst_mode=b"02"), b"07"),
            (_m4(host, src_mode=b"09"), b"02"),
            (_m4(host, fmt_out=b"7"), b"04"),
            (_m4(host, src_type=b"000"), b"05"),
            (_m4(host, dst_type=b"000"), b"08"),
            (_m4(host, dst=b"L06hc.nop"), b"11"),
            (_m4(host, src=b"L06hc.nop"), b"10"),
            (_m4(host, dst=host.tokens["zpk"]), b"29"),
            (_m4(host, msg=field(bytes(24))), b"80"),  # whole TDES blocks, not whole AES blocks
        ]:
            r = c.call(request)
            assert (r.error, r.fields) == (error, b""), request[:6]


def test_principal_without_the_method(host: HostEnv) -> None:
    with host.host("issuer") as c:
        for code in (b"M0", b"M2"):
            r = c.call(m0(host.tokens["dek"], field(bytes(16)), code=code))
            assert (r.code[:1], r.error, r.fields) == (b"M", b"17", b"")
        assert c.call(_m4(host)).error == b"17"
