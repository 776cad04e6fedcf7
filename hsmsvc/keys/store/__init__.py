"""The key store (SQLAlchemy 2): keys under the LMK, the audit chain, and the state beside them.

State, use counters and the audit chain live in the database, not in a process, so
several servers on one database agree. The store is one repository per kind of row,
over one :class:`~hsmsvc.keys.store.database.Database` (connections, reads, write
transactions and their faults):

* :mod:`~hsmsvc.keys.store.chain`: the audit chain, every audited write, the re-MAC
  of an LMK migration;
* :mod:`~hsmsvc.keys.store.keys`: key versions, use counters, key changes, the
  cryptogram swap of an LMK migration;
* :mod:`~hsmsvc.keys.store.ceremonies`: key ceremonies and their components;
* :mod:`~hsmsvc.keys.store.sync`: each zone's key-change sequence;
* :mod:`~hsmsvc.keys.store.counters`: PIN-attempt counters;
* :mod:`~hsmsvc.keys.store.agreements`: SM2 key exchanges' ephemeral keys, each used once.

:class:`KeyStore` holds them (``store.keys``, ``store.chain``, ...) and answers the
calls the rest of the service makes, each a one-line delegation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import Connection

from hsmsvc.hsm.backend import Backend
from hsmsvc.hsm.model import KeyCryptogram
from hsmsvc.keys import attempts as _attempts
from hsmsvc.keys import audit as _audit
from hsmsvc.keys.checkpoints import CheckpointSink
from hsmsvc.keys.model import AuditEvent, Ceremony, CeremonyState, StoredKey, SyncState
from hsmsvc.keys.store.agreements import Agreements
from hsmsvc.keys.store.ceremonies import SEPARATION, Ceremonies
from hsmsvc.keys.store.chain import AuditChain
from hsmsvc.keys.store.counters import AttemptCounters
from hsmsvc.keys.store.database import Database
from hsmsvc.keys.store import bindings
from hsmsvc.keys.store.keys import KeyRepository
from hsmsvc.keys.store.reader import StoreReader
from hsmsvc.keys.store.sync import KeySync
from hsmsvc.types import KeyState, KeyType

__all__ = ["SEPARATION", "KeyStore"]


class KeyStore:
    """Keys and audit rows in one database; ``backend`` MACs and anchors the audit chain."""

    def __init__(self, url: str, backend: Backend, *, checkpoints: Path | None = None) -> None:
        self._db = Database(url)
        self._engine = self._db.engine
        self.chain = AuditChain(self._db, backend, CheckpointSink(checkpoints) if checkpoints is not None else None)
        self.keys = KeyRepository(self._db, self.chain)
        self._one_binding = bindings.one_binding(backend)
        self.ceremonies = Ceremonies(self._db, self.chain)
        self.key_sync = KeySync(self._db)
        self.attempts = AttemptCounters(self._db, self.chain)
        self.agreements = Agreements(self._db, self.chain)
        self.reader = StoreReader(self._db)
        """Read-only views for status and audit export (reader.py)."""

    def __repr__(self) -> str:
        return f"KeyStore({self._engine.dialect.name})"

    @property
    def changes(self) -> int:
        """Key and audit writes this object has committed (a cache's cue to look again at once)."""
        return self._db.changes

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        self._db.migrate()

    def check_schema(self) -> bool:
        """Refuse a schema behind this version's: the server runs no DDL unless told to. False: the
        schema is a later version's (a rolling upgrade), which this one runs on."""
        return self._db.check_schema()

    def ping(self) -> None:
        """One round trip to the database, for the health monitor; UNAVAILABLE if it is unreachable."""
        self._db.ping()

    def close(self) -> None:
        self.chain.close()
        self._db.close()

    def _writer(self, checked: bool = False) -> Connection:
        return self._db.writer(checked)

    # -- the audit chain (chain.py) ---------------------------------------------------

    @property
    def store_id(self) -> str:
        return self.chain.store_id

    def rebind(self, new_id: str, ev: AuditEvent) -> None:
        self.chain.rebind(new_id, ev)

    def audit(self, ev: AuditEvent) -> None:
        self.chain.append(ev)

    def audit_many(self, events: Sequence[AuditEvent]) -> None:
        self.chain.append_many(events)

    def audit_head(self) -> int:
        return self.chain.head()

    def audit_rows(self) -> Iterator[_audit.AuditRow]:
        return self.chain.rows()

    def verify_audit(self, checkpoints: Path | None = None) -> _audit.VerifyReport:
        return self.chain.verify(self.keys.count, checkpoints)

    def remac_audit(self, old: Backend, ev: AuditEvent) -> int:
        return self.chain.remac(old, ev)

    # -- keys (keys.py) ------------------------------------------------------------------

    def add(self, key: StoredKey, ev: AuditEvent, *, one_binding: bool = False) -> None:
        """Store ``key``; ``one_binding``: it came in a form that binds no type (keys/store/bindings.py)."""
        self.keys.add(key, ev, self._one_binding if one_binding else None)

    def add_rotated(self, key: StoredKey, retire: list[int], ev: AuditEvent) -> None:
        self.keys.add_rotated(key, retire, ev)

    def get(self, key_id: str, version: int | None = None) -> StoredKey:
        return self.keys.get(key_id, version)

    def get_by_alias(self, alias: str, version: int | None = None) -> StoredKey:
        return self.keys.get_by_alias(alias, version)

    def next_activation(self, key_id: str = "", alias: str = "") -> datetime | None:
        return self.keys.next_activation(key_id, alias)

    def list_keys(self, key_type: KeyType | None = None, zone: str | None = None,
                  after: tuple[str, int] | None = None, limit: int = 100) -> list[StoredKey]:
        return self.keys.page(key_type, zone, after, limit)

    def all_keys(self, after: tuple[str, int] | None, limit: int) -> list[StoredKey]:
        return self.keys.all_versions(after, limit)

    def versions(self, key_id: str) -> list[StoredKey]:
        return self.keys.versions(key_id)


    def next_version(self, key_id: str) -> int:
        return self.keys.next_version(key_id)

    def set_state(self, key_id: str, version: int, state: KeyState, ev: AuditEvent) -> None:
        self.keys.set_state(key_id, version, state, ev)

    def reserve_uses(self, key_id: str, version: int, n: int) -> int:
        return self.keys.reserve_uses(key_id, version, n)

    def change_keys(
        self,
        ev: AuditEvent,
        add: Sequence[StoredKey] = (),
        activate: Sequence[tuple[str, int, datetime]] = (),
        expire: Sequence[tuple[str, int, datetime]] = (),
        sync: tuple[SyncState, int] | None = None,
        *,
        one_binding: bool = False,
    ) -> None:
        self.keys.change(ev, add, activate, expire, sync, self._one_binding if one_binding else None)

    def replace_cryptograms(self, moves: list[tuple[StoredKey, KeyCryptogram]]) -> int:
        return self.keys.replace_cryptograms(moves)

    # -- key sync (sync.py) ------------------------------------------------------------

    def sync_state(self, zone: str, role: str) -> SyncState | None:
        return self.key_sync.state(zone, role)

    # -- key ceremonies (ceremonies.py) ------------------------------------------------

    def open_ceremony(self, c: Ceremony, ev: AuditEvent) -> None:
        self.ceremonies.open(c, ev)

    def ceremony(self, ceremony_id: str) -> Ceremony:
        return self.ceremonies.get(ceremony_id)

    def approve_ceremony(self, ceremony_id: str, officer: str, ev: AuditEvent) -> Ceremony:
        return self.ceremonies.approve(ceremony_id, officer, ev)

    def add_ceremony_component(
        self, ceremony_id: str, custodian: str, wrapped: bytes, kcv: bytes, ev: AuditEvent
    ) -> Ceremony:
        return self.ceremonies.add_component(ceremony_id, custodian, wrapped, kcv, ev)

    def ceremony_parts(self, ceremony_id: str) -> list[tuple[bytes, bytes]]:
        return self.ceremonies.parts(ceremony_id)

    def close_ceremony(
        self, ceremony_id: str, state: CeremonyState, ev: AuditEvent, key: StoredKey | None = None,
        expired_ok: bool = False,
    ) -> None:
        self.ceremonies.close(ceremony_id, state, ev, key, expired_ok)

    # -- PIN-verify attempt counters (counters.py) -------------------------------------

    def failures(self, subjects: list[str], window: timedelta) -> dict[str, int]:
        return self.attempts.failures(subjects, window)

    def record_failure(self, subjects: list[str], window: timedelta, ev: AuditEvent) -> None:
        self.attempts.record_failure(subjects, window, ev)

    def confirm_attempts(self, subjects: list[str], window: timedelta) -> dict[str, int]:
        return self.attempts.confirm(subjects, window)

    def record_failures(self, counts: dict[str, int], window: timedelta, ev: AuditEvent) -> None:
        self.attempts.record_failures(counts, window, ev)

    def settle_attempts(
        self,
        attempts: list[_attempts.Attempt],
        *,
        limits: dict[str, int],
        window: timedelta,
        audit: Callable[[_attempts.Settlement], AuditEvent],
    ) -> _attempts.Settlement:
        return self.attempts.settle(attempts, limits=limits, window=window, audit=audit)

    def clear_failures(self, subject: str) -> None:
        self.attempts.clear(subject)
