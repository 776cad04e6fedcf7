"""SM2 key exchange (GB/T 32918.3-2016 clause 6.1; GM/T 0003.3-2012).

Two-pass: the initiator A sends R_A = [r_A]G, the responder B answers R_B = [r_B]G
(and optionally S_B); both then compute the same key from their own static and
ephemeral private keys and the peer's static and ephemeral public keys.
:func:`agree` is the computation of steps A4-A10 / B1-B10 for either role, a pure
function: drawing r and carrying R_A, R_B, S_B and S_A is the caller's business.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from hsmsvc.crypto.sm2 import (
    DEFAULT_ID,
    PrivateKey,
    PublicKey,
    _add,
    _kdf,
    _mul,
    private_key_from_d,
    public_key_from_der,
    public_key_to_der,
    sm3,
    za,
)
from hsmsvc.errors import InvalidInput

__all__ = ["Agreement", "AgreementKey", "Role", "agree", "check_public_key", "fingerprint", "load_private_key"]


class Role(Enum):
    INITIATOR = "initiator"  # user A
    RESPONDER = "responder"  # user B


@dataclass(frozen=True)
class Agreement:
    """K_A = K_B and the optional confirmation hashes (clause 6.1, B8/A9/A10/B10).

    ``responder_confirmation`` is S_B = S_1 (prefix 0x02): B sends it, A checks it.
    ``initiator_confirmation`` is S_A = S_2 (prefix 0x03): A sends it, B checks it.
    Both sides compute both; compare with :func:`hsmsvc.crypto.compare.bytes_eq`.
    """

    key: bytes = field(repr=False)
    responder_confirmation: bytes
    initiator_confirmation: bytes


def _x_bar(x: int, n: int) -> int:
    """x̄ = 2^w + (x AND (2^w - 1)), w = ceil(ceil(log2 n) / 2) - 1 (clause 6.1)."""
    w = ((n - 1).bit_length() + 1) // 2 - 1
    return (1 << w) + (x & ((1 << w) - 1))


def agree(
    role: Role,
    static: PrivateKey,
    ephemeral: PrivateKey,
    peer_static: PublicKey,
    peer_ephemeral: PublicKey,
    own_id: bytes,
    peer_id: bytes,
    key_length: int,
) -> Agreement:
    """The shared key of ``key_length`` bytes and both confirmation hashes.

    ``peer_ephemeral`` is on the curve (checked when the PublicKey was built,
    steps A6/B3); a point at infinity for U/V raises InvalidInput (A8/B6).
    """
    c = static.public.curve
    if {ephemeral.public.curve, peer_static.curve, peer_ephemeral.curve} != {c}:
        raise InvalidInput("public_key", "on the same curve")
    if not isinstance(key_length, int) or not 1 <= key_length <= 64:
        raise InvalidInput("key_length", "1 to 64 bytes")
    t = (static.d + _x_bar(ephemeral.public.x, c.n) * ephemeral.d) % c.n  # A4-A5 / B2
    q = _mul(c, _x_bar(peer_ephemeral.x, c.n), peer_ephemeral.x, peer_ephemeral.y)
    summed = _add(c, (peer_static.x, peer_static.y), q)
    if summed is None:
        raise InvalidInput("point", "not the point at infinity")
    xu, yu = _mul(c, t, *summed)  # A7 / B5, h = 1
    own_z, peer_z = za(static.public, own_id), za(peer_static, peer_id)
    if role is Role.INITIATOR:
        za_, zb, ra, rb = own_z, peer_z, ephemeral.public, peer_ephemeral
    else:
        za_, zb, ra, rb = peer_z, own_z, peer_ephemeral, ephemeral.public
    s = c.size
    xb, yb = xu.to_bytes(s, "big"), yu.to_bytes(s, "big")
    key = _kdf(xb + yb + za_ + zb, key_length)  # A8 / B7
    inner = sm3(xb + za_ + zb + b"".join(v.to_bytes(s, "big") for v in (ra.x, ra.y, rb.x, rb.y)))
    return Agreement(key, sm3(b"\x02" + yb + inner), sm3(b"\x03" + yb + inner))


def fingerprint(public_der: bytes) -> bytes:
    """First 8 bytes of SM3 over the SubjectPublicKeyInfo DER, as for an SM2 KTK."""
    return sm3(bytes(public_der))[:8]


def check_public_key(der: bytes, field_name: str) -> PublicKey:
    """A partner's public key, refused as ``field_name`` unless an sm2p256v1 point (steps A6/B3)."""
    try:
        return public_key_from_der(der)
    except InvalidInput:
        # Decoding checks the point is on sm2p256v1 and not at infinity (it has no encoding).
        raise InvalidInput(field_name, "SubjectPublicKeyInfo DER of an sm2p256v1 key") from None


class AgreementKey:
    """A loaded SM2 KAK: gives its public half and runs the key exchange with a partner's keys."""

    __slots__ = ("_key", "fingerprint", "public_der")

    def __init__(self, key: PrivateKey) -> None:
        self._key = key
        self.public_der = public_key_to_der(key.public)
        self.fingerprint = fingerprint(self.public_der)

    def __repr__(self) -> str:
        return f"AgreementKey(SM2, {self.fingerprint.hex().upper()})"

    def exchange(self, ephemeral: AgreementKey, *, role: Role, peer_static: bytes, peer_ephemeral: bytes,
                 own_id: bytes = DEFAULT_ID, peer_id: bytes = DEFAULT_ID, key_length: int) -> Agreement:
        """Clause 6.1 with this static key and ``ephemeral`` (r, R): the key and both confirmations."""
        return agree(role, self._key, ephemeral._key, check_public_key(peer_static, "peer_public_key"),
                     check_public_key(peer_ephemeral, "sm2.peer_ephemeral_public_key"), own_id, peer_id, key_length)


def load_private_key(encoded: bytes) -> AgreementKey:
    """A private scalar d, 32 bytes big-endian, 1 <= d < n - 1 (as an SM2 KTK holds it)."""
    if not isinstance(encoded, (bytes, bytearray)) or len(encoded) != 32:
        raise InvalidInput("private_key", "32 bytes for SM2")
    return AgreementKey(private_key_from_d(int.from_bytes(encoded, "big")))
