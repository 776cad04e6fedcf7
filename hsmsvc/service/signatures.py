"""Signature use cases: sign and verify with a SIG, its PKCS#10 request, a partner's public key bound.

A wrong signature is a result (``False``), as a wrong MAC is. Every path is
filtered by the caller's key patterns: a key outside them answers as a missing one.
"""

from __future__ import annotations

import hashlib

from hsmsvc.errors import InvalidInput, VerificationFailed
from hsmsvc.hsm.commands import GenerateCsr, Sign, SignedData, VerifySignature
from hsmsvc.hsm.model import KeySpec
from hsmsvc.hsm.policy import Operation
from hsmsvc.keys.model import AuditEvent, KeyRef, StoredKey
from hsmsvc.service.context import Caller, Services
from hsmsvc.service.keys import lifetime, may_create
from hsmsvc.types import KeyType, ModeOfUse

__all__ = ["generate_csr", "import_public_key", "sign", "verify"]


def sign(s: Services, caller: Caller, *, key: KeyRef, data: SignedData) -> tuple[bytes, StoredKey]:
    """The DER signature and the key version that made it."""
    k = s.key(caller, key, Operation.SIGN)
    out = s.backend.execute(Sign(key=k.cryptogram, data=data))
    s.observer.key_used(k)
    return out, k


def verify(s: Services, caller: Caller, *, key: KeyRef, data: SignedData, signature: bytes) -> bool:
    k = s.key(caller, key, Operation.SIGNATURE_VERIFY)
    try:
        s.backend.execute(VerifySignature(key=k.cryptogram, data=data, signature=signature))
    except VerificationFailed:
        return False
    # Not a use: verifying takes the public half only, and counting it would let any verifier
    # run a signing key to its limit.
    return True


def generate_csr(s: Services, caller: Caller, *, key: KeyRef, subject: str, user_id: bytes | None) -> bytes:
    """A PKCS#10 request for the SIG's public half, signed by it (a certificate for it is the CA's to make)."""
    k = s.key(caller, key, Operation.SIGN)
    der = s.backend.execute(GenerateCsr(key=k.cryptogram, subject=subject, user_id=user_id))
    s.observer.key_used(k)
    s.store.audit(AuditEvent(caller.principal.name, "key.csr", k.key_id, k.version,
                             (("request_sha256", hashlib.sha256(der).hexdigest()), ("subject", subject))))
    return der


def import_public_key(s: Services, caller: Caller, *, spec: KeySpec, public_key: bytes,
                      alias: str | None, lifetime_s: int = 0, max_uses: int = 0) -> StoredKey:
    """A partner's public key as a verify-only SIG (mode V), audited as ``key.import``; ``lifetime_s``
    as its certificate's, say. No ``max_uses``: verifying is not counted."""
    if spec.key_type is not KeyType.SIG or spec.mode_of_use is not ModeOfUse.MAC_VERIFY_ONLY:
        raise InvalidInput("template", "a public key is imported as a SIG with mode of use V (verify only)")
    if max_uses:
        raise InvalidInput("template.max_uses", "not for a verify-only key: verifications are not counted")
    expires_in = lifetime(lifetime_s)
    may_create(s, caller, spec)
    return s.manager(caller).import_public(spec, public_key, alias=alias, lifetime=expires_in)
