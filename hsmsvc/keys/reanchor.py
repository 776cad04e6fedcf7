"""Re-anchoring the audit chain after a database restore, under dual control.

A restored backup's chain is shorter than its anchor and checkpoints, which
``hsmsvc audit verify`` rightly reports as BROKEN. Re-anchoring accepts that
shortening explicitly: two distinct key officers (dual control, as the PCI PIN
Security Requirements use the term), a chain whose rows all verify, and an audited row that
names both officers, the previous store id and the head given up. The store
then takes a new id, so anchors and checkpoints of the old one no longer apply,
while the row saying so stays in the chain for every later verification.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from hsmsvc.errors import PermissionDenied
from hsmsvc.hsm.backend import Backend
from hsmsvc.hsm.commands import ReadAuditAnchor
from hsmsvc.keys.audit import REANCHOR
from hsmsvc.keys.model import AuditEvent
from hsmsvc.keys.store import KeyStore

__all__ = ["Reanchored", "reanchor"]


@dataclass(frozen=True)
class Reanchored:
    old_store: str
    new_store: str
    restored_rows: int
    anchored_seq: int
    """The anchor's sequence number given up (0 if there was none)."""


def reanchor(store: KeyStore, backend: Backend, *, first_officer: str, second_officer: str,
             reason: str, checkpoints: Path | None = None) -> Reanchored:
    """Re-anchor ``store`` at its present head; ``PermissionDenied`` unless dual control and intact rows."""
    if not first_officer or not second_officer or first_officer == second_officer:
        raise PermissionDenied("officers", "two distinct key officers (dual control)")
    if not reason.strip():
        raise PermissionDenied("reason", "a reason (e.g. the restore's ticket)")
    report = store.verify_audit(checkpoints)
    if report.chain:
        # Only the anchor may disagree: rows that do not verify are tampering, not a restore.
        raise PermissionDenied("audit", f"{len(report.chain)} rows do not verify; nothing re-anchored")
    old = store.store_id
    anchor = backend.execute(ReadAuditAnchor(store=old))
    new = secrets.token_hex(16)
    detail = (("anchored_seq", str(anchor[0] if anchor else 0)), ("officers", f"{first_officer},{second_officer}"),
              ("previous_store", old), ("reason", reason.strip()[:200]), ("restored_rows", str(report.rows)))
    store.rebind(new, AuditEvent(first_officer, REANCHOR, None, None, detail))
    return Reanchored(old, new, report.rows, anchor[0] if anchor else 0)
