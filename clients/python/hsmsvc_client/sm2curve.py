"""sm2p256v1 arithmetic (GB/T 32918.1-2016, GB/T 32918.5-2017), SM3 and the SM2 KDF.

Scalar multiplication is OpenSSL's libcrypto (1.1.1 or 3.x, the system's, through
ctypes): ``EC_POINT_mul`` with one scalar runs OpenSSL's Montgomery ladder
(``ec_scalar_mul_ladder``), whose time does not depend on the scalar's bits, and
the library gets its security fixes from the operating system. Where no
libcrypto with SM2 is found (some client platforms), a pure-Python fallback runs:
Jacobian coordinates (annex A.1.2.3) and a fixed 4-bit window over all 64
nibbles, the same doublings and additions for every scalar, but Python's integers
are not constant time (``BACKEND`` says which is in use; the server requires
libcrypto). The server (``hsmsvc.crypto.sm2point``) and this SDK's two-party
client share this one module. SM3 is OpenSSL's through ``cryptography`` (the
``cosign`` extra); it is imported only when hashing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from typing import Any, Final

P: Final = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A: Final = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
B: Final = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
N: Final = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
G: Final = (0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7,
            0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0)
DEFAULT_ID: Final = b"1234567812345678"

Point = tuple[int, int]
_Jac = tuple[int, int, int]


def on_curve(pt: Point) -> bool:
    x, y = pt
    return 0 <= x < P and 0 <= y < P and (y * y - x * x * x - A * x - B) % P == 0


def decode(data: bytes) -> Point:
    """04 || x || y on the curve (cofactor 1: on the curve is in the group), else ValueError."""
    if len(data) != 65 or data[0] != 4:
        raise ValueError("not an uncompressed sm2p256v1 point")
    pt = int.from_bytes(data[1:33], "big"), int.from_bytes(data[33:], "big")
    if not on_curve(pt):
        raise ValueError("not a point on sm2p256v1")
    return pt


def encode(pt: Point) -> bytes:
    return b"\x04" + pt[0].to_bytes(32, "big") + pt[1].to_bytes(32, "big")


def _double(p: _Jac) -> _Jac:
    x, y, z = p
    if z == 0 or y == 0:
        return (1, 1, 0)
    yy = y * y % P
    s = 4 * x * yy % P
    zz = z * z % P
    m = (3 * x * x + A * zz * zz) % P
    x3 = (m * m - 2 * s) % P
    return x3, (m * (s - x3) - 8 * yy * yy) % P, 2 * y * z % P


def _add(p: _Jac, q: _Jac) -> _Jac:
    if p[2] == 0:
        return q
    if q[2] == 0:
        return p
    x1, y1, z1 = p
    x2, y2, z2 = q
    z1z1, z2z2 = z1 * z1 % P, z2 * z2 % P
    u1, u2 = x1 * z2z2 % P, x2 * z1z1 % P
    s1, s2 = y1 * z2 * z2z2 % P, y2 * z1 * z1z1 % P
    h, r = (u2 - u1) % P, (s2 - s1) % P
    if h == 0:
        return _double(p) if r == 0 else (1, 1, 0)
    hh = h * h % P
    hhh = h * hh % P
    v = u1 * hh % P
    x3 = (r * r - hhh - 2 * v) % P
    return x3, (r * (v - x3) - s1 * hhh) % P, z1 * z2 * h % P


def _affine(p: _Jac) -> Point | None:
    if p[2] == 0:
        return None
    zi = pow(p[2], -1, P)
    zi2 = zi * zi % P
    return p[0] * zi2 % P, p[1] * zi2 * zi % P


def _py_mul(k: int, pt: Point) -> Point | None:
    """k * pt, k reduced mod n, by a fixed 4-bit window over all 64 nibbles."""
    k %= N
    table: list[_Jac] = [(1, 1, 0), (pt[0], pt[1], 1)]
    for _ in range(14):
        table.append(_add(table[-1], table[1]))
    acc: _Jac = (1, 1, 0)
    for i in range(252, -4, -4):
        acc = _double(_double(_double(_double(acc))))
        acc = _add(acc, table[(k >> i) & 0xF])
    return _affine(acc)


def add(a: Point | None, b: Point | None) -> Point | None:
    """a + b (``None``: the point at infinity)."""
    if a is None:
        return b
    if b is None:
        return a
    return _affine(_add((a[0], a[1], 1), (b[0], b[1], 1)))


def neg(pt: Point) -> Point:
    return pt[0], (P - pt[1]) % P


def sm3(data: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes

    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize()


def za(public: Point, uid: bytes = DEFAULT_ID) -> bytes:
    """Z_A = SM3(ENTL || ID || a || b || xG || yG || xA || yA) (GB/T 32918.2-2016 clause 5.5)."""
    if not 1 <= len(uid) < 8192:
        raise ValueError("the user ID is 1 to 8191 bytes")
    parts = (A, B, G[0], G[1], public[0], public[1])
    return sm3((8 * len(uid)).to_bytes(2, "big") + uid + b"".join(v.to_bytes(32, "big") for v in parts))


def kdf(z: bytes, length: int) -> bytes:
    """The SM3 KDF of GB/T 32918.4-2016 clause 5.4.3."""
    out = b"".join(sm3(z + i.to_bytes(4, "big")) for i in range(1, (length + 31) // 32 + 1))
    return out[:length]


def verify(public: Point, e: int, r: int, s: int) -> bool:
    """GB/T 32918.2-2016 clause 7.1, from e."""
    if not (1 <= r < N and 1 <= s < N):
        return False
    t = (r + s) % N
    if t == 0:
        return False
    pt = mul_add_public(s, t, public)
    return pt is not None and (e + pt[0]) % N == r


class _Ctx:
    """A thread's BN_CTX, freed when the thread's locals go (the thread ends)."""

    def __init__(self, lib: Any) -> None:
        self._lib = lib
        self.ctx = lib.BN_CTX_new()
        if not self.ctx:
            raise MemoryError("BN_CTX_new")

    def __del__(self) -> None:
        self._lib.BN_CTX_free(self.ctx)


class _LibCrypto:
    """sm2p256v1 in OpenSSL's libcrypto: one EC_GROUP, a BN_CTX per thread (they are not shared)."""

    def __init__(self, lib: Any) -> None:
        vp, c_int, c_size = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
        for name, res, args in (
            ("OBJ_sn2nid", c_int, [ctypes.c_char_p]),
            ("EC_GROUP_new_by_curve_name", vp, [c_int]),
            ("BN_CTX_new", vp, []),
            ("BN_CTX_free", None, [vp]),
            ("BN_bin2bn", vp, [ctypes.c_char_p, c_int, vp]),
            ("BN_clear_free", None, [vp]),
            ("EC_POINT_new", vp, [vp]),
            ("EC_POINT_clear_free", None, [vp]),
            ("EC_POINT_mul", c_int, [vp, vp, vp, vp, vp, vp]),
            ("EC_POINT_oct2point", c_int, [vp, vp, ctypes.c_char_p, c_size, vp]),
            ("EC_POINT_point2oct", c_size, [vp, vp, c_int, ctypes.c_char_p, c_size, vp]),
        ):
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        self._lib = lib
        nid = lib.OBJ_sn2nid(b"SM2")
        self._group = lib.EC_GROUP_new_by_curve_name(nid) if nid else None
        if not self._group:
            raise OSError("libcrypto has no SM2 curve")
        self._local = threading.local()

    def _ctx(self) -> Any:
        held = getattr(self._local, "ctx", None)
        if held is None:
            held = self._local.ctx = _Ctx(self._lib)
        return held.ctx

    def mul(self, g: int | None, pt: Point | None, k: int | None) -> Point | None:
        """g G + k pt. With one scalar (g alone, or k and pt alone) this is OpenSSL's ladder; with
        both it is OpenSSL's interleaved wNAF, which is not constant time: for public scalars only."""
        lib, group, ctx = self._lib, self._group, self._ctx()
        gs = None if g is None else lib.BN_bin2bn((g % N).to_bytes(32, "big"), 32, None)
        ks = None if k is None else lib.BN_bin2bn((k % N).to_bytes(32, "big"), 32, None)
        out = lib.EC_POINT_new(group)
        base = None
        try:
            if pt is not None:
                base = lib.EC_POINT_new(group)
                raw = encode(pt)
                if lib.EC_POINT_oct2point(group, base, raw, len(raw), ctx) != 1:
                    raise ValueError("not a point on sm2p256v1")
            if lib.EC_POINT_mul(group, out, gs, base, ks, ctx) != 1:
                raise ValueError("scalar multiplication failed")
            buf = ctypes.create_string_buffer(65)
            n = lib.EC_POINT_point2oct(group, out, 4, buf, 65, ctx)  # 4: POINT_CONVERSION_UNCOMPRESSED
            if n != 65:
                return None  # the point at infinity encodes as one byte
            raw_out = buf.raw
            return int.from_bytes(raw_out[1:33], "big"), int.from_bytes(raw_out[33:65], "big")
        finally:
            for bn in (gs, ks):
                if bn is not None:
                    lib.BN_clear_free(bn)
            lib.EC_POINT_clear_free(out)
            if base is not None:
                lib.EC_POINT_clear_free(base)


