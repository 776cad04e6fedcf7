"""The SM2 key exchanges' repository: each agreement's ephemeral key pair until it is used once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import delete, func, select
from sqlalchemy.engine import Connection

from hsmsvc.errors import Overloaded
from hsmsvc.hsm.model import KeyCryptogram, KeySpec
from hsmsvc.keys.model import AuditEvent
from hsmsvc.keys.schema import key_agreements as agreements_t
from hsmsvc.keys.store.chain import AuditChain
from hsmsvc.keys.store.database import Database, now, utc
from hsmsvc.types import Exportability, KeyType, KeyUsage, ModeOfUse

__all__ = ["EPHEMERAL_PREFIX", "PENDING_LIMIT", "Agreements", "PendingAgreement", "ephemeral_spec"]

EPHEMERAL_PREFIX: Final = "agreement:"
"""Reserved: no stored key's id starts so (store/keys.py), so no ephemeral block can pass for one."""
PENDING_LIMIT: Final = 16
"""Started and not yet used agreements per KAK and officer: each costs a key pair and a cache entry."""


def ephemeral_spec(agreement_id: str, kak: KeySpec) -> KeySpec:
    """The binding of an agreement's ephemeral pair: a KAK of the static KAK's curve and zone,
    named after the agreement, never exportable."""
    return KeySpec(EPHEMERAL_PREFIX + agreement_id, 1, KeyType.KAK, kak.algorithm,
                   KeyUsage.ASYMMETRIC_KEY_WRAPPING, ModeOfUse.DERIVE, Exportability.NON_EXPORTABLE, kak.zone)


@dataclass(frozen=True)
class PendingAgreement:
    """A started agreement: which KAK and officer it is for, its ephemeral pair under the LMK, until when."""

    agreement_id: str
    kak_id: str
    kak_version: int
    ephemeral: KeyCryptogram
    started_by: str
    expires_at: datetime


class Agreements:
    """The pending agreements in ``db``; a start is audited through ``chain``."""

    def __init__(self, db: Database, chain: AuditChain) -> None:
        self._db = db
        self._chain = chain

    def start(self, a: PendingAgreement, ev: AuditEvent) -> None:
        """Keep ``a`` unless its KAK and officer already have :data:`PENDING_LIMIT` pending;
        expired agreements are swept in the same transaction."""
        c = agreements_t.c

        def change(conn: Connection) -> None:
            conn.execute(delete(agreements_t).where(c.expires_at < now()))
            pending = conn.execute(select(func.count()).select_from(agreements_t).where(
                c.kak_id == a.kak_id, c.kak_version == a.kak_version, c.started_by == a.started_by)).scalar()
            if int(pending or 0) >= PENDING_LIMIT:
                raise Overloaded("kak", f"{PENDING_LIMIT} agreements already started and not used: "
                                        "finish them or wait until they expire")
            conn.execute(agreements_t.insert().values(
                agreement_id=a.agreement_id, kak_id=a.kak_id, kak_version=a.kak_version,
                cryptogram=a.ephemeral.blob, kcv=a.ephemeral.kcv.hex().upper(), started_by=a.started_by,
                created_at=now(), expires_at=a.expires_at))

        self._chain.write(change, ev)

    def take(self, agreement_id: str, *, kak: KeySpec, started_by: str) -> PendingAgreement | None:
        """Delete and return the agreement ``started_by`` started with ``kak``, expired or not:
        one DELETE ... RETURNING, so at most one caller ever gets it and its ephemeral key is used
        at most once. Another officer's or another KAK's agreement is left alone."""
        c = agreements_t.c
        q = (delete(agreements_t)
             .where(c.agreement_id == agreement_id, c.kak_id == kak.key_id, c.kak_version == kak.version,
                    c.started_by == started_by)
             .returning(c.cryptogram, c.kcv, c.expires_at))

        def change(conn: Connection) -> PendingAgreement | None:
            r = conn.execute(q).first()
            if r is None:
                return None
            ephemeral = KeyCryptogram(ephemeral_spec(agreement_id, kak), bytes(r.cryptogram), bytes.fromhex(r.kcv))
            expires = utc(r.expires_at)
            assert expires is not None
            return PendingAgreement(agreement_id, kak.key_id, kak.version, ephemeral, started_by, expires)

        return self._db.transaction(change)

    def purge(self) -> int:
        """Drop every pending agreement (an LMK migration: their keys are under the old LMK)."""
        return self._db.transaction(lambda conn: conn.execute(delete(agreements_t)).rowcount)
