"""Two-party SM2 (collaborative signing, 协同签名): the server's half of keys whose other half a client holds.

The scheme and what it protects against are in docs/architecture.md ("Two-party
SM2"); the arithmetic is :mod:`hsmsvc.crypto.sm2coop`. The server's share d2 is a
CSK under the LMK like any key; the client's d1 never reaches the server, and the
full private key exists nowhere. A CSK of usage S0 (mode S) co-signs, one of usage
D1 (mode D) co-decrypts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from hsmsvc.crypto import sm2coop
from hsmsvc.errors import InvalidInput, KeyUsageViolation
from hsmsvc.hsm.commands.base import HsmCommand
from hsmsvc.hsm.model import Command, KeyCryptogram, KeySpec
from hsmsvc.hsm.policy import Operation
from hsmsvc.types import Algorithm, KeyType

if TYPE_CHECKING:
    from hsmsvc.hsm.commands.core import CommandBackend

__all__ = ["CoDecrypt", "CoSign", "CoSigningShare", "CreateCoSigningShare"]

def _point(value: object, field: str) -> bytes:
    """An uncompressed point on the curve (length included), checked before the backend is held."""
    data = bytes(value) if isinstance(value, (bytes, bytearray)) else b""
    sm2coop.check_point(data, field)
    return data


@dataclass(frozen=True)
class CoSigningShare:
    """A new CSK under the LMK, the server's public share P2 = d2^-1 G and the joint public key (SPKI DER)."""

    key: KeyCryptogram
    server_share: bytes
    public_key: bytes


@dataclass(frozen=True, kw_only=True, repr=False)
class CreateCoSigningShare(HsmCommand[CoSigningShare]):
    """Key generation's server round: d2 drawn here against the client's P1 = d1^-1 G."""

    spec: KeySpec
    client_share: bytes

    def run(self, b: CommandBackend) -> CoSigningShare:
        spec = self.spec
        b._capabilities.require(Command.COSIGN, spec.algorithm)
        # The spec's own binding check (policy.check_binding: a CSK is SM2, S0 with mode S or D1
        # with mode D) ran when it was made; only the type is this command's to require.
        if spec.key_type is not KeyType.CSK:
            raise KeyUsageViolation("template", "a two-party key is a CSK on SM2")
        client = _point(self.client_share, "client_share")
        with b._guard():
            key = b._seal_clear(spec, sm2coop.new_server_share(client))
            loaded = b._use(key, Operation.PUBLIC_KEY)
            return CoSigningShare(key, b._share_point(loaded), b._public_key(loaded))


@dataclass(frozen=True, kw_only=True, repr=False)
class CoSign(HsmCommand[bytes]):
    """The server's partial signature r || s2 || s3 for the client's e and Q1 = k1 G (96 bytes).

    The server never sees the message: e = SM3(Z_A || M) is the client's to compute.
    """

    key: KeyCryptogram
    digest: bytes
    client_point: bytes

    def run(self, b: CommandBackend) -> bytes:
        b._capabilities.require(Command.COSIGN, Algorithm.SM2)
        if not isinstance(self.digest, (bytes, bytearray)) or len(self.digest) != 32:
            raise InvalidInput("digest", "32 bytes: e = SM3(Z_A || M)")
        q1 = _point(self.client_point, "client_point")
        with b._guard():
            share = b._use(self.key, Operation.COSIGN)
        # Outside the backend's lock: a loaded share is immutable and the arithmetic keeps no shared
        # state (a BN_CTX per thread), so co-signatures run in parallel and the audit's MACs do not
        # queue behind them.
        return b._cosign(share, digest=bytes(self.digest), client_point=q1)


@dataclass(frozen=True, kw_only=True, repr=False)
class CoDecrypt(HsmCommand[bytes]):
    """The server's part of an SM2 decryption: T2 = d2^-1 T1 for the client's T1 = d1^-1 C1."""

    key: KeyCryptogram
    client_point: bytes

    def run(self, b: CommandBackend) -> bytes:
        b._capabilities.require(Command.COSIGN, Algorithm.SM2)
        t1 = _point(self.client_point, "client_point")
        with b._guard():
            share = b._use(self.key, Operation.CODECRYPT)
        return b._codecrypt(share, t1)  # outside the lock, as CoSign
