"""The PIN-attempt counters' repository: failures per subject (card, caller) within a window.

What a settlement decides is :mod:`hsmsvc.keys.attempts`'s; here are its rows, and the
locks that put every settlement and confirmation of one subject in one queue:

* a settlement that may count or clear holds each subject's lock exclusively for its
  transaction;
* a match is confirmed (:meth:`AttemptCounters.confirm`) by reading its counters under
  the same locks, writing nothing. It waits its turn behind settlements already queued,
  as a wrong guess would: a read that did not queue would answer a right PIN ahead of the
  wrong guesses in flight beside it, and a guess refused at its settlement would then be
  known to be wrong.

On PostgreSQL the locks are transaction advisory locks, one per subject, held whether or
not its row exists (``FOR UPDATE`` locks nothing for a card without failures), taken in
key order so two transactions never deadlock; a confirmation takes them shared (a shared
request still waits behind an exclusive one queued before it) in one round trip, through
the function of migration 0006. So the queue is exact across every server sharing the
database.

On SQLite the queue is this process's (a thread lock); across processes, settlements are
ordered by the write lock SQLite takes at ``BEGIN IMMEDIATE``, and a confirmation against
another process's settlements by their commits. A cross-process queue was measured (an
exclusive ``flock`` beside the database): held across Python code while threads wait for
the GIL, it cost VerifyPin a third of its rate (``docs/performance.md``). So with several
workers on SQLite a right PIN may be confirmed ahead of another worker's guesses still
settling: at most (workers - 1) x transaction threads of them per window, which
``docs/architecture.md`` states; with one worker, and on PostgreSQL, none.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import delete, select, text, update
from sqlalchemy.engine import Connection

from hsmsvc.keys import attempts as _attempts
from hsmsvc.keys.model import AuditEvent
from hsmsvc.keys.schema import pin_attempts as attempts_t
from hsmsvc.keys.store.chain import AuditChain
from hsmsvc.keys.store.database import Database, now, utc
from hsmsvc.loopguard import may_block

__all__ = ["AttemptCounters"]

# unnest yields the array's elements in order, and each lock is taken as its element is read.
_LOCKS: Final = text("SELECT count(pg_advisory_xact_lock(k)) FROM unnest(CAST(:keys AS bigint[])) AS k")
# The confirmation's own SQL, run on the driver's connection (keys/store/rawread.py).
_CONFIRM_PG: Final = ("SELECT subject, failures, window_start "
                      "FROM hsmsvc_confirm_attempts(%s::bigint[], %s::text[])")
_SELECT_PG: Final = "SELECT subject, failures, window_start FROM pin_attempts WHERE subject = ANY(%s)"
_SELECT_SQLITE: Final = {n: "SELECT subject, failures, window_start FROM pin_attempts WHERE subject IN ("
                         + ", ".join("?" * n) + ")" for n in (1, 2)}


def _sqlite_select(n: int) -> str:
    """The counters of ``n`` subjects (fixed text for the usual one or two)."""
    return _SELECT_SQLITE.get(n) or ("SELECT subject, failures, window_start FROM pin_attempts WHERE subject IN ("
                                     + ", ".join("?" * n) + ")")


def _lock_key(subject: str) -> int:
    """A subject's advisory lock key (a collision only orders two subjects' settlements together)."""
    return int.from_bytes(hashlib.sha256(b"hsmsvc.pin_attempts:" + subject.encode()).digest()[:8], "big",
                          signed=True)


def _lock_keys(subjects: Iterable[str]) -> list[int]:
    return sorted({_lock_key(x) for x in subjects})


class _ProcessQueue:
    """SQLite's queue within this process: a lock that, held by another thread, is waited for
    only where waiting is allowed (:func:`hsmsvc.loopguard.may_block`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        if not self._lock.acquire(blocking=False):
            may_block()
            self._lock.acquire()

    def __exit__(self, *_: object) -> None:
        self._lock.release()


class AttemptCounters:
    """Counters in ``db``; each count is audited through ``chain`` in its transaction."""

    def __init__(self, db: Database, chain: AuditChain) -> None:
        self._db = db
        self._chain = chain
        # PostgreSQL queues by advisory locks; SQLite, within this process, by this lock.
        self._queue: AbstractContextManager[Any] = _ProcessQueue() if db.sqlite else nullcontext()

    def failures(self, subjects: list[str], window: timedelta) -> dict[str, int]:
        """Failed attempts per subject within the current window (no queue: a pre-read, never a release)."""
        cutoff = now() - window
        if self._db.sqlite:
            return _live(self._db.raw.rows(_sqlite_select(len(subjects)), tuple(subjects), "attempts"), cutoff)
        return _live(self._db.raw.rows(_SELECT_PG, (subjects,), "attempts"), cutoff)

    def confirm(self, subjects: list[str], window: timedelta) -> dict[str, int]:
        """:meth:`failures`, read in the subjects' queue (module docstring): after every
        settlement of them queued before it, before every one queued after."""
        cutoff = now() - window
        if not self._db.sqlite:
            return _live(self._db.raw.rows(_CONFIRM_PG, (_lock_keys(subjects), subjects), "attempts"), cutoff)
        with self._queue:
            return _live(self._db.raw.rows(_sqlite_select(len(subjects)), tuple(subjects), "attempts"), cutoff)

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

        with self._queue:
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

        with self._queue:
            return self._chain.write(change, lambda out: audit(out) if out.failures else None)

    def clear(self, subject: str) -> None:
        """A correct PIN resets its card's counter, as a card's PIN try counter does."""
        with self._queue:
            self._db.transaction(lambda conn: conn.execute(delete(attempts_t).where(attempts_t.c.subject == subject)))


def _live(rows: Sequence[Sequence[Any]], cutoff: datetime) -> dict[str, int]:
    """Each (subject, failures, window start) row's failures, for the rows whose window began after ``cutoff``."""
    return {r[0]: int(r[1]) for r in rows if (start := _start(r[2])) is not None and start > cutoff}


def _start(value: datetime | str | None) -> datetime | None:
    # The driver's own SQLite connection gives the stored text (SQLAlchemy's DateTime format).
    return utc(datetime.fromisoformat(value) if isinstance(value, str) else value)


def _held_counters(conn: Connection, subjects: Iterable[str]) -> dict[str, _attempts.Counter]:
    subjects = sorted(set(subjects))
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCKS, {"keys": _lock_keys(subjects)})
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
