"""The tamper-evident audit chain: hash-chained rows, each MACed under the LMK.

Row ``n`` carries ``hash_n = SHA-256(hash_{n-1} || canonical row n)`` and
``mac_n = CMAC_LMK(audit domain || hash_n)`` (the MAC comes from the backend, so
only a holder of the LMK can forge a row). Sequence numbers run 1, 2, 3, ...
without gaps. The newest (seq, hash) is also anchored in the backend, outside
the database, so deleting the newest rows is detected too.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Iterable

from hsmsvc.crypto import _compare
from hsmsvc.hsm.backend import Backend

__all__ = ["GENESIS", "AuditRow", "VerifyReport", "row_hash", "verify_chain"]

GENESIS = "0" * 64


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


def row_hash(prev_hash: str, seq: int, at: str, actor: str, action: str,
             key_id: str | None, key_version: int | None, detail: str) -> str:
    body = json.dumps([seq, at, actor, action, key_id, key_version, detail], separators=(",", ":"))
    return hashlib.sha256(bytes.fromhex(prev_hash) + body.encode()).hexdigest()


@dataclass(frozen=True)
class VerifyReport:
    rows: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_chain(rows: Iterable[AuditRow], backend: Backend) -> VerifyReport:
    """Check sequence, chain, MACs and the anchor; report every problem found."""
    problems: list[str] = []
    prev = GENESIS
    expected = 1
    by_seq: dict[int, str] = {}
    n = 0
    for r in rows:
        n += 1
        if r.seq != expected:
            problems.append(f"seq {expected}: missing (next row is {r.seq})")
            expected = r.seq
        if r.prev_hash != prev:
            problems.append(f"seq {r.seq}: does not chain to the row before")
        h = row_hash(r.prev_hash, r.seq, r.at, r.actor, r.action, r.key_id, r.key_version, r.detail)
        if h != r.hash:
            problems.append(f"seq {r.seq}: content does not match its hash")
        try:
            mac_ok = _compare.bytes_eq(backend.audit_mac(bytes.fromhex(r.hash)), bytes.fromhex(r.mac))
        except ValueError:
            mac_ok = False
        if not mac_ok:
            problems.append(f"seq {r.seq}: MAC does not verify under this LMK")
        by_seq[r.seq] = r.hash
        prev = r.hash
        expected += 1
    anchor = backend.read_audit_anchor()
    if anchor is not None:
        seq, head = anchor
        if seq not in by_seq:
            problems.append(f"anchored head seq {seq} is missing: newest rows were deleted")
        elif by_seq[seq] != head.hex():
            problems.append(f"seq {seq}: differs from the anchored head")
    return VerifyReport(n, tuple(problems))
