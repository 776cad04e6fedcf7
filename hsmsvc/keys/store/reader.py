"""Read-only views of a key store for the people who run it: no LMK needed, nothing written.

``hsmsvc status`` without ``--server``, ``hsmsvc audit export`` and the server's
``StatusService`` read through this: the schema's revision (never migrated here), key
counts by type and state, the audit chain's head and its rows in pages. Key rows are
never read here, so no cryptogram passes through.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from sqlalchemy import func, select

from hsmsvc.keys.audit import AuditRow
from hsmsvc.keys.schema import audit as audit_t
from hsmsvc.keys.schema import keys as keys_t
from hsmsvc.keys.store import revisions
from hsmsvc.keys.store.database import Database
from hsmsvc.redact import redact_url
from hsmsvc.types import Algorithm, KeyState, KeyType

__all__ = ["SchemaRevision", "StoreReader"]

PAGE: Final = 1000
"""Audit rows read per query when walking the chain."""


@dataclass(frozen=True)
class SchemaRevision:
    """The Alembic revision the database is at (None: never migrated) and the newest this code knows."""

    current: str | None
    head: str

    @property
    def behind(self) -> bool:
        return self.current != self.head

    def describe(self) -> str:
        if not self.behind:
            return f"{self.current} (up to date)"
        return f"{self.current or 'none'}, behind {self.head}: run the migrations (nothing was changed)"


class StoreReader:
    """Reads of ``db`` that change nothing; :meth:`open` makes one of its own from a URL."""

    def __init__(self, db: Database, *, owned: bool = False) -> None:
        self._db = db
        self._owned = owned

    @classmethod
    def open(cls, url: str) -> StoreReader:
        return cls(Database(url), owned=True)

    def close(self) -> None:
        if self._owned:
            self._db.close()

    def __enter__(self) -> StoreReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def kind(self) -> str:
        """The SQLAlchemy dialect: ``postgresql`` or ``sqlite``."""
        return str(self._db.engine.dialect.name)

    @property
    def url(self) -> str:
        """The database URL, any password replaced by ``***``."""
        return redact_url(self._db.engine.url.render_as_string(hide_password=True))

    def revision(self) -> SchemaRevision:
        return SchemaRevision(self._db.read(revisions.current, "schema revision"), revisions.head())

    def key_counts(self) -> dict[tuple[KeyType, KeyState], int]:
        """Key versions by (type, state), over the whole store."""
        q = select(keys_t.c.key_type, keys_t.c.state, func.count()).group_by(keys_t.c.key_type, keys_t.c.state)
        rows = self._db.read(lambda conn: conn.execute(q).all(), "key counts")
        return {(KeyType(t), KeyState(s)): int(n) for t, s, n in rows}

    def algorithm_counts(self) -> dict[Algorithm, int]:
        """Key versions not destroyed, by algorithm, over the whole store."""
        q = (select(keys_t.c.algorithm, func.count()).where(keys_t.c.state != KeyState.DESTROYED.value)
             .group_by(keys_t.c.algorithm))
        rows = self._db.read(lambda conn: conn.execute(q).all(), "algorithm counts")
        return {Algorithm(a): int(n) for a, n in rows}

    def audit_head(self) -> AuditRow | None:
        """The newest audit row, or None for an empty chain."""
        q = select(audit_t).order_by(audit_t.c.seq.desc()).limit(1)
        rows = self._db.read(lambda conn: conn.execute(q).all(), "audit head")
        return _row(rows[0]) if rows else None

    def audit_row(self, seq: int) -> AuditRow | None:
        q = select(audit_t).where(audit_t.c.seq == seq)
        rows = self._db.read(lambda conn: conn.execute(q).all(), "audit row")
        return _row(rows[0]) if rows else None

    def audit_rows(self, after: int = 0) -> Iterator[AuditRow]:
        """Rows with a sequence number above ``after``, in order, read a page at a time."""
        while True:
            q = select(audit_t).where(audit_t.c.seq > after).order_by(audit_t.c.seq).limit(PAGE)
            rows = self._db.read(lambda conn: conn.execute(q).all(), "audit rows")
            for r in rows:
                yield _row(r)
            if len(rows) < PAGE:
                return
            after = int(rows[-1].seq)


def _row(r: object) -> AuditRow:
    return AuditRow(int(r.seq), r.at, r.actor, r.action, r.key_id,  # type: ignore[attr-defined]
                    r.key_version, r.detail, r.prev_hash, r.hash, r.mac)  # type: ignore[attr-defined]
