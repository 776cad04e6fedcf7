"""sm2p256v1 point arithmetic on the server (GB/T 32918.1-2016 clause 3.2 and annex A).

Points are affine (x, y) tuples; ``None`` is the point at infinity. Decoding
checks the curve equation, so no operation here ever sees an invalid point.
Scalar multiplication is :mod:`hsmsvc_client.sm2curve`'s, which the server
requires to run on OpenSSL's libcrypto (its constant-time ladder): one module
for both halves of two-party SM2, checked once at start-up (``selfcheck``).
"""

from __future__ import annotations

from typing import Final

from hsmsvc_client import sm2curve

from hsmsvc.crypto import sm2
from hsmsvc.errors import InvalidInput, Unsupported

__all__ = ["G", "NEG_G", "Point", "add", "decode", "encode", "mul", "mul_base", "require_libcrypto"]

Point = tuple[int, int]
_C: Final = sm2.SM2P256V1
_P: Final = _C.p
G: Final[Point] = (_C.gx, _C.gy)
NEG_G: Final[Point] = (_C.gx, _P - _C.gy)


def decode(data: bytes) -> Point:
    """04 || x || y, on the curve (the curve's cofactor is 1, so on it is in the group)."""
    try:
        key = sm2.PublicKey.decode(bytes(data))
    except (InvalidInput, TypeError):
        raise InvalidInput("point", "an uncompressed sm2p256v1 point") from None
    return key.x, key.y


encode: Final = sm2curve.encode
"""04 || x || y."""
add: Final = sm2curve.add
"""a + b, affine (``None``: the point at infinity)."""


def _finite(point: Point | None) -> Point:
    if point is None:
        raise InvalidInput("point", "not the point at infinity")
    return point


def require_libcrypto() -> None:
    """Refuse to run the server's SM2 on the pure-Python fallback (not constant time)."""
    if sm2curve.BACKEND != "libcrypto":
        raise Unsupported("sm2", "needs OpenSSL's libcrypto with the SM2 curve (Debian: libssl3)")


def mul(k: int, point: Point) -> Point:
    """k * point for k in [1, n-1] (OpenSSL's ladder)."""
    return _finite(sm2curve.mul(k, point))


def mul_base(k: int) -> Point:
    """k * G for k in [1, n-1] (OpenSSL's ladder)."""
    return _finite(sm2curve.mul_base(k))
