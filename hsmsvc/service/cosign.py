"""Two-party SM2 use cases: enrol a client's key, co-sign, co-decrypt (seed 000 clauses 5.3 and 6.2).

The server's share is a CSK under the LMK, so any replica serves it (annex C.4):
a replica's loss costs a client one retry. A revoked or suspended share is
refused like any key; uses are counted against ``max_uses``; every co-signature
is in the tamper-evident audit with its key and the digest e, never the message
(the server never has it).
"""

from __future__ import annotations

from hsmsvc.errors import InvalidInput
from hsmsvc.hsm.commands import CoDecrypt, CoSign, CoSigningShare
from hsmsvc.hsm.model import KeySpec
from hsmsvc.hsm.policy import Operation
from hsmsvc.keys.model import AuditEvent, KeyRef, StoredKey
from hsmsvc.service.context import Caller, Services
from hsmsvc.service.keys import lifetime, may_create, use_limit
from hsmsvc.types import KeyType

__all__ = ["codecrypt", "cosign", "create_key"]


def create_key(s: Services, caller: Caller, *, spec: KeySpec, client_share: bytes, alias: str | None,
               lifetime_s: int, max_uses: int) -> tuple[StoredKey, CoSigningShare]:
    """The server's share for the client's P1; the joint public key goes back for the client to check."""
    if spec.key_type is not KeyType.CSK:
        raise InvalidInput("template.key_type", "CSK")
    expires_in, limit = lifetime(lifetime_s), use_limit(max_uses)
    may_create(s, caller, spec)
    return s.manager(caller).create_share(spec, client_share, alias=alias, lifetime=expires_in, max_uses=limit)


def cosign(s: Services, caller: Caller, *, key: KeyRef, digest: bytes, client_point: bytes) -> tuple[bytes, int]:
    """The partial signature r || s2 || s3 and the share's version; audited before it is answered."""
    k = s.key(caller, key, Operation.COSIGN)
    partial = s.backend.execute(CoSign(key=k.cryptogram, digest=digest, client_point=client_point))
    s.observer.key_used(k)
    s.audit_queue.record(AuditEvent(caller.principal.name, "key.cosign", k.key_id, k.version,
                                    (("digest", bytes(digest).hex()),)))
    return partial, k.version


def codecrypt(s: Services, caller: Caller, *, key: KeyRef, client_point: bytes) -> bytes:
    """The server's part d2^-1 T1 of an SM2 decryption; audited before it is answered."""
    k = s.key(caller, key, Operation.CODECRYPT)
    out = s.backend.execute(CoDecrypt(key=k.cryptogram, client_point=client_point))
    s.observer.key_used(k)
    s.audit_queue.record(AuditEvent(caller.principal.name, "key.codecrypt", k.key_id, k.version))
    return out
