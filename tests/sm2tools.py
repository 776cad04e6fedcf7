"""What the SM2 tests share: the curve's constants, its SubjectPublicKeyInfo form, and OpenSSL as
the independent SM2 verifier. Imports nothing from hsmsvc."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.reference import ec_mul

# sm2p256v1 (GB/T 32918.5-2017 clause 2): p, a, b, xG, yG, n.
CURVE = (
    0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF,
    0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC,
    0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93,
    0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7,
    0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0,
    0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123,
)
P, N = CURVE[0], CURVE[5]
G = (CURVE[3], CURVE[4])
DEFAULT_ID = b"1234567812345678"  # GB/T 35276-2017 clause 10: the default user ID
# SubjectPublicKeyInfo of an sm2p256v1 point: id-ecPublicKey and the curve OID 1.2.156.10197.1.301
# (GM/T 0006-2012), then the BIT STRING header of a 65-byte uncompressed point.
SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d034200")


def encode(point: tuple[int, int]) -> bytes:
    """04 || x || y (GB/T 32918.1-2016 clause 4.2.9)."""
    return b"\x04" + point[0].to_bytes(32, "big") + point[1].to_bytes(32, "big")


def spki(point: tuple[int, int]) -> bytes:
    return SPKI_PREFIX + encode(point)


def mul(k: int, point: tuple[int, int]) -> tuple[int, int]:
    """k * point by tests/reference.py's integers; never the point at infinity here."""
    out = ec_mul(CURVE, k, point)
    assert out is not None
    return out


def openssl() -> str:
    """The openssl command; a skip without it, a failure under CI."""
    tool = shutil.which("openssl")
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("openssl missing under CI")
        pytest.skip("openssl not installed")
    return tool


class OpenSslSm2Verifier:
    """``openssl pkeyutl -verify -digest sm3 -pkeyopt distid:...`` (GB/T 32918.2-2016) under one
    SubjectPublicKeyInfo, for DER SM2Signatures (GB/T 35276-2017 clause 7.3)."""

    def __init__(self, tmp: Path, public_der: bytes) -> None:
        self.tool, self.tmp = openssl(), tmp
        tmp.mkdir(parents=True, exist_ok=True)
        (tmp / "pub.der").write_bytes(public_der)
        made = subprocess.run([self.tool, "pkey", "-pubin", "-inform", "DER", "-in", "pub.der", "-out", "pub.pem"],
                              cwd=tmp, capture_output=True, text=True)
        if made.returncode != 0:
            if os.environ.get("CI"):
                pytest.fail(f"openssl lacks SM2: {made.stderr.strip()}")
            pytest.skip("this openssl has no SM2")

    def __call__(self, message: bytes, der_signature: bytes, uid: bytes = DEFAULT_ID) -> bool:
        (self.tmp / "msg").write_bytes(message)
        (self.tmp / "sig.der").write_bytes(der_signature)
        out = subprocess.run([self.tool, "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-in", "msg",
                              "-sigfile", "sig.der", "-digest", "sm3", "-pkeyopt", f"distid:{uid.decode()}"],
                             cwd=self.tmp, capture_output=True, text=True)
        return out.returncode == 0 and "Signature Verified Successfully" in out.stdout


def sm2cipher(der: bytes) -> tuple[tuple[int, int], bytes, bytes]:
    """C1, C3 and C2 of an SM2Cipher ::= SEQUENCE { x INTEGER, y INTEGER, hash OCTET STRING,
    ciphertext OCTET STRING } (GB/T 35276-2017 clause 7.2), DER, as OpenSSL writes it."""
    def read(buf: bytes, pos: int, tag: int) -> tuple[bytes, int]:
        assert buf[pos] == tag
        length, pos = buf[pos + 1], pos + 2
        if length & 0x80:
            n = length & 0x7F
            length, pos = int.from_bytes(buf[pos:pos + n], "big"), pos + n
        return buf[pos:pos + length], pos + length

    body, end = read(der, 0, 0x30)
    assert end == len(der)
    x, p = read(body, 0, 0x02)
    y, p = read(body, p, 0x02)
    c3, p = read(body, p, 0x04)
    c2, p = read(body, p, 0x04)
    assert p == len(body)
    return (int.from_bytes(x, "big"), int.from_bytes(y, "big")), c3, c2
