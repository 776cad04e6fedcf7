"""Two-party SM2: the server's half of key generation, signing and decryption.

The scheme is the multiplicative two-party SM2 of Tongsuo's ``sm2_threshold``
(after Liu and Lin's two-party SM2 framework), written here from its equations
(docs/architecture.md, "Two-party SM2", holds them with what each side keeps and
what the scheme does not protect against). With the client's d1 and the server's
d2, the joint key is d = (d1 d2)^-1 - 1, so (1 + d)^-1 = d1 d2 and the SM2
signature s = (1 + d)^-1 (k + r) - r (GB/T 32918.2-2016 clause 6.1 A5) splits:

* key generation: the client sends P1 = d1^-1 G; the server answers
  P2 = d2^-1 G and the joint P = d2^-1 P1 - G, which the client checks as
  d1^-1 P2 - G;
* signing: the client sends e = SM3(Z_A || M) and Q1 = k1 G; the server draws
  k2, k3, computes (x1, y1) = k3 Q1 + k2 G, r = (e + x1) mod n,
  s2 = d2 k3 and s3 = d2 (r + k2) mod n; the client finishes
  s = d1 k1 s2 + d1 s3 - r mod n, which is SM2's s with k = k1 k3 + k2, and
  verifies (r, s) under P before using it (a wrong partial signature is caught);
* decryption of C1 || C3 || C2 (GB/T 32918.4-2016): the client sends
  T1 = d1^-1 C1; the server answers T2 = d2^-1 T1; the client's d C1 is T2 - C1.

A share's encoding under the LMK is d2 (32 bytes) || P1 (65 bytes, uncompressed),
so the joint public key is recomputed, never trusted from the store alone.
"""

from __future__ import annotations

import secrets
from typing import Final

from hsmsvc.crypto import sm2, sm2point
from hsmsvc.errors import InvalidInput

__all__ = ["POINT_LENGTH", "SHARE_LENGTH", "ServerShare", "check_point", "load_share", "new_server_share"]

_C: Final = sm2.SM2P256V1
_N: Final = _C.n
POINT_LENGTH: Final = 65
SHARE_LENGTH: Final = 32 + POINT_LENGTH


def check_point(data: bytes, field: str) -> sm2point.Point:
    """An uncompressed point on sm2p256v1, not the point at infinity (GB/T 32918.1-2016 clause 6.2)."""
    try:
        return sm2point.decode(data)
    except InvalidInput:
        raise InvalidInput(field, f"an uncompressed sm2p256v1 point of {POINT_LENGTH} bytes") from None


def _scalar() -> int:
    return secrets.randbelow(_N - 1) + 1


def new_server_share(client_share: bytes) -> bytes:
    """d2 drawn for the client's P1, encoded d2 || P1; redrawn in the negligible case P = infinity."""
    p1 = check_point(client_share, "client_share")
    while True:
        d2 = _scalar()
        if sm2point.add(sm2point.mul(pow(d2, -1, _N), p1), sm2point.NEG_G) is not None:
            return d2.to_bytes(32, "big") + sm2point.encode(p1)


class ServerShare:
    """A loaded CSK: d2 and the client's P1; the joint public key and P2 follow from them."""

    __slots__ = ("_d2", "_d2_inv", "fingerprint", "public_der", "server_point")

    def __init__(self, d2: int, p1: sm2point.Point) -> None:
        self._d2 = d2
        self._d2_inv = pow(d2, -1, _N)
        joint = sm2point.add(sm2point.mul(self._d2_inv, p1), sm2point.NEG_G)
        if joint is None:
            raise InvalidInput("key", "not a two-party key share")
        self.server_point = sm2point.encode(sm2point.mul_base(self._d2_inv))
        self.public_der = sm2.public_key_to_der(sm2.PublicKey(joint[0], joint[1]))
        self.fingerprint = sm2.sm3(self.public_der)[:8]

    def __repr__(self) -> str:
        return "ServerShare(<redacted>)"

    def cosign(self, *, digest: bytes, client_point: bytes) -> bytes:
        """r || s2 || s3, 32 bytes each, for e = ``digest`` and Q1 = ``client_point``."""
        if not isinstance(digest, (bytes, bytearray)) or len(digest) != 32:
            raise InvalidInput("digest", "32 bytes: e = SM3(Z_A || M)")
        q1 = check_point(client_point, "client_point")
        e = int.from_bytes(digest, "big")
        d2 = self._d2
        while True:
            k2, k3 = _scalar(), _scalar()
            point = sm2point.add(sm2point.mul(k3, q1), sm2point.mul_base(k2))
            if point is None:
                continue
            r = (e + point[0]) % _N
            if r == 0:
                continue
            # k + n: every nonce the same number of limbs, so the products' time does not tell
            # a short nonce (s2 and s3 are linear in d2: short nonces would be a lattice attack's).
            s2 = d2 * (k3 + _N) % _N
            s3 = d2 * (r + k2 + _N) % _N
            if s3 == 0:
                continue
            return r.to_bytes(32, "big") + s2.to_bytes(32, "big") + s3.to_bytes(32, "big")

    def codecrypt(self, client_point: bytes) -> bytes:
        """T2 = d2^-1 T1 for the client's T1 = d1^-1 C1."""
        t1 = check_point(client_point, "client_point")
        return sm2point.encode(sm2point.mul(self._d2_inv, t1))


def load_share(encoded: bytes) -> ServerShare:
    """A CSK's d2 || P1 from its LMK key block."""
    if not isinstance(encoded, (bytes, bytearray)) or len(encoded) != SHARE_LENGTH:
        raise InvalidInput("key", "not a two-party key share")
    d2 = int.from_bytes(encoded[:32], "big")
    if not 1 <= d2 < _N:
        raise InvalidInput("key", "not a two-party key share")
    try:
        p1 = sm2point.decode(bytes(encoded[32:]))
    except InvalidInput:
        raise InvalidInput("key", "not a two-party key share") from None
    return ServerShare(d2, p1)