def _load() -> _LibCrypto | None:
    for name in (ctypes.util.find_library("crypto"), "libcrypto.so.3", "libcrypto.so.1.1"):
        if not name:
            continue
        try:
            return _LibCrypto(ctypes.CDLL(name))
        except (OSError, AttributeError):
            continue
    return None


_LIB: Final = _load()
BACKEND: Final = "libcrypto" if _LIB is not None else "python"
"""Which arithmetic runs: ``libcrypto`` (OpenSSL's constant-time ladder) or ``python`` (the fallback)."""


def mul(k: int, pt: Point) -> Point | None:
    """k * pt for a point on the curve (k reduced mod n); None for the point at infinity."""
    if _LIB is not None:
        return _LIB.mul(None, pt, k)
    if not on_curve(pt):
        raise ValueError("not a point on sm2p256v1")
    return _py_mul(k, pt)


def mul_base(k: int) -> Point | None:
    """k * G."""
    if _LIB is not None:
        return _LIB.mul(k, None, None)
    return _py_mul(k, G)


def mul_add_public(g: int, k: int, pt: Point) -> Point | None:
    """g G + k pt in one pass, NOT constant time: for public scalars only (signature verification)."""
    if _LIB is not None:
        return _LIB.mul(g, pt, k)
    if not on_curve(pt):
        raise ValueError("not a point on sm2p256v1")
    return add(_py_mul(g, G), _py_mul(k, pt))
