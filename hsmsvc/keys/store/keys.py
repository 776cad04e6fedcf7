"""The keys' repository: versions under the LMK, their states, use counters and key changes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, case, func, select, update
from sqlalchemy.engine import Connection, Row

from hsmsvc.errors import InvalidInput, KeyNotFound, KeyStateError
from hsmsvc.hsm.model import KeyCryptogram, KeySpec, LegacyForm
from hsmsvc.keys.model import AuditEvent, StoredKey, SyncState
from hsmsvc.keys.schema import keys as keys_t
from hsmsvc.keys.store.sync import advance
from hsmsvc.keys.store.chain import AuditChain
from hsmsvc.keys.store.database import Database, now, utc
from hsmsvc.types import Algorithm, Exportability, KeyState, KeyType, KeyUsage, ModeOfUse

__all__ = ["KeyRepository", "inserter", "to_key"]


def to_key(r: Row[Any]) -> StoredKey:
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
    created = utc(r.created_at)
    if created is None:
        raise KeyStateError("key", "row has no creation time")
    return StoredKey(
        KeyCryptogram(spec, bytes(r.cryptogram or b""), bytes.fromhex(r.kcv)),
        KeyState(r.state),
        created,
        r.alias,
        utc(r.activated_at),
        utc(r.expires_at),
        int(r.use_count),
        r.max_uses,
        utc(r.activates_at),
        frozenset(KeyType(t) for t in (r.legacy_types or "").split(",") if t),
        LegacyForm(r.legacy_form or LegacyForm.NONE.value),
    )


def inserter(key: StoredKey, guard: Callable[[Connection, StoredKey], None] | None = None,
             ) -> Callable[[Connection], None]:
    """The statement storing ``key``, to run in a transaction (a key's or a ceremony's)."""
    s = key.cryptogram.spec
    if s.key_id.startswith("agreement:"):  # agreements.EPHEMERAL_PREFIX: an ephemeral key's, never a stored one's
        raise InvalidInput("template.key_id", "the prefix agreement: is reserved")

    def change(conn: Connection) -> None:
        if guard is not None:  # in the insert's transaction: keys/store/bindings.py says why
            guard(conn, key)
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
                legacy_form=key.legacy_form.value,
            )
        )

    return change


def _after(after: tuple[str, int]) -> ColumnElement[bool]:
    """Rows past (key id, version) ``after``, for paging in that order."""
    return (keys_t.c.key_id > after[0]) | ((keys_t.c.key_id == after[0]) & (keys_t.c.version > after[1]))


class KeyRepository:
    """Key versions in ``db``; each change is audited through ``chain``."""

    def __init__(self, db: Database, chain: AuditChain) -> None:
        self._db = db
        self._chain = chain

    # -- reads ------------------------------------------------------------------------

    def get(self, key_id: str, version: int | None = None) -> StoredKey:
        """One version; with no version, the newest ACTIVE one, else the newest."""
        return self._one(keys_t.c.key_id == key_id, version)

    def get_by_alias(self, alias: str, version: int | None = None) -> StoredKey:
        return self._one(keys_t.c.alias == alias, version)

    def _one(self, where: ColumnElement[bool], version: int | None) -> StoredKey:
        q = select(keys_t).where(where)
        if version is not None:
            q = q.where(keys_t.c.version == version)
        else:
            # The newest version usable now: ACTIVE and past its activation time
            # (a key change's new version waits for it; the old one serves till then).
            usable = (keys_t.c.state == KeyState.ACTIVE.value) & (
                keys_t.c.activates_at.is_(None) | (keys_t.c.activates_at <= now())
            )
            active_first = case((usable, 0), (keys_t.c.state == KeyState.ACTIVE.value, 1), else_=2)
            q = q.order_by(active_first, keys_t.c.version.desc()).limit(1)
        r = self._db.read(lambda conn: conn.execute(q).first(), "key", ("key", "not a valid key reference"))
        if r is None:
            raise KeyNotFound("key", "no such key, alias or version")
        return to_key(r)

    def next_activation(self, key_id: str = "", alias: str = "") -> datetime | None:
        """When the next of this key's ACTIVE versions becomes usable, if one waits (a key change)."""
        where = keys_t.c.key_id == key_id if key_id else keys_t.c.alias == alias
        q = select(func.min(keys_t.c.activates_at)).where(
            where, keys_t.c.state == KeyState.ACTIVE.value, keys_t.c.activates_at > now())
        return utc(self._db.read(lambda conn: conn.execute(q).scalar(), "next activation"))

    def page(
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
            q = q.where(_after(after))
        q = q.order_by(keys_t.c.key_id, keys_t.c.version).limit(limit)
        return [to_key(r) for r in self._db.read(lambda conn: conn.execute(q).all(), "list keys")]

    def all_versions(self, after: tuple[str, int] | None, limit: int) -> list[StoredKey]:
        """Every stored version in (key id, version) order, for a walk over the whole store (LMK migration)."""
        q = select(keys_t).order_by(keys_t.c.key_id, keys_t.c.version).limit(limit)
        if after is not None:
            q = q.where(_after(after))
        return [to_key(r) for r in self._db.read(lambda conn: conn.execute(q).all(), "all keys")]

    def versions(self, key_id: str) -> list[StoredKey]:
        q = select(keys_t).where(keys_t.c.key_id == key_id).order_by(keys_t.c.version)
        return [to_key(r) for r in self._db.read(lambda conn: conn.execute(q).all(), "versions")]

    def next_version(self, key_id: str) -> int:
        q = select(func.max(keys_t.c.version)).where(keys_t.c.key_id == key_id)
        return int(self._db.read(lambda conn: conn.execute(q).scalar(), "next version") or 0) + 1

    def count(self) -> int:
        return int(self._db.read(lambda conn: conn.execute(select(func.count()).select_from(keys_t)).scalar() or 0,
                                 "key count"))

    # -- writes -----------------------------------------------------------------------

    def add(self, key: StoredKey, ev: AuditEvent,
            guard: Callable[[Connection, StoredKey], None] | None = None) -> None:
        self._chain.write(inserter(key, guard), ev)

    def add_rotated(self, key: StoredKey, retire: list[int], ev: AuditEvent) -> None:
        """Add a new version and move ``retire`` versions from ACTIVE to RETIRING, atomically."""
        s = key.cryptogram.spec
        add = inserter(key)

        def change(conn: Connection) -> None:
            add(conn)
            for v in retire:
                conn.execute(
                    update(keys_t)
                    .where(keys_t.c.key_id == s.key_id, keys_t.c.version == v,
                           keys_t.c.state == KeyState.ACTIVE.value)
                    .values(state=KeyState.RETIRING.value)
                )

        self._chain.write(change, ev)

    def set_state(self, key_id: str, version: int, state: KeyState, ev: AuditEvent) -> None:
        def change(conn: Connection) -> None:
            values: dict[str, Any] = {"state": state.value}
            if state is KeyState.ACTIVE:
                values["activated_at"] = now()
            if state is KeyState.DESTROYED:
                values["cryptogram"] = None
            n = conn.execute(
                update(keys_t).where(keys_t.c.key_id == key_id, keys_t.c.version == version).values(**values)
            ).rowcount
            if n != 1:
                raise KeyNotFound("key_id", "no such key or version")

        self._chain.write(change, ev)

    def reserve_uses(self, key_id: str, version: int, n: int) -> int:
        """Add ``n`` to a key's use counter atomically; the counter after the addition.

        Servers reserve uses in blocks, so the hot path writes once per block and
        several processes on one database never count the same use twice.
        """
        v = self._db.transaction(lambda conn: conn.execute(
            update(keys_t)
            .where(keys_t.c.key_id == key_id, keys_t.c.version == version)
            .values(use_count=keys_t.c.use_count + n)
            .returning(keys_t.c.use_count)
        ).scalar())
        if v is None:
            raise KeyNotFound("key", "no such key or version")
        return int(v)

    def change(
        self,
        ev: AuditEvent,
        add: Sequence[StoredKey] = (),
        activate: Sequence[tuple[str, int, datetime]] = (),
        expire: Sequence[tuple[str, int, datetime]] = (),
        sync: tuple[SyncState, int] | None = None,
        guard: Callable[[Connection, StoredKey], None] | None = None,
    ) -> None:
        """One transaction of a key change: new versions, activations, grace ends, the zone's sequence.

        ``sync`` is the new sequence row and the sequence the row must hold now
        (0: none), so two servers racing on one zone cannot both advance it.
        """
        inserters = [inserter(k, guard) for k in add]

        def change(conn: Connection) -> None:
            if sync is not None:
                advance(conn, *sync)
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

        self._chain.write(change, ev)

    def replace_cryptograms(self, moves: list[tuple[StoredKey, KeyCryptogram]]) -> int:
        """Swap each key's cryptogram for its translation under a new LMK, in one transaction (LMK migration).

        Each row changes only if it still holds the old cryptogram. No audit row:
        the chain's MACs are still under the old LMK until :meth:`AuditChain.remac`,
        which records the whole migration.
        """
        def work(conn: Connection) -> int:
            return sum(conn.execute(
                update(keys_t).where(keys_t.c.key_id == key.key_id, keys_t.c.version == key.version,
                                     keys_t.c.cryptogram == key.cryptogram.blob)
                .values(cryptogram=new.blob)
            ).rowcount for key, new in moves)

        n = self._db.transaction(work)
        self._db.changes += 1
        return n
