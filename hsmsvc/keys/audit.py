"""The tamper-evident audit chain: hash-chained rows, each MACed under the LMK.

Row ``n`` carries ``hash_n = SHA-256(hash_{n-1} || canonical row n)`` and
``mac_n = CMAC_LMK(audit domain || hash_n)`` (the MAC comes from the backend, so
only a holder of the LMK can forge a row). Sequence numbers run 1, 2, 3, ...
without gaps. The newest (seq, hash) is also anchored in the backend, outside
the database, bound to the store's id, so deleting the newest rows is detected
too, and optionally checkpointed to an append-only sink (keys/checkpoints.py),
so rolling back anchor and table together is detected as well.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Final, Iterable, Sequence

from hsmsvc.crypto import compare
from hsmsvc.hsm.backend import Backend
from hsmsvc.hsm.commands import AuditMac, ReadAuditAnchor
from hsmsvc.keys.checkpoints import Checkpoint

__all__ = ["GENESIS", "AuditRow", "VerifyReport", "row_hash", "verify_chain"]

GENESIS = "0" * 64
REANCHOR: Final = "audit.reanchor"
"""The action of a re-anchoring after a database restore (keys/reanchor.py)."""


@dataclass(frozen=True)
class AuditRow:
    seq: int
    at: str
    actor: str
    action: str
    key_id: str | None
    key_version: int | None
    detail: str
    prev_hash: str
    hash: str
    mac: str


def row_hash(*, prev_hash: str, seq: int, at: str, actor: str, action: str,
             key_id: str | None, key_version: int | None, detail: str) -> str:
    body = json.dumps([seq, at, actor, action, key_id, key_version, detail], separators=(",", ":"))
    return hashlib.sha256(bytes.fromhex(prev_hash) + body.encode()).hexdigest()


@dataclass(frozen=True)
class VerifyReport:
    """``chain``: problems in the rows themselves; ``anchor``: the rows against the anchor and
    checkpoints (a re-anchoring under dual control may clear these, never the former)."""

    rows: int
    chain: tuple[str, ...]
    anchor: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def problems(self) -> tuple[str, ...]:
        return self.chain + self.anchor

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_chain(rows: Iterable[AuditRow], backend: Backend, *, store: str, keys: int,
                 checkpoints: Sequence[Checkpoint] | None = None) -> VerifyReport:
    """Check sequence, chain, MACs, the anchor and any checkpoints; report every problem found.

    ``store`` is the store's id (its anchor is the one bound to it); ``keys`` the number
    of key rows (keys with no audit row at all mean the chain was emptied).
    """
    problems: list[str] = []
    prev = GENESIS
    expected = 1
    by_seq: dict[int, str] = {}
    notes: list[str] = []
    n = 0
    for r in rows:
        n += 1
        if r.seq != expected:
            problems.append(f"seq {expected}: missing (next row is {r.seq})")
            expected = r.seq
        if r.prev_hash != prev:
            problems.append(f"seq {r.seq}: does not chain to the row before")
        h = row_hash(prev_hash=r.prev_hash, seq=r.seq, at=r.at, actor=r.actor, action=r.action, key_id=r.key_id,
                     key_version=r.key_version, detail=r.detail)
        if h != r.hash:
            problems.append(f"seq {r.seq}: content does not match its hash")
        try:
            mac_ok = compare.bytes_eq(backend.execute(AuditMac(
                data=bytes.fromhex(r.hash))), bytes.fromhex(r.mac))
        except ValueError:
            mac_ok = False
        if not mac_ok:
            problems.append(f"seq {r.seq}: MAC does not verify under this LMK")
        if r.action == REANCHOR:
            notes.append(f"seq {r.seq}: re-anchored by {r.actor}: {r.detail}")
        by_seq[r.seq] = r.hash
        prev = r.hash
        expected += 1
    anchored = _anchored(backend, store, by_seq, keys, checkpoints)
    if checkpoints is not None and (bad := [c.line_no for c in checkpoints if not c.valid]):
        # Ignored, not failed: an earlier LMK's lines, or appended noise; neither hides a row,
        # and a line that verifies cannot be made without the LMK.
        notes.append(f"{len(bad)} checkpoint lines do not verify under this LMK and were ignored "
                     f"(first: line {bad[0]}; an earlier LMK's, or forged)")
    return VerifyReport(n, tuple(problems), tuple(anchored), tuple(notes))


def _anchored(backend: Backend, store: str, by_seq: dict[int, str], keys: int,
              checkpoints: Sequence[Checkpoint] | None) -> list[str]:
    problems: list[str] = []
    anchor = backend.execute(ReadAuditAnchor(store=store))
    if anchor is None:
        # Only a chain that is empty and was never anchored may have no anchor: a store's
        # first audited action anchors it, so a missing one was deleted.
        if by_seq:
            problems.append("the anchor is missing: deleted, or this LMK never anchored this store")
        elif keys:
            problems.append(f"{keys} key rows but no audit row and no anchor: the chain was emptied")
    else:
        seq, head = anchor
        if seq not in by_seq:
            problems.append(f"anchored head seq {seq} is missing: newest rows were deleted")
        elif by_seq[seq] != head.hex():
            problems.append(f"seq {seq}: differs from the anchored head")
    if checkpoints is None:
        return problems
    valid = [c for c in checkpoints if c.valid]
    for c in valid:
        if c.seq in by_seq and by_seq[c.seq] != c.head:
            problems.append(f"seq {c.seq}: differs from checkpoint line {c.line_no}")
    if valid:
        newest = max(valid, key=lambda c: c.seq)
        if newest.seq not in by_seq:
            problems.append(f"checkpointed seq {newest.seq} is missing: the chain was rolled back or shortened")
    elif by_seq or keys:
        problems.append("no checkpoint names this store: the sink is not this store's, or was replaced")
    return problems
