"""The key store (SQLAlchemy 2): keys under the LMK, and the audit chain.

The only module that touches SQLAlchemy connections. Every write is one
transaction holding both the change and its audit row, so there is never a
half-written row or an unaudited change. State, use counters and the audit
chain live here, not in a process, so several servers on one database agree.
SQLite (the embedded default) takes its write lock at BEGIN so two processes
never interleave a chain append; PostgreSQL relies on the audit sequence's
primary key and retries the loser.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from importlib import resources
from pathlib import Path
from typing import Any, Final, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, bindparam, case, create_engine, delete, event, func, select, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import DataError, DisconnectionError, IntegrityError, SQLAlchemyError

from hsmsvc.crypto import _compare
from hsmsvc.errors import (
    AlreadyExists,
    BackendUnavailable,
    InvalidInput,
    KeyNotFound,
    KeyStateError,
    PermissionDenied,
)
from hsmsvc.hsm.backend import Backend
from hsmsvc.hsm.commands import AuditMac, WriteAuditAnchor
from hsmsvc.hsm.model import KeyCryptogram, KeySpec
from hsmsvc.keys import attempts as _attempts
from hsmsvc.keys import audit as _audit
from hsmsvc.keys import faults
from hsmsvc.keys.checkpoints import CheckpointSink, read_checkpoints
from hsmsvc.keys.model import AuditEvent, Ceremony, CeremonyState, StoredKey, SyncState
from hsmsvc.keys.schema import audit as audit_t
from hsmsvc.keys.schema import ceremonies as ceremonies_t
from hsmsvc.keys.schema import ceremony_components as components_t
from hsmsvc.keys.schema import key_sync as sync_t
from hsmsvc.keys.schema import keys as keys_t
from hsmsvc.keys.schema import pin_attempts as attempts_t
from hsmsvc.keys.schema import store_meta as meta_t
from hsmsvc.loopguard import may_block
from hsmsvc.types import Algorithm, Exportability, KeyState, KeyType, KeyUsage, ModeOfUse

__all__ = ["KeyStore"]

_RETRIES: Final = 8
T = TypeVar("T")


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _to_key(r: Row[Any]) -> StoredKey:
    spec = KeySpec(
        r.key_id,
        r.version,
        KeyType(r.key_type),
        Algorithm(r.algorithm),
        KeyUsage(r.usage),
        ModeOfUse(r.mode_of_use),
        Exportability(r.exportability),
        r.zone,
        r.decimalization_table or "",
    )
    created = _utc(r.created_at)
    if created is None:
        raise KeyStateError("key", "row has no creation time")
    return StoredKey(
        KeyCryptogram(spec, bytes(r.cryptogram or b""), bytes.fromhex(r.kcv)),
        KeyState(r.state),
        created,
        r.alias,
        _utc(r.activated_at),
        _utc(r.expires_at),
        int(r.use_count),
        r.max_uses,
        _utc(r.activates_at),
        frozenset(KeyType(t) for t in (r.legacy_types or "").split(",") if t),
    )


# Built once: the attempt check runs on every PIN verification, and building the
# statement cost more than running it.
# The attempt read is on every PIN verification. It names one or two subjects (the card and the
# caller), so those two statements are fixed: an expanding IN is rewritten at every execution.
_FAILURES: Final = {
    1: select(attempts_t).where(attempts_t.c.subject == bindparam("s0")),
    2: select(attempts_t).where(attempts_t.c.subject.in_([bindparam("s0"), bindparam("s1")])),
}
_FAILURES_ANY: Final = select(attempts_t).where(attempts_t.c.subject.in_(bindparam("subjects", expanding=True)))

# On PostgreSQL nothing the store does may wait without end: a connection attempt, a row
# lock another session holds, a statement. A call that meets one of these answers
# UNAVAILABLE within the bound, and a shutdown's drain is not held past it. (SQLite
# waits busy_timeout, 10 s, for its write lock: _sqlite_connect.)
_PG_BOUNDS: Final = {"connect_timeout": 5, "options": "-c lock_timeout=5000 -c statement_timeout=30000"}
# Connections per process: the server's executor threads (two lanes of 8 by default), each
# holding at most one connection at a time, the PIN-attempt readers kept by up to _MAX_HELD of
# them, and the monitor's and the use meter's threads. A checkout that finds none free waits at
# most 5 s (UNAVAILABLE), never the 30 s SQLAlchemy's pool would.
_POOL: Final = {"pool_size": 16, "max_overflow": 16, "pool_timeout": 5}
_MAX_HELD: Final = 8
"""Threads that keep an autocommit connection for attempt reads (_single_read); others check one out."""


def _engine_options(url: str) -> dict[str, Any]:
    if url.startswith("postgresql"):
        return {"connect_args": dict(_PG_BOUNDS), **_POOL}
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":  # a file: a QueuePool
        return dict(_POOL)
    return {}


class KeyStore:
    """Keys and audit rows in one database; ``backend`` MACs and anchors the audit chain."""

    def __init__(self, url: str, backend: Backend, *, checkpoints: Path | None = None) -> None:
        self._backend = backend
        self._sink = CheckpointSink(checkpoints) if checkpoints is not None else None
        self._store_id: str | None = None
        try:
            # hide_parameters: a database error's text never carries a row's values.
            self._engine: Engine = create_engine(url, hide_parameters=True, **_engine_options(url))
        except (SQLAlchemyError, ValueError, ImportError):
            raise InvalidInput("store_url", "a SQLAlchemy database URL") from None
        self.changes = 0
        """Key and audit writes this object has committed (a cache's cue to look again at once)."""
        self._readers = threading.local()
        self._checked = threading.local()
        """Its ``on`` is set while this thread checks out a connection that must be pinged first."""
        self._held: set[Connection] = set()
        self._held_lock = threading.Lock()
        self._sqlite = self._engine.dialect.name == "sqlite"
        if self._sqlite:
            _create_private(self._engine.url.database)
            event.listen(self._engine, "connect", _sqlite_connect)
            event.listen(self._engine, "begin", _sqlite_begin)
        else:
            event.listen(self._engine, "checkin", _idle_from)
            event.listen(self._engine, "checkout",
                         _ping_if_idle(self._engine.dialect, lambda: getattr(self._checked, "on", False)))

    def __repr__(self) -> str:
        return f"KeyStore({self._engine.dialect.name})"

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        cfg = Config()
        cfg.set_main_option("script_location", str(resources.files("hsmsvc.keys") / "migrations"))
        try:
            with self._connect() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                conn.commit()
        except SQLAlchemyError as e:
            raise faults.unavailable(e, "migrate") from None

    def _connect(self, checked: bool = False) -> Connection:
        """A pooled connection; ``checked``: pinged first, whatever its idle time (a retry after a drop).

        A drop makes the pool let go of the dropped connection and those older than
        it, not those made since, which the same restart or termination may have
        dropped too: a retry that took one of those would fail again.
        """
        may_block()
        self._checked.on = checked
        try:
            return self._engine.connect()
        except SQLAlchemyError as e:  # refused, timed out, or the pool's wait for a connection ran out
            raise faults.unavailable(e, "connect") from None
        finally:
            self._checked.on = False

    def _read(self, work: Callable[[Connection], T], during: str,
              invalid: tuple[str, str] = ("request", "a value the database cannot hold")) -> T:
        """``work(conn)`` on a pooled connection, once more on a checked one if the database dropped it."""
        return faults.read(self._connect, work, during, invalid, lambda: self._connect(checked=True))

    def ping(self) -> None:
        """One round trip to the database, for the health monitor; UNAVAILABLE if it is unreachable."""
        self._read(lambda conn: conn.exec_driver_sql("SELECT 1").scalar(), "ping")

    @contextmanager
    def _single_read(self, checked: bool = False) -> Iterator[Connection]:
        """A connection for one SELECT, run without BEGIN, the statement being its own snapshot.

        This is the PIN-verification path. On SQLite it saves a round of the driver;
        the mark is gone before the connection goes back to the pool, so no writer
        inherits it. On PostgreSQL each thread keeps one connection in autocommit for
        these reads: autocommit saves the BEGIN and the ROLLBACK, two of the read's
        three round trips, and keeping the connection saves its checkout and the
        switch of isolation level there and back (222 to 156 us of CPU per read
        here). A read that fails lets its connection go.
        """
        may_block()
        if self._sqlite:
            with self._connect(checked) as conn:
                conn.info["single_read"] = True
                try:
                    yield conn
                finally:
                    conn.info.pop("single_read", None)
            return
        held: Connection | None = getattr(self._readers, "conn", None)
        if held is None:
            with self._held_lock:
                room = len(self._held) < _MAX_HELD
            if not room:  # enough threads keep one: this read checks one out and gives it back
                with self._connect(checked).execution_options(isolation_level="AUTOCOMMIT") as conn:
                    yield conn
                return
            held = self._connect(checked).execution_options(isolation_level="AUTOCOMMIT")
            with self._held_lock:
                self._held.add(held)
            self._readers.conn = held
        try:
            yield held
        except BaseException:
            self._readers.conn = None
            with self._held_lock:
                self._held.discard(held)
            held.close()
            raise

    def _writer(self, checked: bool = False) -> Connection:
        """A connection whose next transaction takes SQLite's write lock at BEGIN."""
        conn = self._connect(checked)
        conn.info["immediate"] = True
        return conn

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()
        with self._held_lock:
            held, self._held = self._held, set()
        for conn in held:
            conn.close()
        self._engine.dispose()

    # -- transactions with their audit row ----------------------------------------

    def _transaction(self, work: Callable[[Connection], T], conflicts: bool = False) -> T:
        """Run ``work(conn)`` in one write transaction.

        A connection the database dropped (a server restart, a failover, an idle
        timeout) fails its next statement. If that happens before COMMIT is sent,
        the transaction is known not to have happened, and ``work`` runs once more
        on a new connection. At COMMIT the outcome is not known: the write may or
        may not be in, so it answers UNAVAILABLE rather than risk doing it twice.
        An IntegrityError is the caller's to answer when ``conflicts`` (:meth:`_write`);
        any other database fault is UNAVAILABLE.
        """
        for again in (True, False):
            committing = False
            try:
                with self._writer(checked=not again) as conn:
                    with conn.begin():
                        result = work(conn)
                        committing = True
                    return result
            except IntegrityError as e:
                if conflicts:
                    raise
                raise faults.unavailable(e, "write") from None
            except DataError:
                raise InvalidInput("request", "a value the database cannot store") from None
            except SQLAlchemyError as e:
                if not (again and faults.dropped(e) and not committing):
                    raise faults.unavailable(e, "commit" if committing else "write") from None
        raise AssertionError("not reached")

    def _write(self, change: Any, ev: AuditEvent | Callable[[Any], AuditEvent | None]) -> Any:
        """Run ``change(conn)`` and append ``ev`` in one transaction; retry a lost race.

        ``ev`` may be a function of what ``change`` returned, and ``None`` appends nothing.
        """
        def work(conn: Connection) -> tuple[Any, tuple[int, str] | None]:
            result = change(conn)
            e = ev if isinstance(ev, AuditEvent) else ev(result)
            return result, None if e is None else self._append(conn, e)

        for _ in range(_RETRIES):
            try:
                result, appended = self._transaction(work, conflicts=True)
                self.changes += 1
                if appended is not None:
                    self._anchor(*appended)
                return result
            except IntegrityError as e:
                text = str(e.orig).lower()
                if not any(t in text for t in ("audit", "seq", "pin_attempts")):
                    raise AlreadyExists("key", "already exists (id and version, or alias and version)") from None
        raise BackendUnavailable("store", "audit chain contended; retry")

    def _anchor(self, seq: int, head: str) -> None:
        store = self.store_id
        self._backend.execute(WriteAuditAnchor(seq=seq, head=bytes.fromhex(head), store=store))
        if self._sink is not None:
            self._sink.append(self._backend, store=store, seq=seq, head=head)

    @property
    def store_id(self) -> str:
        """This store's id (migration 0005), which its anchor and checkpoints name."""
        if self._store_id is None:
            got = self._read(lambda conn: conn.execute(
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
            self._write(change, ev)
        except BaseException:
            self._store_id = old
            raise

    def _append(self, conn: Connection, ev: AuditEvent) -> tuple[int, str]:
        last = conn.execute(
            select(audit_t.c.seq, audit_t.c.hash).order_by(audit_t.c.seq.desc()).limit(1)
        ).first()
        seq, prev = (1, _audit.GENESIS) if last is None else (int(last.seq) + 1, last.hash)
        at = _now().isoformat(timespec="microseconds")
        detail = json.dumps(dict(ev.detail), sort_keys=True, separators=(",", ":"))
        h = _audit.row_hash(prev, seq, at, ev.actor, ev.action, ev.key_id, ev.key_version, detail)
        mac = self._backend.execute(AuditMac(data=bytes.fromhex(h))).hex()
        conn.execute(
            audit_t.insert().values(
                seq=seq, at=at, actor=ev.actor, action=ev.action, key_id=ev.key_id,
                key_version=ev.key_version, detail=detail, prev_hash=prev, hash=h, mac=mac,
            )
        )
        return seq, h

    def audit(self, ev: AuditEvent) -> None:
        """Append an audit row on its own (an action that changes no key row)."""
        self._write(lambda conn: None, ev)

    def audit_head(self) -> int:
        """The newest audit row's sequence number: every key change appends one in its transaction,
        so servers sharing the database see a key change as a new head."""
        return int(self._read(lambda conn: conn.execute(select(func.max(audit_t.c.seq))).scalar() or 0, "audit head"))

    def audit_rows(self) -> Iterator[_audit.AuditRow]:
        rows = self._read(lambda conn: conn.execute(select(audit_t).order_by(audit_t.c.seq)).all(), "audit rows")
        for r in rows:
            yield _audit.AuditRow(
                int(r.seq), r.at, r.actor, r.action, r.key_id, r.key_version,
                r.detail, r.prev_hash, r.hash, r.mac,
            )

    def verify_audit(self, checkpoints: Path | None = None) -> _audit.VerifyReport:
        """The chain, its anchor, and the checkpoints in ``checkpoints`` if given."""
        store = self.store_id
        keys = int(self._read(lambda conn: conn.execute(select(func.count()).select_from(keys_t)).scalar() or 0,
                              "key count"))
        points = None if checkpoints is None else read_checkpoints(checkpoints, self._backend, store=store)
        return _audit.verify_chain(self.audit_rows(), self._backend, store=store, keys=keys, checkpoints=points)

    # -- keys -----------------------------------------------------------------------

    def add(self, key: StoredKey, ev: AuditEvent) -> None:
        self._write(self._inserter(key), ev)

    @staticmethod
    def _inserter(key: StoredKey) -> Any:
        s = key.cryptogram.spec

        def change(conn: Connection) -> None:
            conn.execute(
                keys_t.insert().values(
                    key_id=s.key_id, version=s.version, alias=key.alias, key_type=s.key_type.value,
                    algorithm=s.algorithm.value, usage=s.usage.value, mode_of_use=s.mode_of_use.value,
                    exportability=s.exportability.value, zone=s.zone, state=key.state.value,
                    cryptogram=key.cryptogram.blob, kcv=key.cryptogram.kcv.hex().upper(),
                    created_at=key.created_at, activated_at=key.activated_at,
                    expires_at=key.expires_at, use_count=key.use_count, max_uses=key.max_uses,
                    decimalization_table=s.decimalization_table, activates_at=key.activates_at,
                    legacy_types=",".join(sorted(t.value for t in key.legacy_types)),
                )
            )

        return change

    def add_rotated(self, key: StoredKey, retire: list[int], ev: AuditEvent) -> None:
        """Add a new version and move ``retire`` versions from ACTIVE to RETIRING, atomically."""
        s = key.cryptogram.spec

        def change(conn: Connection) -> None:
            add(conn)
            for v in retire:
                conn.execute(
                    update(keys_t)
                    .where(keys_t.c.key_id == s.key_id, keys_t.c.version == v,
                           keys_t.c.state == KeyState.ACTIVE.value)
                    .values(state=KeyState.RETIRING.value)
                )

        add = self._inserter(key)
        self._write(change, ev)

    def get(self, key_id: str, version: int | None = None) -> StoredKey:
        """One version; with no version, the newest ACTIVE one, else the newest."""
        return self._one(keys_t.c.key_id == key_id, version)

    def get_by_alias(self, alias: str, version: int | None = None) -> StoredKey:
        return self._one(keys_t.c.alias == alias, version)

    def _one(self, where: Any, version: int | None) -> StoredKey:
        q = select(keys_t).where(where)
        if version is not None:
            q = q.where(keys_t.c.version == version)
        else:
            # The newest version usable now: ACTIVE and past its activation time
            # (a key change's new version waits for it; the old one serves till then).
            usable = (keys_t.c.state == KeyState.ACTIVE.value) & (
                keys_t.c.activates_at.is_(None) | (keys_t.c.activates_at <= _now())
            )
            active_first = case((usable, 0), (keys_t.c.state == KeyState.ACTIVE.value, 1), else_=2)
            q = q.order_by(active_first, keys_t.c.version.desc()).limit(1)
        r = self._read(lambda conn: conn.execute(q).first(), "key", ("key", "not a valid key reference"))
        if r is None:
            raise KeyNotFound("key", "no such key, alias or version")
        return _to_key(r)

    def next_activation(self, key_id: str = "", alias: str = "") -> datetime | None:
        """When the next of this key's ACTIVE versions becomes usable, if one waits (a key change)."""
        where = keys_t.c.key_id == key_id if key_id else keys_t.c.alias == alias
        q = select(func.min(keys_t.c.activates_at)).where(
            where, keys_t.c.state == KeyState.ACTIVE.value, keys_t.c.activates_at > _now())
        return _utc(self._read(lambda conn: conn.execute(q).scalar(), "next activation"))

    def list_keys(
        self,
        key_type: KeyType | None = None,
        zone: str | None = None,
        after: tuple[str, int] | None = None,
        limit: int = 100,
    ) -> list[StoredKey]:
        """Key versions in (id, version) order, for paging."""
        q = select(keys_t)
        if key_type is not None:
            q = q.where(keys_t.c.key_type == key_type.value)
        if zone is not None:
            q = q.where(keys_t.c.zone == zone)
        if after is not None:
            q = q.where(
                (keys_t.c.key_id > after[0])
                | ((keys_t.c.key_id == after[0]) & (keys_t.c.version > after[1]))
            )
        q = q.order_by(keys_t.c.key_id, keys_t.c.version).limit(limit)
        return [_to_key(r) for r in self._read(lambda conn: conn.execute(q).all(), "list keys")]

    def versions(self, key_id: str) -> list[StoredKey]:
        q = select(keys_t).where(keys_t.c.key_id == key_id).order_by(keys_t.c.version)
        return [_to_key(r) for r in self._read(lambda conn: conn.execute(q).all(), "versions")]

    def next_version(self, key_id: str) -> int:
        q = select(func.max(keys_t.c.version)).where(keys_t.c.key_id == key_id)
        return int(self._read(lambda conn: conn.execute(q).scalar(), "next version") or 0) + 1

    def set_state(self, key_id: str, version: int, state: KeyState, ev: AuditEvent) -> None:
        def change(conn: Connection) -> None:
            values: dict[str, Any] = {"state": state.value}
            if state is KeyState.ACTIVE:
                values["activated_at"] = _now()
            if state is KeyState.DESTROYED:
                values["cryptogram"] = None
            n = conn.execute(
                update(keys_t).where(keys_t.c.key_id == key_id, keys_t.c.version == version).values(**values)
            ).rowcount
            if n != 1:
                raise KeyNotFound("key_id", "no such key or version")

        self._write(change, ev)

    def reserve_uses(self, key_id: str, version: int, n: int) -> int:
        """Add ``n`` to a key's use counter atomically; the counter after the addition.

        Servers reserve uses in blocks, so the hot path writes once per block and
        several processes on one database never count the same use twice.
        """
        v = self._transaction(lambda conn: conn.execute(
            update(keys_t)
            .where(keys_t.c.key_id == key_id, keys_t.c.version == version)
            .values(use_count=keys_t.c.use_count + n)
            .returning(keys_t.c.use_count)
        ).scalar())
        if v is None:
            raise KeyNotFound("key", "no such key or version")
        return int(v)

    # -- key changes ----------------------------------------------------------------

    def sync_state(self, zone: str, role: str) -> SyncState | None:
        q = select(sync_t).where(sync_t.c.zone == zone, sync_t.c.role == role)
        r = self._read(lambda conn: conn.execute(q).first(), "sync state")
        if r is None:
            return None
        return SyncState(r.zone, r.role, int(r.sequence), r.state, r.digest, r.detail, _utc(r.updated_at) or _now())

    def change_keys(
        self,
        ev: AuditEvent,
        add: list[StoredKey] = [],  # noqa: B006 (never mutated)
        activate: list[tuple[str, int, datetime]] = [],  # noqa: B006
        expire: list[tuple[str, int, datetime]] = [],  # noqa: B006
        sync: tuple[SyncState, int] | None = None,
    ) -> None:
        """One transaction of a key change: new versions, activations, grace ends, the zone's sequence.

        ``sync`` is the new sequence row and the sequence the row must hold now
        (0: none), so two servers racing on one zone cannot both advance it.
        """
        inserters = [self._inserter(k) for k in add]

        def change(conn: Connection) -> None:
            if sync is not None:
                row, expected = sync
                cur = conn.execute(
                    select(sync_t.c.sequence).where(sync_t.c.zone == row.zone, sync_t.c.role == row.role)
                    .with_for_update()
                ).scalar()
                if int(cur or 0) != expected:
                    raise KeyStateError("sequence", "the zone's key change moved on concurrently; retry")
                conn.execute(delete(sync_t).where(sync_t.c.zone == row.zone, sync_t.c.role == row.role))
                conn.execute(sync_t.insert().values(
                    zone=row.zone, role=row.role, sequence=row.sequence, state=row.state,
                    digest=row.digest, detail=row.detail, updated_at=_now()))
            for ins in inserters:
                ins(conn)
            for key_id, version, at in activate:
                n = conn.execute(
                    update(keys_t).where(keys_t.c.key_id == key_id, keys_t.c.version == version,
                                         keys_t.c.state.in_([KeyState.PENDING.value, KeyState.ACTIVE.value]))
                    .values(state=KeyState.ACTIVE.value, activates_at=at, activated_at=at)
                ).rowcount
                if n != 1:
                    raise KeyStateError("key", f"{key_id} v{version} is not pending")
            for key_id, version, at in expire:
                conn.execute(
                    update(keys_t).where(keys_t.c.key_id == key_id, keys_t.c.version == version)
                    .values(expires_at=case((keys_t.c.expires_at.is_(None), at),
                                            (keys_t.c.expires_at > at, at), else_=keys_t.c.expires_at))
                )

        self._write(change, ev)


    # -- key ceremonies -------------------------------------------------------------

    def open_ceremony(self, c: Ceremony, ev: AuditEvent) -> None:
        def change(conn: Connection) -> None:
            conn.execute(ceremonies_t.insert().values(
                ceremony_id=c.ceremony_id, spec=c.spec.attributes(), alias=c.alias,
                legacy_types=",".join(sorted(t.value for t in c.legacy_types)),
                ctk_id=c.ctk_id, ctk_version=c.ctk_version, required=c.required, state=c.state.value,
                started_by=c.started_by, approved_by=None, created_at=c.created_at, expires_at=c.expires_at))

        self._write(change, ev)

    def ceremony(self, ceremony_id: str) -> Ceremony:
        return self._read(lambda conn: self._ceremony(conn, ceremony_id), "ceremony")

    @staticmethod
    def _ceremony(conn: Connection, ceremony_id: str, lock: bool = False) -> Ceremony:
        q = select(ceremonies_t).where(ceremonies_t.c.ceremony_id == ceremony_id)
        r = conn.execute(q.with_for_update() if lock else q).first()
        if r is None:
            raise KeyNotFound("ceremony_id", "no such ceremony")
        parts = conn.execute(
            select(components_t.c.custodian, components_t.c.kcv)
            .where(components_t.c.ceremony_id == ceremony_id).order_by(components_t.c.position)
        ).all()
        return Ceremony(
            r.ceremony_id, KeySpec.parse(r.spec), r.alias,
            frozenset(KeyType(t) for t in r.legacy_types.split(",") if t),
            r.ctk_id, int(r.ctk_version), int(r.required), CeremonyState(r.state), r.started_by,
            r.approved_by, _utc(r.created_at) or _now(), _utc(r.expires_at) or _now(),
            tuple((p.custodian, p.kcv) for p in parts), r.kcv,
        )

    @staticmethod
    def _open(conn: Connection, ceremony_id: str) -> Ceremony:
        """The ceremony, locked for this transaction; refused unless OPEN and unexpired."""
        c = KeyStore._ceremony(conn, ceremony_id, lock=True)
        if c.state is not CeremonyState.OPEN:
            raise KeyStateError("ceremony_id", f"the ceremony is {c.state.value}")
        if c.expires_at <= _now():
            raise KeyStateError("ceremony_id", "the ceremony has expired; start again")
        return c

    def approve_ceremony(self, ceremony_id: str, officer: str, ev: AuditEvent) -> Ceremony:
        def change(conn: Connection) -> Ceremony:
            c = self._open(conn, ceremony_id)
            if officer == c.started_by:
                raise PermissionDenied("ceremony_id", "dual control: the officer who started it may not approve it")
            if c.approved_by is not None:
                raise KeyStateError("ceremony_id", "already approved")
            if any(who == officer for who, _ in c.components):
                raise PermissionDenied("ceremony_id", SEPARATION)
            conn.execute(update(ceremonies_t).where(ceremonies_t.c.ceremony_id == ceremony_id)
                         .values(approved_by=officer))
            return self._ceremony(conn, ceremony_id)

        return self._write(change, ev)  # type: ignore[no-any-return]

    def add_ceremony_component(
        self, ceremony_id: str, custodian: str, wrapped: bytes, kcv: bytes, ev: AuditEvent
    ) -> Ceremony:
        def change(conn: Connection) -> Ceremony:
            c = self._open(conn, ceremony_id)
            if any(who == custodian for who, _ in c.components):
                raise PermissionDenied("ceremony_id", "dual control: one component per custodian")
            if custodian in (c.started_by, c.approved_by):
                raise PermissionDenied("ceremony_id", SEPARATION)
            if len(c.components) >= c.required:
                raise KeyStateError("ceremony_id", f"already holds its {c.required} components")
            conn.execute(components_t.insert().values(
                ceremony_id=ceremony_id, position=len(c.components) + 1, custodian=custodian,
                wrapped=bytes(wrapped), kcv=kcv.hex().upper()))
            return self._ceremony(conn, ceremony_id)

        return self._write(change, ev)  # type: ignore[no-any-return]

    def ceremony_parts(self, ceremony_id: str) -> list[tuple[bytes, bytes]]:
        """The wrapped components and their KCVs, in the order given, to form the key."""
        q = (select(components_t.c.wrapped, components_t.c.kcv)
             .where(components_t.c.ceremony_id == ceremony_id).order_by(components_t.c.position))
        rows = self._read(lambda conn: conn.execute(q).all(), "ceremony parts")
        return [(bytes(r.wrapped), bytes.fromhex(r.kcv)) for r in rows]

    def close_ceremony(
        self, ceremony_id: str, state: CeremonyState, ev: AuditEvent, key: StoredKey | None = None,
        expired_ok: bool = False,
    ) -> None:
        """End a ceremony (storing its key if FORMED) and erase its wrapped components, in one transaction."""
        insert = self._inserter(key) if key is not None else None

        def change(conn: Connection) -> None:
            c = self._ceremony(conn, ceremony_id, lock=True)
            if c.state is not CeremonyState.OPEN:
                raise KeyStateError("ceremony_id", f"the ceremony is {c.state.value}")
            if c.expires_at <= _now() and not expired_ok:
                raise KeyStateError("ceremony_id", "the ceremony has expired; start again")
            if insert is not None:
                insert(conn)
            conn.execute(update(ceremonies_t).where(ceremonies_t.c.ceremony_id == ceremony_id).values(
                state=state.value, kcv=key.cryptogram.kcv.hex().upper() if key is not None else None))
            # Keep who gave which component (and its KCV); drop the wrapped values.
            conn.execute(update(components_t).where(components_t.c.ceremony_id == ceremony_id).values(wrapped=b""))

        self._write(change, ev)

    # -- LMK migration ----------------------------------------------------------------

    def all_keys(self, after: tuple[str, int] | None, limit: int) -> list[StoredKey]:
        """Every stored version in (key id, version) order, for a walk over the whole store."""
        q = select(keys_t).order_by(keys_t.c.key_id, keys_t.c.version).limit(limit)
        if after is not None:
            q = q.where((keys_t.c.key_id > after[0]) | ((keys_t.c.key_id == after[0]) & (keys_t.c.version > after[1])))
        return [_to_key(r) for r in self._read(lambda conn: conn.execute(q).all(), "all keys")]

    def replace_cryptograms(self, moves: list[tuple[StoredKey, KeyCryptogram]]) -> int:
        """Swap each key's cryptogram for its translation under a new LMK, in one transaction.

        Each row changes only if it still holds the old cryptogram. No audit row:
        the chain's MACs are still under the old LMK until :meth:`remac_audit`,
        which records the whole migration.
        """
        def work(conn: Connection) -> int:
            return sum(conn.execute(
                update(keys_t).where(keys_t.c.key_id == key.key_id, keys_t.c.version == key.version,
                                     keys_t.c.cryptogram == key.cryptogram.blob)
                .values(cryptogram=new.blob)
            ).rowcount for key, new in moves)

        n = self._transaction(work)
        self.changes += 1
        return n

    def remac_audit(self, old: Backend, ev: AuditEvent) -> int:
        """Check every audit row under the ``old`` LMK, re-MAC it under this store's, and append ``ev``.

        One transaction: the chain is wholly under one LMK or the other.
        """
        def change(conn: Connection) -> int:
            prev, n = _audit.GENESIS, 0
            for r in conn.execute(select(audit_t).order_by(audit_t.c.seq)).all():
                n += 1
                h = _audit.row_hash(r.prev_hash, r.seq, r.at, r.actor, r.action, r.key_id, r.key_version, r.detail)
                ok = (r.seq == n and r.prev_hash == prev and h == r.hash
                      and _compare.bytes_eq(old.execute(AuditMac(
                          data=bytes.fromhex(h))), bytes.fromhex(r.mac)))
                if not ok:
                    raise PermissionDenied("audit", f"row {r.seq} does not verify under the old LMK; nothing changed")
                conn.execute(update(audit_t).where(audit_t.c.seq == r.seq)
                             .values(mac=self._backend.execute(AuditMac(data=bytes.fromhex(h))).hex()))
                prev = r.hash
            return n

        return self._write(change, ev)  # type: ignore[no-any-return]

    # -- PIN-verify attempt counters --------------------------------------------------

    def failures(self, subjects: list[str], window: timedelta) -> dict[str, int]:
        """Failed attempts per subject within the current window."""
        cutoff = _now() - window
        fixed = _FAILURES.get(len(subjects))

        def work(conn: Connection) -> Any:
            if fixed is not None:
                return conn.execute(fixed, {f"s{i}": s for i, s in enumerate(subjects)}).all()
            return conn.execute(_FAILURES_ANY, {"subjects": subjects}).all()

        # The thread's reader is never pinged: one the server dropped since its last read
        # fails, _single_read lets it go, and the read goes again on a new one.
        rows = faults.read(self._single_read, work, "attempts",
                           reconnect=lambda: self._single_read(checked=True))
        return {r.subject: int(r.failures) for r in rows if _utc(r.window_start) > cutoff}  # type: ignore[operator]

    def record_failure(self, subjects: list[str], window: timedelta, ev: AuditEvent) -> None:
        """Count one failure against each subject, audited in the same transaction."""
        self.record_failures(dict.fromkeys(subjects, 1), window, ev)

    def record_failures(self, counts: dict[str, int], window: timedelta, ev: AuditEvent) -> None:
        """Add ``counts[subject]`` failures to each subject in one transaction with its audit row."""
        now = _now()

        def change(conn: Connection) -> None:
            held = self._held_counters(conn, counts)
            for subject, n in counts.items():
                c = held.get(subject)
                live = c is not None and c.start is not None and c.start > now - window
                new = _attempts.Counter(c.failures + n, c.start) if live and c else _attempts.Counter(n, now)
                self._put_counter(conn, subject, new, stored=c is not None)

        self._write(change, ev)

    def settle_attempts(
        self,
        attempts: list[_attempts.Attempt],
        *,
        limits: dict[str, int],
        window: timedelta,
        audit: Callable[[_attempts.Settlement], AuditEvent],
    ) -> _attempts.Settlement:
        """Settle evaluated PIN checks against their counters in one transaction (:mod:`hsmsvc.keys.attempts`).

        The rows are read FOR UPDATE (on SQLite the transaction holds the write lock from
        BEGIN), so two settlements of one counter never both see it below its limit; two
        first failures of one subject collide on its key and the loser runs again. The audit
        row ``audit(settlement)`` is written in the same transaction when anything was counted.
        """
        def change(conn: Connection) -> _attempts.Settlement:
            held = self._held_counters(conn, {s for a in attempts for s in a.subjects})
            out = _attempts.settle(attempts, held, limits=limits, now=_now(), window=window)
            for subject, c in out.counters.items():
                self._put_counter(conn, subject, c, stored=subject in held)
            return out

        return self._write(change, lambda out: audit(out) if out.failures else None)  # type: ignore[no-any-return]

    @staticmethod
    def _held_counters(conn: Connection, subjects: Iterable[str]) -> dict[str, _attempts.Counter]:
        # Sorted, so two transactions lock shared rows in one order and never deadlock.
        rows = conn.execute(select(attempts_t).where(attempts_t.c.subject.in_(sorted(subjects)))
                            .order_by(attempts_t.c.subject).with_for_update()).all()
        return {r.subject: _attempts.Counter(int(r.failures), _utc(r.window_start)) for r in rows}

    @staticmethod
    def _put_counter(conn: Connection, subject: str, c: _attempts.Counter, *, stored: bool) -> None:
        where = attempts_t.c.subject == subject
        if not c.failures:
            if stored:
                conn.execute(delete(attempts_t).where(where))
        elif stored:
            conn.execute(update(attempts_t).where(where).values(failures=c.failures, window_start=c.start))
        else:
            conn.execute(attempts_t.insert().values(subject=subject, failures=c.failures, window_start=c.start))

    def clear_failures(self, subject: str) -> None:
        """A correct PIN resets its card's counter, as a card's PIN try counter does."""
        self._transaction(lambda conn: conn.execute(delete(attempts_t).where(attempts_t.c.subject == subject)))


# A pooled connection idle this long is pinged before use. SQLAlchemy's pool_pre_ping pings at
# every checkout: a round trip that doubled the attempt read on every PIN verification (on
# loopback here 258 to 459 us, 194 to 326 us of CPU). Under load a connection is back in use
# within milliseconds; one the server dropped meanwhile fails its statement, the pool lets it
# and its elders go, and the read or write goes again on a new one (KeyStore.failures,
# KeyStore._transaction) unless it had reached COMMIT.
_PING_AFTER: Final = 1.0


def _idle_from(_dbapi_conn: Any, record: Any) -> None:
    record.info["idle_from"] = time.monotonic()


def _ping_if_idle(dialect: Any, always: Callable[[], bool]) -> Any:
    """A pool checkout listener: ``dialect``'s ping (as pool_pre_ping's), for a connection idle
    for :data:`_PING_AFTER` or longer, or for any while ``always()``."""

    def checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        idle_from = record.info.get("idle_from")
        if (idle_from is None or time.monotonic() - idle_from < _PING_AFTER) and not always():
            return
        try:
            dialect.do_ping(dbapi_conn)
        except Exception:
            # The pool's documented answer: it drops this connection and checks out another.
            raise DisconnectionError() from None

    return checkout


SEPARATION: Final = ("dual control: the officer who started or approved a ceremony "
                      "may not also give it a component")
"""A principal both manager and custodian still counts once per ceremony (checked in its transaction)."""


def _create_private(database: str | None) -> None:
    """Create a SQLite store file 0600 before SQLite would create it 0644 (umask permitting).

    Its -wal and -shm files take the database file's mode (SQLite's unix VFS copies it), so
    key cryptograms, audit rows and attempt counters are readable by the service's user only.
    """
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    try:
        os.close(os.open(database, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass  # an existing store keeps the mode its operator gave it
    except OSError:
        pass  # a missing directory: SQLite's own open reports it as it always has


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN IMMEDIATE itself.
    dbapi_conn.isolation_level = None
    dbapi_conn.execute("PRAGMA busy_timeout = 10000")
    dbapi_conn.execute("PRAGMA journal_mode = WAL")


def _sqlite_begin(conn: Connection) -> None:
    # Writers take the lock at BEGIN so two processes never interleave a chain
    # append; readers (every key lookup) take none and do not queue behind them.
    # info belongs to the pooled connection, not to this checkout: marks are removed after use.
    if conn.info.get("single_read"):
        return
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.pop("immediate", False) else "BEGIN")
