"""The PIN-attempt counters' repository: failures per subject (card, caller) within a window.

What a settlement decides is :mod:`hsmsvc.keys.attempts`'s; here are its rows, and the
locks that order every settlement of one subject:

* a settlement that may count or clear takes each subject's lock exclusively;
* a check that matched on counters read at zero (:meth:`AttemptCounters.confirm`) takes
  them shared, so matches do not wait for one another, only for a settlement in flight,
  and a settlement waits for them.

On PostgreSQL the locks are transaction advisory locks, one per subject, held whether
or not its row exists (``FOR UPDATE`` alone locks nothing for a card without failures,
so a match could be answered ahead of that card's first failure still settling). They
are taken in key order in one statement, so two transactions never deadlock. On SQLite
every such transaction holds the database's write lock from ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import Any, Final

from sqlalchemy import bindparam, delete, select, text, update
from sqlalchemy.engine import Connection, Row

from hsmsvc.keys import attempts as _attempts
from hsmsvc.keys.model import AuditEvent
from hsmsvc.keys.schema import pin_attempts as attempts_t
from hsmsvc.keys.store.chain import AuditChain
from hsmsvc.keys.store.database import Database, now, utc

__all__ = ["AttemptCounters"]

# The attempt read is on every PIN verification, and building its statement cost more than
# running it, so the statements are built once. It names one or two subjects (the card and
# the caller), so those two are fixed: an expanding IN is rewritten at every execution.
_FAILURES: Final = {
    1: select(attempts_t).where(attempts_t.c.subject == bindparam("s0")),
    2: select(attempts_t).where(attempts_t.c.subject.in_([bindparam("s0"), bindparam("s1")])),
}
_FAILURES_ANY: Final = select(attempts_t).where(attempts_t.c.subject.in_(bindparam("subjects", expanding=True)))
# unnest yields the array's elements in order, and each lock is taken as its element is read.
_LOCKS: Final = {
    False: text("SELECT count(pg_advisory_xact_lock(k)) FROM unnest(CAST(:keys AS bigint[])) AS k"),
    True: text("SELECT count(pg_advisory_xact_lock_shared(k)) FROM unnest(CAST(:keys AS bigint[])) AS k"),
}


def _lock_key(subject: str) -> int:
    """A subject's advisory lock key (a collision only orders two subjects' settlements together)."""
    return int.from_bytes(hashlib.sha256(b"hsmsvc.pin_attempts:" + subject.encode()).digest()[:8], "big",
                          signed=True)


def _lock(conn: Connection, subjects: Iterable[str], *, shared: bool) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCKS[shared], {"keys": sorted({_lock_key(x) for x in subjects})})


class AttemptCounters:
    """Counters in ``db``; each count is audited through ``chain`` in its transaction."""

    def __init__(self, db: Database, chain: AuditChain) -> None:
        self._db = db
        self._chain = chain

    def failures(self, subjects: list[str], window: timedelta) -> dict[str, int]:
        """Failed attempts per subject within the current window."""
        cutoff = now() - window
        fixed = _FAILURES.get(len(subjects))

        def work(conn: Connection) -> Sequence[Row[Any]]:
            if fixed is not None:
                return conn.execute(fixed, {f"s{i}": s for i, s in enumerate(subjects)}).all()
            return conn.execute(_FAILURES_ANY, {"subjects": subjects}).all()

        rows = self._db.read_single(work, "attempts")
        return {r.subject: int(r.failures) for r in rows
                if (start := utc(r.window_start)) is not None and start > cutoff}

    def confirm(self, subjects: list[str], window: timedelta) -> dict[str, int]:
        """:meth:`failures`, read under each subject's shared lock: ordered after every
        settlement of them already in flight, and before every one not yet begun."""
        cutoff = now() - window

        def work(conn: Connection) -> Sequence[Row[Any]]:
            _lock(conn, subjects, shared=True)
            return conn.execute(_FAILURES_ANY, {"subjects": subjects}).all()

        rows = self._db.transaction(work)
        return {r.subject: int(r.failures) for r in rows
                if (start := utc(r.window_start)) is not None and start > cutoff}

    def record_failure(self, subjects: list[str], window: timedelta, ev: AuditEvent) -> None:
        """Count one failure against each subject, audited in the same transaction."""
        self.record_failures(dict.fromkeys(subjects, 1), window, ev)

    def record_failures(self, counts: dict[str, int], window: timedelta, ev: AuditEvent) -> None:
        """Add ``counts[subject]`` failures to each subject in one transaction with its audit row."""
        at = now()

        def change(conn: Connection) -> None:
            held = _held_counters(conn, counts)
            for subject, n in counts.items():
                c = held.get(subject)
                live = c is not None and c.start is not None and c.start > at - window
                new = _attempts.Counter(c.failures + n, c.start) if live and c else _attempts.Counter(n, at)
                _put_counter(conn, subject, new, stored=c is not None)

        self._chain.write(change, ev)

    def settle(
        self,
        attempts: list[_attempts.Attempt],
        *,
        limits: dict[str, int],
        window: timedelta,
        audit: Callable[[_attempts.Settlement], AuditEvent],
    ) -> _attempts.Settlement:
        """Settle evaluated PIN checks against their counters in one transaction (:mod:`hsmsvc.keys.attempts`).

        Each subject's lock is taken exclusively (module docstring) and its row read FOR UPDATE,
        so two settlements of one counter never both see it below its limit. The audit
        row ``audit(settlement)`` is written in the same transaction when anything was counted.
        """
        def change(conn: Connection) -> _attempts.Settlement:
            held = _held_counters(conn, {s for a in attempts for s in a.subjects})
            out = _attempts.settle(attempts, held, limits=limits, now=now(), window=window)
            for subject, c in out.counters.items():
                _put_counter(conn, subject, c, stored=subject in held)
            return out

        return self._chain.write(change, lambda out: audit(out) if out.failures else None)

    def clear(self, subject: str) -> None:
        """A correct PIN resets its card's counter, as a card's PIN try counter does."""
        self._db.transaction(lambda conn: conn.execute(delete(attempts_t).where(attempts_t.c.subject == subject)))


def _held_counters(conn: Connection, subjects: Iterable[str]) -> dict[str, _attempts.Counter]:
    subjects = sorted(set(subjects))
    _lock(conn, subjects, shared=False)
    # Sorted, so two transactions lock shared rows in one order and never deadlock.
    rows = conn.execute(select(attempts_t).where(attempts_t.c.subject.in_(sorted(subjects)))
                        .order_by(attempts_t.c.subject).with_for_update()).all()
    return {r.subject: _attempts.Counter(int(r.failures), utc(r.window_start)) for r in rows}


def _put_counter(conn: Connection, subject: str, c: _attempts.Counter, *, stored: bool) -> None:
    where = attempts_t.c.subject == subject
    if not c.failures:
        if stored:
            conn.execute(delete(attempts_t).where(where))
    elif stored:
        conn.execute(update(attempts_t).where(where).values(failures=c.failures, window_start=c.start))
    else:
        conn.execute(attempts_t.insert().values(subject=subject, failures=c.failures, window_start=c.start))
