"""The key-sync repository: each zone's key-change sequence, per role (core or branch)."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection

from hsmsvc.errors import KeyStateError
from hsmsvc.keys.model import SyncState
from hsmsvc.keys.schema import key_sync as sync_t
from hsmsvc.keys.store.database import Database, now, utc

__all__ = ["KeySync", "advance"]


class KeySync:
    """The key-sync rows in ``db``; they change only with a key change (:meth:`KeyRepository.change`)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def state(self, zone: str, role: str) -> SyncState | None:
        q = select(sync_t).where(sync_t.c.zone == zone, sync_t.c.role == role)
        r = self._db.read(lambda conn: conn.execute(q).first(), "sync state")
        if r is None:
            return None
        return SyncState(r.zone, r.role, int(r.sequence), r.state, r.digest, r.detail, utc(r.updated_at) or now())


def advance(conn: Connection, row: SyncState, expected: int) -> None:
    """Store ``row`` in the key change's transaction if the zone's sequence is still ``expected`` (0: none).

    The row is locked first, so two servers racing on one zone cannot both advance it.
    """
    cur = conn.execute(
        select(sync_t.c.sequence).where(sync_t.c.zone == row.zone, sync_t.c.role == row.role)
        .with_for_update()
    ).scalar()
    if int(cur or 0) != expected:
        raise KeyStateError("sequence", "the zone's key change moved on concurrently; retry")
    conn.execute(delete(sync_t).where(sync_t.c.zone == row.zone, sync_t.c.role == row.role))
    conn.execute(sync_t.insert().values(
        zone=row.zone, role=row.role, sequence=row.sequence, state=row.state,
        digest=row.digest, detail=row.detail, updated_at=now()))
