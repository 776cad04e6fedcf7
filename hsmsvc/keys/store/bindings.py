"""One value, one binding, for keys that arrive in a form that binds no key type.

X9.17 ECB and payShield's variant form carry a key's value and nothing of its type, usage or mode:
the same ciphertext under one ZMK imports as a ZPK or, again, as a MAK or DEK, whose one-block MAC
or decryption is then a PIN block codebook (issue 36's reviews). So a key stored from such a form
is refused when a stored key holds the same value with another binding (type, usage, mode of use,
zone, decimalization table, a KEK's legacy types and form), with a narrower exportability, or
revoked. The check runs in the transaction that stores the key, under a lock two imports of one
value both take (SQLite's write lock at BEGIN; on PostgreSQL an advisory lock on the value's
algorithm and KCV), so two imports racing on one value cannot both pass.

Candidates are found by algorithm and KCV (an unindexed scan: such imports are rare) and compared
inside the backend (``SameValue``). A destroyed key's value is gone and cannot be compared.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Final

from sqlalchemy import select, text
from sqlalchemy.engine import Connection

from hsmsvc.errors import KeyUsageViolation
from hsmsvc.hsm.backend import Backend
from hsmsvc.hsm.commands import SameValue
from hsmsvc.hsm.model import LegacyForm
from hsmsvc.keys.model import StoredKey
from hsmsvc.keys.schema import keys as keys_t
from hsmsvc.keys.store.keys import to_key
from hsmsvc.types import Exportability, KeyState

__all__ = ["UNTYPED_FORMS", "Guard", "one_binding"]

Guard = Callable[[Connection, StoredKey], None]

UNTYPED_FORMS: Final = frozenset({LegacyForm.X917_ECB, LegacyForm.PAYSHIELD_VARIANT})
"""The legacy forms that bind no key type (hsmsvc's own variant table binds it)."""

_BREADTH = {Exportability.NON_EXPORTABLE: 0, Exportability.SENSITIVE: 1, Exportability.EXPORTABLE: 2}
_GONE = (KeyState.REVOKED, KeyState.DESTROYED)


_LOCK: Final = text("SELECT pg_advisory_xact_lock(:k)")


def _lock_key(algorithm: str, kcv: bytes) -> int:
    """The advisory lock of one (algorithm, KCV): every import that could be a twin takes the same."""
    return int.from_bytes(hashlib.sha256(b"hsmsvc.key_value:" + algorithm.encode() + b"\x00" + kcv).digest()[:8],
                          "big", signed=True)


def _binding(key: StoredKey) -> tuple[object, ...]:
    """Everything a stored key is bound to but its id, version and exportability (compared by
    breadth): type, usage, mode, zone, decimalization table, and a KEK's legacy types and form.
    A PVK taken back with another table would leak its natural PINs' digits (the fourth review)."""
    s = key.cryptogram.spec
    return (s.key_type, s.usage, s.mode_of_use, s.zone, s.decimalization_table, key.legacy_types, key.legacy_form)


def one_binding(backend: Backend) -> Guard:
    """The check of the module docstring, for ``KeyRepository.add`` and ``change``."""

    def guard(conn: Connection, key: StoredKey) -> None:
        new = key.cryptogram
        s = new.spec
        if conn.dialect.name == "postgresql":
            # READ COMMITTED reads each statement afresh: without this lock an import committing
            # between this SELECT and the audit head's read passed both (issue 36's fourth review).
            # SQLite's write lock, taken at BEGIN, holds the whole transaction already.
            conn.execute(_LOCK, {"k": _lock_key(s.algorithm.value, new.kcv)})
        rows = conn.execute(select(keys_t).where(keys_t.c.algorithm == s.algorithm.value,
                                                 keys_t.c.kcv == new.kcv.hex().upper())).all()
        for twin in map(to_key, rows):
            t = twin.cryptogram
            if (t.spec.key_id, t.spec.version) == (s.key_id, s.version) or not t.blob:
                continue
            if not backend.execute(SameValue(a=t, b=new)):
                continue
            if twin.state in _GONE or _binding(twin) != _binding(key) \
                    or _BREADTH[s.exportability] > _BREADTH[t.spec.exportability]:
                raise KeyUsageViolation("wrapped_key", "this value is stored already with another binding, or "
                                                       "was revoked; a form that binds no type may not give it another")

    return guard
