"""Signatures: a SIG key pair signs and verifies, gives a PKCS#10 request; a SIG of mode V only verifies.

One scheme per key algorithm (:mod:`hsmsvc.crypto.signature`): RSASSA-PSS with
SHA-256, ECDSA with SHA-256 (P-256) or SHA-384 (P-384), SM2 with SM3. The
message is hashed inside the backend, or the caller gives the digest: for SM2
that digest is e = SM3(Z_A || M), Z_A already in it, as GM/T 0018's internal
signing takes it (docs/architecture.md, "Signatures", says why).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from hsmsvc.crypto import csr, signature
from hsmsvc.errors import InvalidInput, KeyUsageViolation
from hsmsvc.hsm.commands.base import HsmCommand
from hsmsvc.hsm.model import Command, KeyCryptogram, KeySpec
from hsmsvc.hsm.policy import Operation
from hsmsvc.types import KeyType, ModeOfUse

if TYPE_CHECKING:
    from hsmsvc.hsm.commands.core import CommandBackend

__all__ = ["GenerateCsr", "ImportPublicKey", "Sign", "SignedData", "VerifySignature"]

MAX_MESSAGE: Final = 1 << 20
"""The most bytes a message to be signed may have: larger ones are hashed by the caller."""


@dataclass(frozen=True, kw_only=True, repr=False)
class SignedData:
    """What is signed: the ``message`` (hashed in the backend) or its ``digest``, never both.

    ``user_id`` is SM2's distinguishing identifier for Z_A (None: ``1234567812345678``); only
    with ``message``, since a given SM2 digest already holds Z_A.
    """

    message: bytes | None = None
    digest: bytes | None = None
    user_id: bytes | None = None

    def check(self) -> None:
        if (self.message is None) == (self.digest is None):
            raise InvalidInput("message", "either the message or its digest")
        if self.message is not None:
            if not isinstance(self.message, (bytes, bytearray)) or len(self.message) > MAX_MESSAGE:
                raise InvalidInput("message", f"at most {MAX_MESSAGE} bytes; hash a longer one and give the digest")
        elif not isinstance(self.digest, (bytes, bytearray)):
            raise InvalidInput("digest", "bytes")
        if self.user_id is not None and self.digest is not None:
            raise InvalidInput("user_id", "only with a message: an SM2 digest already holds Z_A")


@dataclass(frozen=True, kw_only=True, repr=False)
class Sign(HsmCommand[bytes]):
    """The DER signature of ``data`` under a SIG (mode S)."""

    key: KeyCryptogram
    data: SignedData

    def run(self, b: CommandBackend) -> bytes:
        b._capabilities.require(Command.SIGN, self.key.spec.algorithm)
        self.data.check()
        with b._guard():
            key = b._use(self.key, Operation.SIGN)
        # Outside the backend's lock: a loaded key pair is immutable and thread-safe (pyca's keys;
        # SM2's arithmetic keeps a BN_CTX per thread), so signatures run in parallel.
        return b._sign(key, self.data)


@dataclass(frozen=True, kw_only=True, repr=False)
class VerifySignature(HsmCommand[None]):
    """Raise ``VerificationFailed`` unless ``signature`` is ``key``'s over ``data`` (SIG, mode S or V)."""

    key: KeyCryptogram
    data: SignedData
    signature: bytes

    def run(self, b: CommandBackend) -> None:
        b._capabilities.require(Command.SIGN, self.key.spec.algorithm)
        self.data.check()
        if not isinstance(self.signature, (bytes, bytearray)) or not 1 <= len(self.signature) <= 1024:
            raise InvalidInput("signature", "1 to 1024 bytes")
        with b._guard():
            key = b._use(self.key, Operation.SIGNATURE_VERIFY)
        b._verify_signature(key, self.data, bytes(self.signature))  # outside the lock, as Sign


@dataclass(frozen=True, kw_only=True, repr=False)
class GenerateCsr(HsmCommand[bytes]):
    """A DER PKCS#10 request (RFC 2986) for ``key``'s public half, signed by it; SM2 with ``user_id``
    (GB/T 35276-2017)."""

    key: KeyCryptogram
    subject: str
    user_id: bytes | None = None

    def run(self, b: CommandBackend) -> bytes:
        alg = self.key.spec.algorithm
        b._capabilities.require(Command.SIGN, alg)
        with b._guard():
            k = b._use(self.key, Operation.SIGN)
            return csr.build_csr(
                subject=self.subject, public_der=b._public_key(k), algorithm=alg, user_id=self.user_id,
                sign=lambda info: b._sign(k, SignedData(message=info, user_id=self.user_id)))


@dataclass(frozen=True, kw_only=True, repr=False)
class ImportPublicKey(HsmCommand[KeyCryptogram]):
    """A partner's public key (SubjectPublicKeyInfo DER) bound under the LMK as a verify-only SIG.

    Nothing in it is secret; the LMK key block binds it to its id, type and mode of use,
    so a stored row cannot be swapped for another key unnoticed.
    """

    spec: KeySpec
    public_key: bytes

    def run(self, b: CommandBackend) -> KeyCryptogram:
        spec = self.spec
        b._capabilities.require(Command.SIGN, spec.algorithm)
        if spec.key_type is not KeyType.SIG or spec.mode_of_use is not ModeOfUse.MAC_VERIFY_ONLY:
            raise KeyUsageViolation("template", "a public key is imported as a SIG with mode of use V")
        if not isinstance(self.public_key, (bytes, bytearray)) or not 1 <= len(self.public_key) <= 2048:
            raise InvalidInput("public_key", "SubjectPublicKeyInfo DER of at most 2048 bytes")
        signature.load_public_key(bytes(self.public_key), spec.algorithm)
        with b._guard():
            return b._seal_clear(spec, bytes(self.public_key))
