"""A write's IntegrityError is told by SQLSTATE and constraint, not by the row's values."""

from __future__ import annotations

import pytest

from hsmsvc.errors import AlreadyExists
from hsmsvc.hsm.backend import Backend
from hsmsvc.hsm.model import KeySpec
from hsmsvc.keys.hierarchy import KeyManager
from hsmsvc.keys.model import AuditEvent
from hsmsvc.keys.store import KeyStore
from hsmsvc.types import Algorithm, KeyType, KeyUsage


@pytest.mark.parametrize("key_id", ["zpk-1", "audit-seq-pin_attempts"])
def test_a_duplicate_key_is_already_exists_whatever_its_id(store: KeyStore, backend: Backend, key_id: str) -> None:
    # PostgreSQL's message quotes the duplicate's values: an id naming the audit table was
    # once taken for a lost race on the chain, run eight times and answered UNAVAILABLE.
    made = KeyManager(store, backend, "officer-a").generate(
        KeySpec(key_id, 1, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION))
    head = store.audit_head()
    with pytest.raises(AlreadyExists):
        store.add(made, AuditEvent("officer-a", "key.generate", key_id, 1))
    assert store.audit_head() == head and store.verify_audit().ok
