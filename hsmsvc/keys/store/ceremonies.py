"""The key ceremonies' repository: dual-control ceremonies and their wrapped components."""

from __future__ import annotations

from typing import Final

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from hsmsvc.errors import KeyNotFound, KeyStateError, PermissionDenied
from hsmsvc.hsm.model import KeySpec, LegacyForm
from hsmsvc.keys.model import AuditEvent, Ceremony, CeremonyState, StoredKey
from hsmsvc.keys.schema import ceremonies as ceremonies_t
from hsmsvc.keys.schema import ceremony_components as components_t
from hsmsvc.keys.store.chain import AuditChain
from hsmsvc.keys.store.database import Database, now, utc
from hsmsvc.keys.store.keys import inserter
from hsmsvc.types import KeyType

__all__ = ["SEPARATION", "Ceremonies"]

SEPARATION: Final = ("dual control: the officer who started or approved a ceremony "
                      "may not also give it a component")
"""A principal both manager and custodian still counts once per ceremony (checked in its transaction)."""


class Ceremonies:
    """The ceremonies in ``db``; each step is audited through ``chain`` and checked in its transaction."""

    def __init__(self, db: Database, chain: AuditChain) -> None:
        self._db = db
        self._chain = chain

    def open(self, c: Ceremony, ev: AuditEvent) -> None:
        def change(conn: Connection) -> None:
            conn.execute(ceremonies_t.insert().values(
                ceremony_id=c.ceremony_id, spec=c.spec.attributes(), alias=c.alias,
                legacy_types=",".join(sorted(t.value for t in c.legacy_types)), legacy_form=c.legacy_form.value,
                ctk_id=c.ctk_id, ctk_version=c.ctk_version, required=c.required, state=c.state.value,
                started_by=c.started_by, approved_by=None, created_at=c.created_at, expires_at=c.expires_at))

        self._chain.write(change, ev)

    def get(self, ceremony_id: str) -> Ceremony:
        return self._db.read(lambda conn: _ceremony(conn, ceremony_id), "ceremony")

    def approve(self, ceremony_id: str, officer: str, ev: AuditEvent) -> Ceremony:
        def change(conn: Connection) -> Ceremony:
            c = _open(conn, ceremony_id)
            if officer == c.started_by:
                raise PermissionDenied("ceremony_id", "dual control: the officer who started it may not approve it")
            if c.approved_by is not None:
                raise KeyStateError("ceremony_id", "already approved")
            if any(who == officer for who, _ in c.components):
                raise PermissionDenied("ceremony_id", SEPARATION)
            conn.execute(update(ceremonies_t).where(ceremonies_t.c.ceremony_id == ceremony_id)
                         .values(approved_by=officer))
            return _ceremony(conn, ceremony_id)

        return self._chain.write(change, ev)

    def add_component(self, ceremony_id: str, custodian: str, wrapped: bytes, kcv: bytes, ev: AuditEvent) -> Ceremony:
        def change(conn: Connection) -> Ceremony:
            c = _open(conn, ceremony_id)
            if any(who == custodian for who, _ in c.components):
                raise PermissionDenied("ceremony_id", "dual control: one component per custodian")
            if custodian in (c.started_by, c.approved_by):
                raise PermissionDenied("ceremony_id", SEPARATION)
            if len(c.components) >= c.required:
                raise KeyStateError("ceremony_id", f"already holds its {c.required} components")
            conn.execute(components_t.insert().values(
                ceremony_id=ceremony_id, position=len(c.components) + 1, custodian=custodian,
                wrapped=bytes(wrapped), kcv=kcv.hex().upper()))
            return _ceremony(conn, ceremony_id)

        return self._chain.write(change, ev)

    def parts(self, ceremony_id: str) -> list[tuple[bytes, bytes]]:
        """The wrapped components and their KCVs, in the order given, to form the key."""
        q = (select(components_t.c.wrapped, components_t.c.kcv)
             .where(components_t.c.ceremony_id == ceremony_id).order_by(components_t.c.position))
        rows = self._db.read(lambda conn: conn.execute(q).all(), "ceremony parts")
        return [(bytes(r.wrapped), bytes.fromhex(r.kcv)) for r in rows]

    def close(
        self, ceremony_id: str, state: CeremonyState, ev: AuditEvent, key: StoredKey | None = None,
        expired_ok: bool = False,
    ) -> None:
        """End a ceremony (storing its key if FORMED) and erase its wrapped components, in one transaction."""
        insert = inserter(key) if key is not None else None

        def change(conn: Connection) -> None:
            c = _ceremony(conn, ceremony_id, lock=True)
            if c.state is not CeremonyState.OPEN:
                raise KeyStateError("ceremony_id", f"the ceremony is {c.state.value}")
            if c.expires_at <= now() and not expired_ok:
                raise KeyStateError("ceremony_id", "the ceremony has expired; start again")
            if insert is not None:
                insert(conn)
            conn.execute(update(ceremonies_t).where(ceremonies_t.c.ceremony_id == ceremony_id).values(
                state=state.value, kcv=key.cryptogram.kcv.hex().upper() if key is not None else None))
            # Keep who gave which component (and its KCV); drop the wrapped values.
            conn.execute(update(components_t).where(components_t.c.ceremony_id == ceremony_id).values(wrapped=b""))

        self._chain.write(change, ev)


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
        r.approved_by, utc(r.created_at) or now(), utc(r.expires_at) or now(),
        tuple((p.custodian, p.kcv) for p in parts), r.kcv, LegacyForm(r.legacy_form or LegacyForm.NONE.value),
    )


def _open(conn: Connection, ceremony_id: str) -> Ceremony:
    """The ceremony, locked for this transaction; refused unless OPEN and unexpired."""
    c = _ceremony(conn, ceremony_id, lock=True)
    if c.state is not CeremonyState.OPEN:
        raise KeyStateError("ceremony_id", f"the ceremony is {c.state.value}")
    if c.expires_at <= now():
        raise KeyStateError("ceremony_id", "the ceremony has expired; start again")
    return c
