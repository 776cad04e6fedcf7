"""How a running server stands, for ``hsmsvc status --server`` (StatusService): an auditor's read.

Names, counts and check values only. Key counts cover the keys the caller's
patterns cover: a principal limited to some zones learns nothing of the others'
keys (issue 27), so counts are grouped in the database only for a caller whose
patterns cover every key.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from hsmsvc import __version__
from hsmsvc.errors import HsmsvcError
from hsmsvc.hsm.commands import Random
from hsmsvc.keys.audit import AuditRow
from hsmsvc.keys.national import NATIONAL_ALGORITHMS
from hsmsvc.keys.store.reader import SchemaRevision
from hsmsvc.service.context import Caller, Services
from hsmsvc.types import KeyState, KeyType

__all__ = ["BackendMember", "ServerStatus", "server_status"]

_PAGE: Final = 1000


@dataclass(frozen=True)
class BackendMember:
    index: int
    kind: str
    healthy: bool
    restarts: int = 0


@dataclass(frozen=True)
class ServerStatus:
    version: str
    backend_kind: str
    lmk_kcv: str
    members: tuple[BackendMember, ...]
    store_kind: str
    store_url: str
    revision: SchemaRevision
    audit_head: AuditRow | None
    key_counts: dict[tuple[KeyType, KeyState], int]
    started_at: datetime
    lmk_algorithm: str = ""
    national_only: bool = False
    non_national_keys: int = 0
    """Key versions not destroyed whose algorithm is not SM4, SM2 or HMAC-SM3 (keys/national.py)."""


def _members(s: Services, kinds: tuple[str, ...]) -> tuple[BackendMember, ...]:
    """Per member, whether it answers: a pool's own view (never waits for a worker), else one probe."""
    stats = getattr(s.backend, "stats", None)
    if stats is not None:
        return tuple(BackendMember(m.index, kinds[m.index] if m.index < len(kinds) else "", bool(m.healthy),
                                   int(m.restarts)) for m in stats())
    try:
        s.backend.execute(Random(length=8))
        healthy = True
    except HsmsvcError:
        healthy = False
    return (BackendMember(0, kinds[0] if kinds else "", healthy),)


def _covers_all(caller: Caller) -> bool:
    patterns = caller.principal.keys
    return "*" in patterns and not any(p.startswith("zone:") for p in patterns)


def _counts(s: Services, caller: Caller) -> tuple[dict[tuple[KeyType, KeyState], int], int]:
    """Key versions by (type, state), and how many not destroyed are of a non-national algorithm."""
    if _covers_all(caller):
        by_algorithm = s.store.reader.algorithm_counts()
        return s.store.reader.key_counts(), sum(n for a, n in by_algorithm.items() if a not in NATIONAL_ALGORITHMS)
    counts: Counter[tuple[KeyType, KeyState]] = Counter()
    foreign = 0
    after: tuple[str, int] | None = None
    while True:
        page = s.store.all_keys(after, _PAGE)
        for k in page:
            if caller.principal.may_use(k):
                counts[(k.cryptogram.spec.key_type, k.state)] += 1
                foreign += k.state is not KeyState.DESTROYED and k.cryptogram.spec.algorithm not in NATIONAL_ALGORITHMS
        if len(page) < _PAGE:
            return dict(counts), foreign
        after = (page[-1].key_id, page[-1].version)


def server_status(s: Services, caller: Caller, *, backend_kind: str, member_kinds: tuple[str, ...],
                  started_at: datetime) -> ServerStatus:
    try:
        kcv = s.backend.lmk_kcv().hex().upper()
    except HsmsvcError:
        kcv = ""
    reader = s.store.reader
    counts, foreign = _counts(s, caller)
    return ServerStatus(
        version=__version__, backend_kind=backend_kind, lmk_kcv=kcv, members=_members(s, member_kinds),
        store_kind=reader.kind, store_url=reader.url, revision=reader.revision(), audit_head=reader.audit_head(),
        key_counts=counts, started_at=started_at, lmk_algorithm=s.backend.capabilities.lmk.value,
        national_only=s.mode.national_only, non_national_keys=foreign,
    )
