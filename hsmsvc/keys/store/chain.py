"""The audit chain's repository: audited writes, the chain's rows, its anchor and checkpoints.

Every write that changes a key, a ceremony or a counter is one transaction holding the
change and its audit row (:meth:`AuditChain.write`), so there is never a half-written
row or an unaudited change. SQLite takes its write lock at BEGIN, so two processes
never interleave a chain append; PostgreSQL relies on the audit sequence's primary key
and the loser runs again (:func:`hsmsvc.keys.faults.lost_race`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from hsmsvc.crypto import compare
from hsmsvc.errors import AlreadyExists, BackendUnavailable, InvalidInput, PermissionDenied
from hsmsvc.hsm.backend import Backend
from hsmsvc.hsm.commands import AuditMac, AuditMacs, WriteAuditAnchor
from hsmsvc.keys import audit as _audit
from hsmsvc.keys import faults
from hsmsvc.keys.checkpoints import CheckpointSink, read_checkpoints
from hsmsvc.keys.model import AuditEvent
from hsmsvc.keys.schema import audit as audit_t
from hsmsvc.keys.schema import store_meta as meta_t
from hsmsvc.keys.store.database import Database, now

__all__ = ["AuditChain"]

_RETRIES: Final = 8
T = TypeVar("T")


class AuditChain:
    """The audit rows in ``db``; ``backend`` MACs and anchors them, ``sink`` takes checkpoints."""

    def __init__(self, db: Database, backend: Backend, sink: CheckpointSink | None = None) -> None:
        self._db = db
        self._backend = backend
        self._sink = sink
        self._store_id: str | None = None
        self._failed_lock = threading.Lock()
        self._failed = {"anchor": 0, "checkpoint": 0}

    def failures(self) -> dict[str, int]:
        """Anchor and checkpoint writes that failed after their row was committed, by stage (for the
        metrics: the chain is then ahead of its anchor, which ``audit verify`` reports)."""
        with self._failed_lock:
            return dict(self._failed)

    def _failed_at(self, stage: str) -> None:
        with self._failed_lock:
            self._failed[stage] += 1

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()

    # -- audited writes -------------------------------------------------------------

    def write(self, change: Callable[[Connection], T], ev: AuditEvent | Callable[[T], AuditEvent | None]) -> T:
        """Run ``change(conn)`` and append ``ev`` in one transaction; retry a lost race.

        ``ev`` may be a function of what ``change`` returned, and ``None`` appends nothing.
        A row whose key another row holds is ALREADY_EXISTS.
        """
        def work(conn: Connection) -> tuple[T, tuple[int, str] | None]:
            result = change(conn)
            e = ev if isinstance(ev, AuditEvent) else ev(result)
            return result, None if e is None else self._append(conn, e)

        for _ in range(_RETRIES):
            try:
                result, appended = self._db.transaction(work, conflicts=True)
            except IntegrityError as e:
                if faults.lost_race(e):
                    continue
                if faults.duplicate(e):
                    raise AlreadyExists("key", "already exists (id and version, or alias and version)") from None
                raise faults.unavailable(e, "write") from None  # NOT NULL, CHECK: the store's own fault
            if appended is not None:  # a settlement that counted nothing changed no key
                self._db.changes += 1
                self._anchor(*appended)
            return result
        raise BackendUnavailable("store", "audit chain contended; retry")

    def append(self, ev: AuditEvent) -> None:
        """Append an audit row on its own (an action that changes no key row)."""
        self.write(lambda conn: None, ev)

    def append_many(self, events: Sequence[AuditEvent]) -> None:
        """Append ``events`` in order in one transaction and anchor the last (a group commit:
        one transaction, one MAC per row, one anchor write for the lot); retry a lost race."""
        if not events:
            return

        def work(conn: Connection) -> tuple[int, str]:
            head = self._head(conn)  # read once: the rows chain to each other in this transaction
            rows = []
            for ev in events:
                rows.append(self._row(head, ev, mac=False))
                head = rows[-1]["seq"], rows[-1]["hash"]
            # One hold of the backend for the batch's MACs: a lock taken once per row queued the
            # writer behind every co-signature's key lookup.
            for row, tag in zip(rows, self._backend.execute(AuditMacs(items=[bytes.fromhex(r["hash"]) for r in rows]))):
                row["mac"] = tag.hex()
            conn.execute(audit_t.insert(), rows)
            return head

        for _ in range(_RETRIES):
            try:
                appended = self._db.transaction(work, conflicts=True)
            except IntegrityError as e:
                if faults.lost_race(e):
                    continue
                raise faults.unavailable(e, "write") from None
            # No ``changes`` bump: these rows change no key, and a bump would empty every key cache
            # of this process at each group commit (keys/cache.py).
            self._anchor(*appended)
            return
        raise BackendUnavailable("store", "audit chain contended; retry")

    def _append(self, conn: Connection, ev: AuditEvent) -> tuple[int, str]:
        row = self._row(self._head(conn), ev)
        conn.execute(audit_t.insert().values(**row))
        return row["seq"], row["hash"]

    @staticmethod
    def _head(conn: Connection) -> tuple[int, str]:
        """The last row's sequence number and hash (0 and the genesis hash for an empty chain)."""
        last = conn.execute(
            select(audit_t.c.seq, audit_t.c.hash).order_by(audit_t.c.seq.desc()).limit(1)
        ).first()
        return (0, _audit.GENESIS) if last is None else (int(last.seq), last.hash)

    def _row(self, head: tuple[int, str], ev: AuditEvent, mac: bool = True) -> dict[str, Any]:
        """The row after ``head`` recording ``ev``: chained to it and MACed under the LMK
        (``mac=False``: the caller MACs a batch of rows at once)."""
        seq, prev = head[0] + 1, head[1]
        at = now().isoformat(timespec="microseconds")
        detail = json.dumps(dict(ev.detail), sort_keys=True, separators=(",", ":"))
        h = _audit.row_hash(prev_hash=prev, seq=seq, at=at, actor=ev.actor, action=ev.action, key_id=ev.key_id,
                            key_version=ev.key_version, detail=detail)
        return {"seq": seq, "at": at, "actor": ev.actor, "action": ev.action, "key_id": ev.key_id,
                "key_version": ev.key_version, "detail": detail, "prev_hash": prev, "hash": h,
                "mac": self._backend.execute(AuditMac(data=bytes.fromhex(h))).hex() if mac else ""}

    def _anchor(self, seq: int, head: str) -> None:
        store = self.store_id
        try:
            self._backend.execute(WriteAuditAnchor(seq=seq, head=bytes.fromhex(head), store=store))
        except BaseException:
            self._failed_at("anchor")
            raise
        if self._sink is not None:
            try:
                self._sink.append(self._backend, store=store, seq=seq, head=head)
            except BaseException:
                self._failed_at("checkpoint")
                raise

    # -- the store's id ---------------------------------------------------------------

    @property
    def store_id(self) -> str:
        """This store's id (migration 0005), which its anchor and checkpoints name."""
        if self._store_id is None:
            got = self._db.read(lambda conn: conn.execute(
                select(meta_t.c.value).where(meta_t.c.name == "store_id")).scalar(), "store id")
            if not got:
                raise InvalidInput("store", "no store id: run the migrations (hsmsvc status)")
            self._store_id = str(got)
        return self._store_id

    def rebind(self, new_id: str, ev: AuditEvent) -> None:
        """Give the store the id ``new_id`` and append ``ev`` in one transaction (keys/reanchor.py)."""
        def change(conn: Connection) -> None:
            conn.execute(update(meta_t).where(meta_t.c.name == "store_id").values(value=new_id))

        old, self._store_id = self._store_id, new_id  # the anchor after COMMIT is the new id's
        try:
            self.write(change, ev)
        except BaseException:
            self._store_id = old
            raise

    # -- reading the chain --------------------------------------------------------------

    def head(self) -> int:
        """The newest audit row's sequence number: every key change appends one in its transaction,
        so servers sharing the database see a key change as a new head."""
        return int(self._db.read(lambda conn: conn.execute(select(func.max(audit_t.c.seq))).scalar() or 0,
                                 "audit head"))

    def rows(self) -> Iterator[_audit.AuditRow]:
        rows = self._db.read(lambda conn: conn.execute(select(audit_t).order_by(audit_t.c.seq)).all(), "audit rows")
        for r in rows:
            yield _audit.AuditRow(
                int(r.seq), r.at, r.actor, r.action, r.key_id, r.key_version,
                r.detail, r.prev_hash, r.hash, r.mac,
            )

    def verify(self, keys: Callable[[], int], checkpoints: Path | None = None) -> _audit.VerifyReport:
        """The chain, its anchor, and the checkpoints in ``checkpoints`` if given; ``keys()`` counts the keys."""
        store = self.store_id
        count = keys()
        points = None if checkpoints is None else read_checkpoints(checkpoints, self._backend, store=store)
        return _audit.verify_chain(self.rows(), self._backend, store=store, keys=count, checkpoints=points)

    def remac(self, old: Backend, ev: AuditEvent) -> int:
        """Check every audit row under the ``old`` LMK, re-MAC it under this chain's, and append ``ev``.

        One transaction: the chain is wholly under one LMK or the other.
        """
        def change(conn: Connection) -> int:
            prev, n = _audit.GENESIS, 0
            for r in conn.execute(select(audit_t).order_by(audit_t.c.seq)).all():
                n += 1
                h = _audit.row_hash(prev_hash=r.prev_hash, seq=r.seq, at=r.at, actor=r.actor, action=r.action,
                                    key_id=r.key_id, key_version=r.key_version, detail=r.detail)
                ok = (r.seq == n and r.prev_hash == prev and h == r.hash
                      and compare.bytes_eq(old.execute(AuditMac(
                          data=bytes.fromhex(h))), bytes.fromhex(r.mac)))
                if not ok:
                    raise PermissionDenied("audit", f"row {r.seq} does not verify under the old LMK; nothing changed")
                conn.execute(update(audit_t).where(audit_t.c.seq == r.seq)
                             .values(mac=self._backend.execute(AuditMac(data=bytes.fromhex(h))).hex()))
                prev = r.hash
            return n

        return self.write(change, ev)
