"""The SM2 key exchanges' repository: each agreement's ephemeral key pair until it is used once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.engine import Connection

from hsmsvc.hsm.model import KeyCryptogram, KeySpec
from hsmsvc.keys.model import AuditEvent
from hsmsvc.keys.schema import key_agreements as agreements_t
from hsmsvc.keys.store.chain import AuditChain
from hsmsvc.keys.store.database import Database, now, utc
from hsmsvc.types import Exportability, KeyType, KeyUsage, ModeOfUse

__all__ = ["Agreements", "PendingAgreement", "ephemeral_spec"]


def ephemeral_spec(agreement_id: str, kak: KeySpec) -> KeySpec:
    """The binding of an agreement's ephemeral pair: a KAK of the static KAK's curve and zone,
    named after the agreement, never exportable."""
    return KeySpec(f"agreement:{agreement_id}", 1, KeyType.KAK, kak.algorithm, KeyUsage.ASYMMETRIC_KEY_WRAPPING,
                   ModeOfUse.DERIVE, Exportability.NON_EXPORTABLE, kak.zone)


@dataclass(frozen=True)
class PendingAgreement:
    """A started agreement: which KAK it is for, its ephemeral pair under the LMK, until when."""

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
        """Keep ``a``; expired agreements are swept in the same transaction."""

        def change(conn: Connection) -> None:
            conn.execute(delete(agreements_t).where(agreements_t.c.expires_at < now()))
            conn.execute(agreements_t.insert().values(
                agreement_id=a.agreement_id, kak_id=a.kak_id, kak_version=a.kak_version,
                cryptogram=a.ephemeral.blob, kcv=a.ephemeral.kcv.hex().upper(), started_by=a.started_by,
                created_at=now(), expires_at=a.expires_at))

        self._chain.write(change, ev)

    def take(self, agreement_id: str, kak: KeySpec) -> PendingAgreement | None:
        """Delete and return the agreement, whether or not it is still valid: at most one caller
        ever gets its row (one DELETE ... RETURNING), so the ephemeral key is used at most once."""
        c = agreements_t.c
        q = (delete(agreements_t).where(c.agreement_id == agreement_id)
             .returning(c.kak_id, c.kak_version, c.cryptogram, c.kcv, c.started_by, c.expires_at))

        def change(conn: Connection) -> PendingAgreement | None:
            r = conn.execute(q).first()
            if r is None:
                return None
            ephemeral = KeyCryptogram(ephemeral_spec(agreement_id, kak), bytes(r.cryptogram), bytes.fromhex(r.kcv))
            expires = utc(r.expires_at)
            assert expires is not None
            return PendingAgreement(agreement_id, r.kak_id, int(r.kak_version), ephemeral, r.started_by, expires)

        return self._db.transaction(change)
