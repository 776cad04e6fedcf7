"""SM2 signature and encryption (GB/T 32918-2016 / GM/T 0003-2012).

OpenSSL through pyca/cryptography has SM3 and SM4 but no SM2 API, so the
protocol steps are written here and the scalar multiplications on sm2p256v1
are OpenSSL's libcrypto, through :mod:`hsmsvc_client.sm2curve`: its Montgomery
ladder does not branch on the scalar's bits. The standards' annex examples use a
test curve OpenSSL does not know; only they run on gmssl's arithmetic (which
also draws its nonces from Python's ``random``, so it never draws one here).
This module

* draws every nonce k with :mod:`secrets` in [1, n-1];
* computes Z_A itself with the caller's ID (default ``1234567812345678``,
  GB/T 35276-2017);
* hashes with OpenSSL's SM3 and checks points, ranges and C3 itself.

Ciphertexts are C1||C3||C2 with C1 uncompressed (GB/T 32918.4-2016;
GM/T 0003.4-2012 used C1||C2||C3). Signatures are r||s, 64 bytes; DER helpers
convert for peers that want ASN.1 (GM/T 0009-2012).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Final

from cryptography.hazmat.primitives import hashes
from gmssl.sm2 import CryptSM2
from hsmsvc_client import sm2curve

from hsmsvc.crypto import compare
from hsmsvc.errors import InvalidInput, VerificationFailed

__all__ = [
    "DEFAULT_ID",
    "SM2P256V1",
    "Curve",
    "PrivateKey",
    "PublicKey",
    "ciphertext_from_der",
    "decrypt",
    "encrypt",
    "generate_private_key",
    "private_key_from_d",
    "public_key_from_der",
    "public_key_to_der",
    "sign",
    "sign_digest",
    "signature_from_der",
    "signature_to_der",
    "sm3",
    "verify",
    "verify_digest",
    "za",
]

DEFAULT_ID: Final = b"1234567812345678"


@dataclass(frozen=True)
class Curve:
    """Short Weierstrass curve y^2 = x^3 + ax + b over Fp, base point order n."""

    name: str
    p: int
    a: int
    b: int
    gx: int
    gy: int
    n: int

    @property
    def size(self) -> int:
        return (self.p.bit_length() + 7) // 8

    def contains(self, x: int, y: int) -> bool:
        if not (0 <= x < self.p and 0 <= y < self.p):
            return False
        return (y * y - (x * x * x + self.a * x + self.b)) % self.p == 0


SM2P256V1: Final = Curve(
    "sm2p256v1",  # GB/T 32918.5-2017 recommended parameters
    p=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF,
    a=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC,
    b=0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93,
    gx=0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7,
    gy=0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0,
    n=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123,
)


@dataclass(frozen=True)
class PublicKey:
    x: int
    y: int
    curve: Curve = SM2P256V1

    def __post_init__(self) -> None:
        if not self.curve.contains(self.x, self.y):
            raise InvalidInput("public_key", "a point on the curve")

    def encode(self) -> bytes:
        """Uncompressed point 04||x||y (GB/T 32918.1-2016)."""
        s = self.curve.size
        return b"\x04" + self.x.to_bytes(s, "big") + self.y.to_bytes(s, "big")

    @classmethod
    def decode(cls, data: bytes, curve: Curve = SM2P256V1) -> PublicKey:
        """The uncompressed form 04 || x || y only (a public key's, as SubjectPublicKeyInfo carries it)."""
        s = curve.size
        if not isinstance(data, (bytes, bytearray)) or len(data) != 1 + 2 * s or data[0] != 4:
            raise InvalidInput("public_key", f"uncompressed point of {1 + 2 * s} bytes")
        return cls(int.from_bytes(data[1 : 1 + s], "big"), int.from_bytes(data[1 + s :], "big"), curve)

    @classmethod
    def decompress(cls, data: bytes, curve: Curve = SM2P256V1) -> PublicKey:
        """The compressed form 02 || x or 03 || x (GB/T 32918.1-2016 clause 4.2.10, annex A.5.2):
        y is the square root of x^3 + ax + b of the prefix's parity. p = 3 mod 4 on both curves used
        here, so the root is a power (annex B.1.3)."""
        s = curve.size
        if not isinstance(data, (bytes, bytearray)) or len(data) != 1 + s or data[0] not in (2, 3):
            raise InvalidInput("point", f"compressed point of {1 + s} bytes")
        p = curve.p
        if p % 4 != 3:
            raise InvalidInput("point", "compressed points on this curve are not supported")
        x = int.from_bytes(data[1:], "big")
        if x >= p:
            raise InvalidInput("point", "x not below p")
        rhs = (x * x * x + curve.a * x + curve.b) % p
        y = pow(rhs, (p + 1) // 4, p)
        if y * y % p != rhs:
            raise InvalidInput("point", "not on the curve")
        if y & 1 != data[0] & 1:
            y = p - y
        return cls(x, y, curve)


@dataclass(frozen=True)
class PrivateKey:
    d: int = field(repr=False)
    public: PublicKey

    def __post_init__(self) -> None:
        if not 1 <= self.d <= self.public.curve.n - 2:
            raise InvalidInput("private_key", "in [1, n-2]")

    def __repr__(self) -> str:
        return "PrivateKey(<redacted>)"


def _engine(curve: Curve, d: int = 0, public: PublicKey | None = None) -> CryptSM2:
    s = curve.size * 2
    table = {
        "n": f"{curve.n:0{s}x}",
        "p": f"{curve.p:0{s}x}",
        "g": f"{curve.gx:0{s}x}{curve.gy:0{s}x}",
        "a": f"{curve.a:0{s}x}",
        "b": f"{curve.b:0{s}x}",
    }
    eng = CryptSM2(private_key=f"{d:0{s}x}", public_key="", ecc_table=table)
    # Set after construction: gmssl's constructor lstrip("04")s the hex.
    eng.public_key = f"{public.x:0{s}x}{public.y:0{s}x}" if public else ""
    return eng


def _mul(curve: Curve, k: int, x: int, y: int) -> tuple[int, int]:
    """k (x, y); on sm2p256v1 by OpenSSL's ladder, on an annex test curve by gmssl."""
    if curve is SM2P256V1 or curve == SM2P256V1:
        out = (sm2curve.mul_base(k) if (x, y) == (curve.gx, curve.gy) else sm2curve.mul(k, (x, y)))
        if out is None:
            raise InvalidInput("point", "not the point at infinity")
        return out
    s = curve.size * 2
    raw = _engine(curve)._kg(k % curve.n, f"{x:0{s}x}{y:0{s}x}")
    if raw is None:
        raise InvalidInput("point", "not the point at infinity")
    return int(raw[:s], 16), int(raw[s:], 16)


def _add(curve: Curve, a: tuple[int, int] | None, b: tuple[int, int] | None) -> tuple[int, int] | None:
    """a + b in affine coordinates (None: the point at infinity), on any short Weierstrass curve."""
    if a is None:
        return b
    if b is None:
        return a
    p = curve.p
    if a[0] == b[0]:
        if (a[1] + b[1]) % p == 0:
            return None
        lam = (3 * a[0] * a[0] + curve.a) * pow(2 * a[1], -1, p) % p
    else:
        lam = (b[1] - a[1]) * pow(b[0] - a[0], -1, p) % p
    x3 = (lam * lam - a[0] - b[0]) % p
    return x3, (lam * (a[0] - x3) - a[1]) % p


def generate_private_key(curve: Curve = SM2P256V1) -> PrivateKey:
    """A fresh key pair, d uniform in [1, n-2] (GB/T 32918.1-2016)."""
    return private_key_from_d(secrets.randbelow(curve.n - 2) + 1, curve)


def private_key_from_d(d: int, curve: Curve = SM2P256V1) -> PrivateKey:
    """The key pair of scalar ``d``: P = dG."""
    if not isinstance(d, int) or not 1 <= d <= curve.n - 2:
        raise InvalidInput("private_key", "in [1, n-2]")
    x, y = _mul(curve, d, curve.gx, curve.gy)
    return PrivateKey(d, PublicKey(x, y, curve))


# SubjectPublicKeyInfo { AlgorithmIdentifier { id-ecPublicKey, sm2p256v1
# (1.2.156.10197.1.301, GM/T 0006-2012) }, BIT STRING 04||x||y }.
_SPKI_PREFIX: Final = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d034200")


def public_key_to_der(public: PublicKey) -> bytes:
    """X.509 SubjectPublicKeyInfo DER of an sm2p256v1 key (GB/T 35276-2017 clause 7)."""
    if public.curve != SM2P256V1:
        raise InvalidInput("public_key", "sm2p256v1 only")
    return _SPKI_PREFIX + public.encode()


def public_key_from_der(der: bytes) -> PublicKey:
    """Inverse of :func:`public_key_to_der`; only the sm2p256v1 encoding is accepted."""
    if (not isinstance(der, (bytes, bytearray)) or len(der) != len(_SPKI_PREFIX) + 65
            or not der.startswith(_SPKI_PREFIX)):
        raise InvalidInput("public_key", "SubjectPublicKeyInfo DER of an sm2p256v1 key")
    return PublicKey.decode(bytes(der[len(_SPKI_PREFIX) :]))


def _der_read(der: bytes, pos: int, tag: int) -> tuple[bytes, int]:
    if der[pos] != tag:
        raise ValueError
    n = der[pos + 1]
    pos += 2
    if n & 0x80:  # long form, at most two length bytes here
        width = n & 0x7F
        if width not in (1, 2):
            raise ValueError
        n = int.from_bytes(der[pos : pos + width], "big")
        pos += width
    if pos + n > len(der):
        raise ValueError
    return der[pos : pos + n], pos + n


def ciphertext_from_der(der: bytes, curve: Curve = SM2P256V1) -> bytes:
    """GB/T 35276-2017 SM2Cipher DER SEQUENCE { x, y, C3, C2 } to C1||C3||C2.

    OpenSSL's ``pkeyutl -encrypt`` and most GM/T 0009 devices emit this form.
    """
    try:
        body, end = _der_read(bytes(der), 0, 0x30)
        if end != len(der):
            raise ValueError
        pos, parts = 0, []
        for tag in (0x02, 0x02, 0x04, 0x04):
            v, pos = _der_read(body, pos, tag)
            parts.append(v)
        if pos != len(body):
            raise ValueError
    except (ValueError, IndexError):
        raise InvalidInput("ciphertext", "does not decrypt") from None
    x, y, c3, c2 = parts
    s = curve.size
    xi, yi = int.from_bytes(x, "big"), int.from_bytes(y, "big")
    if xi >= 1 << (8 * s) or yi >= 1 << (8 * s) or len(c3) != 32:
        raise InvalidInput("ciphertext", "does not decrypt")
    return b"\x04" + xi.to_bytes(s, "big") + yi.to_bytes(s, "big") + c3 + c2


def sm3(data: bytes) -> bytes:
    """SM3 hash (GB/T 32905-2016) through OpenSSL.

    >>> sm3(b"abc").hex()
    '66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0'
    """
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize()


def za(public: PublicKey, uid: bytes = DEFAULT_ID) -> bytes:
    """Z_A = SM3(ENTL_A || ID_A || a || b || x_G || y_G || x_A || y_A) (GB/T 32918.2-2016)."""
    if not isinstance(uid, (bytes, bytearray)) or not 1 <= len(uid) < 8192:
        raise InvalidInput("uid", "1 to 8191 bytes")
    c = public.curve
    s = c.size
    parts = [c.a, c.b, c.gx, c.gy, public.x, public.y]
    return sm3((len(uid) * 8).to_bytes(2, "big") + bytes(uid) + b"".join(v.to_bytes(s, "big") for v in parts))


def _digest(public: PublicKey, message: bytes, uid: bytes) -> bytes:
    return sm3(za(public, uid) + message)


def _sign_with_k(key: PrivateKey, e: bytes, k: int) -> bytes | None:
    """GB/T 32918.2-2016 clause 6.1 A4-A7 with nonce k; None where the standard draws k again."""
    c = key.public.curve
    n = c.n
    x1, _ = _mul(c, k, c.gx, c.gy)
    r = (int.from_bytes(e, "big") + x1) % n
    if r == 0 or r + k == n:
        return None
    s = pow(1 + key.d, -1, n) * (k + n - r * key.d) % n  # k + n: one width for every nonce
    if s == 0:
        return None
    return r.to_bytes(c.size, "big") + s.to_bytes(c.size, "big")


def sign_digest(key: PrivateKey, e: bytes) -> bytes:
    """SM2 signature r||s of e = SM3(Z_A || M), Z_A already included (GB/T 32918.2-2016 clause 6.1, A3-A7).

    The form of GM/T 0018-2012 SDF_InternalSign_ECC. k is drawn with :mod:`secrets`, never by gmssl.
    """
    if not isinstance(e, (bytes, bytearray)) or len(e) != 32:
        raise InvalidInput("digest", "32 bytes e = SM3(Z_A || M)")
    n = key.public.curve.n
    while True:
        sig = _sign_with_k(key, bytes(e), secrets.randbelow(n - 1) + 1)
        if sig is not None:
            return sig


def sign(key: PrivateKey, message: bytes, uid: bytes = DEFAULT_ID) -> bytes:
    """SM2 signature r||s of ``message`` (GB/T 32918.2-2016).

    k is drawn with :mod:`secrets`, never by gmssl.
    """
    return sign_digest(key, _digest(key.public, message, uid))


def verify_digest(public: PublicKey, e: bytes, signature: bytes) -> None:
    """Raise ``VerificationFailed`` unless ``signature`` is valid for e = SM3(Z_A || M)
    (GB/T 32918.2-2016 clause 7.1, B1-B7)."""
    if not isinstance(e, (bytes, bytearray)) or len(e) != 32:
        raise InvalidInput("digest", "32 bytes e = SM3(Z_A || M)")
    s_len = public.curve.size
    if not isinstance(signature, (bytes, bytearray)) or len(signature) != 2 * s_len:
        raise InvalidInput("signature", f"{2 * s_len} bytes r||s")
    n = public.curve.n
    r = int.from_bytes(signature[:s_len], "big")
    s = int.from_bytes(signature[s_len:], "big")
    # B1-B7: r and s in [1, n-1], t = r + s not 0, R = e + x1 of sG + tP equals r.
    c = public.curve
    t = (r + s) % n
    if not (1 <= r < n and 1 <= s < n) or t == 0:
        raise VerificationFailed("signature", "does not verify")
    if c is SM2P256V1 or c == SM2P256V1:  # public scalars: one interleaved pass
        point = sm2curve.mul_add_public(s, t, (public.x, public.y))
    else:
        point = _add(c, _mul(c, s, c.gx, c.gy), _mul(c, t, public.x, public.y))
    if point is None or (int.from_bytes(e, "big") + point[0]) % n != r:
        raise VerificationFailed("signature", "does not verify")


def verify(public: PublicKey, message: bytes, signature: bytes, uid: bytes = DEFAULT_ID) -> None:
    """Raise ``VerificationFailed`` unless ``signature`` is valid (GB/T 32918.2-2016)."""
    s_len = public.curve.size
    # The signature's form is checked before Z_A is computed, as it was before verify_digest existed.
    if not isinstance(signature, (bytes, bytearray)) or len(signature) != 2 * s_len:
        raise InvalidInput("signature", f"{2 * s_len} bytes r||s")
    verify_digest(public, _digest(public, message, uid), signature)


def _kdf(z: bytes, klen: int) -> bytes:
    """GB/T 32918.4-2016 key derivation function over SM3."""
    out = b""
    ct = 1
    while len(out) < klen:
        out += sm3(z + ct.to_bytes(4, "big"))
        ct += 1
    return out[:klen]


def _encrypt_with_k(public: PublicKey, plaintext: bytes, k: int) -> bytes | None:
    c = public.curve
    s = c.size
    x1, y1 = _mul(c, k, c.gx, c.gy)
    x2, y2 = _mul(c, k, public.x, public.y)
    xb, yb = x2.to_bytes(s, "big"), y2.to_bytes(s, "big")
    t = _kdf(xb + yb, len(plaintext))
    if not any(t):
        return None
    c2 = bytes(m ^ v for m, v in zip(plaintext, t))
    c3 = sm3(xb + plaintext + yb)
    return PublicKey(x1, y1, c).encode() + c3 + c2


def encrypt(public: PublicKey, plaintext: bytes) -> bytes:
    """SM2 public-key encryption, C1||C3||C2 (GB/T 32918.4-2016)."""
    if not isinstance(plaintext, (bytes, bytearray)) or not 1 <= len(plaintext) <= 4096:
        raise InvalidInput("plaintext", "1 to 4096 bytes")
    n = public.curve.n
    while True:
        out = _encrypt_with_k(public, bytes(plaintext), secrets.randbelow(n - 1) + 1)
        if out is not None:
            return out


def decrypt(key: PrivateKey, ciphertext: bytes) -> bytes:
    """SM2 decryption of C1||C3||C2, C1 uncompressed (04) or compressed (02, 03) as GB/T 32918.4-2016
    clause 6.1 A2 allows; one error for every fault."""
    c = key.public.curve
    s = c.size
    if not isinstance(ciphertext, (bytes, bytearray)) or not ciphertext:
        raise InvalidInput("ciphertext", "does not decrypt")
    compressed = ciphertext[0] in (2, 3)
    head = 1 + s if compressed else 1 + 2 * s
    if len(ciphertext) < head + 32 + 1:
        raise InvalidInput("ciphertext", "does not decrypt")
    try:
        raw = bytes(ciphertext[:head])
        c1 = PublicKey.decompress(raw, c) if compressed else PublicKey.decode(raw, c)
    except InvalidInput:
        raise InvalidInput("ciphertext", "does not decrypt") from None
    c3 = bytes(ciphertext[head : head + 32])
    c2 = bytes(ciphertext[head + 32 :])
    x2, y2 = _mul(c, key.d, c1.x, c1.y)
    xb, yb = x2.to_bytes(s, "big"), y2.to_bytes(s, "big")
    t = _kdf(xb + yb, len(c2))
    m = bytes(a ^ b for a, b in zip(c2, t))
    if not any(t) or not compare.bytes_eq(sm3(xb + m + yb), c3):
        raise InvalidInput("ciphertext", "does not decrypt")
    return m


def _der_int(v: int) -> bytes:
    b = v.to_bytes((v.bit_length() + 8) // 8, "big")
    return b"\x02" + bytes([len(b)]) + b


def signature_to_der(signature: bytes) -> bytes:
    """r||s to DER SEQUENCE { INTEGER r, INTEGER s } (GM/T 0009-2012)."""
    if not isinstance(signature, (bytes, bytearray)) or len(signature) != 64:
        raise InvalidInput("signature", "64 bytes r||s")
    body = _der_int(int.from_bytes(signature[:32], "big")) + _der_int(int.from_bytes(signature[32:], "big"))
    return b"\x30" + bytes([len(body)]) + body


def signature_from_der(der: bytes) -> bytes:
    """DER SEQUENCE { r, s } to r||s; strict short-form lengths only."""
    try:
        if der[0] != 0x30 or der[1] != len(der) - 2:
            raise ValueError
        pos, out = 2, b""
        for _ in range(2):
            if der[pos] != 0x02:
                raise ValueError
            n = der[pos + 1]
            v = int.from_bytes(der[pos + 2 : pos + 2 + n], "big")
            if n == 0 or v >= 1 << 256:
                raise ValueError
            out += v.to_bytes(32, "big")
            pos += 2 + n
        if pos != len(der):
            raise ValueError
        return out
    except (ValueError, IndexError):
        raise InvalidInput("signature", "DER SEQUENCE of two INTEGERs") from None
