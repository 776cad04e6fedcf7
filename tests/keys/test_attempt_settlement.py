"""Attempt counters settle exactly: in order, in one transaction, across processes (issue 27).

The rule (hsmsvc.keys.attempts) is checked against a card's PIN try counter written
here from its description, outcome by outcome; the store's settlement is then raced by
processes and threads on SQLite and PostgreSQL, and must release exactly the limit.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
from datetime import datetime, timedelta, timezone
from multiprocessing.connection import Connection
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from hsmsvc.keys.attempts import Attempt, Counter, settle
from hsmsvc.keys.model import AuditEvent
from hsmsvc.keys.store import KeyStore

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)
LIMITS = {"principal:p": 7, "pan:a": 3, "pan:b": 3}

outcomes = st.lists(st.tuples(st.sampled_from(["pan:a", "pan:b"]), st.booleans()), max_size=40)


def _attempt(card: str, matched: bool) -> Attempt:
    return Attempt(("principal:p", card), matched, (card,))


def _model(items: list[tuple[str, bool]]) -> tuple[list[bool], dict[str, int]]:
    """A try counter as a card keeps one: refuse at the limit, count a wrong PIN, clear on a right one."""
    tries = {"principal:p": 0, "pan:a": 0, "pan:b": 0}
    answered = []
    for card, matched in items:
        if tries["principal:p"] >= 7 or tries[card] >= 3:
            answered.append(False)
        elif matched:
            answered.append(True)
            tries[card] = 0
        else:
            answered.append(True)
            tries["principal:p"] += 1
            tries[card] += 1
    return answered, tries


@given(outcomes)
def test_one_settlement_answers_as_the_counter_would_item_by_item(items: list[tuple[str, bool]]) -> None:
    out = settle([_attempt(c, m) for c, m in items], {}, limits=LIMITS, now=NOW, window=DAY)
    answered, tries = _model(items)
    assert list(out.released) == answered
    assert {s: c.failures for s, c in out.counters.items() if c.failures} == {s: n for s, n in tries.items() if n}
    assert out.failures == sum(1 for (_, m), ok in zip(items, answered) if ok and not m)
    assert out.refused == answered.count(False)


@given(outcomes, outcomes)
def test_settling_in_two_transactions_is_settling_in_one(first: list[tuple[str, bool]],
                                                       then: list[tuple[str, bool]]) -> None:
    whole = settle([_attempt(c, m) for c, m in first + then], {}, limits=LIMITS, now=NOW, window=DAY)
    a = settle([_attempt(c, m) for c, m in first], {}, limits=LIMITS, now=NOW, window=DAY)
    b = settle([_attempt(c, m) for c, m in then], dict(a.counters), limits=LIMITS, now=NOW, window=DAY)
    assert whole.released == a.released + b.released
    merged = {**a.counters, **b.counters}
    assert {s: c.failures for s, c in merged.items() if c.failures} == \
        {s: c.failures for s, c in whole.counters.items() if c.failures}


def test_a_counter_past_its_window_starts_again() -> None:
    old = {"pan:a": Counter(3, NOW - DAY - timedelta(seconds=1)), "principal:p": Counter(2, NOW - timedelta(hours=1))}
    out = settle([_attempt("pan:a", False)], old, limits=LIMITS, now=NOW, window=DAY)
    assert out.released == (True,)
    assert out.counters["pan:a"] == Counter(1, NOW)  # a new window from this failure
    assert out.counters["principal:p"] == Counter(3, NOW - timedelta(hours=1))  # the same window


def test_a_refusal_names_the_counter_at_its_limit_and_counts_nothing() -> None:
    full = {"pan:a": Counter(3, NOW), "principal:p": Counter(1, NOW)}
    out = settle([_attempt("pan:a", True), _attempt("pan:a", False), _attempt("pan:b", False)], full,
                 limits=LIMITS, now=NOW, window=DAY)
    assert out.released == (False, False, True)
    assert out.limited_by == ("pan:a", "pan:a", None)
    assert "pan:a" not in out.counters and out.counters["principal:p"].failures == 2


# -- the store's settlement, raced -------------------------------------------------

THREADS, PROCESSES = 8, 3


def _guess(url: str, anchor: str, n: int) -> list[bool]:
    """``n`` threads, each settling one wrong PIN against card ``pan:race`` (limit 3)."""
    from hsmsvc.hsm.soft.backend import SoftBackend
    from tests.hsm.components_env import LMK

    store = KeyStore(url, SoftBackend(LMK, anchor_path=Path(anchor)))
    got: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(n)

    def one() -> None:
        barrier.wait()
        out = store.settle_attempts([Attempt(("principal:race", "pan:race"), False, ("pan:race",))],
                                    limits={"principal:race": 1000, "pan:race": 3}, window=DAY,
                                    audit=lambda s: AuditEvent("race", "pin.verify.failed"))
        with lock:
            got.append(out.released[0])

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    return got


def _child(url: str, anchor: str, conn: Connection) -> None:
    conn.recv()  # go
    conn.send(_guess(url, anchor, THREADS))


def test_concurrent_wrong_guesses_from_several_processes_release_exactly_the_limit(
    store: KeyStore, store_url: str, tmp_path: Path,
) -> None:
    ctx = mp.get_context("spawn")
    pipes, procs = [], []
    for i in range(PROCESSES):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_child, args=(store_url, str(tmp_path / f"{i}.anchor"), child), daemon=True)
        p.start()
        pipes.append(parent)
        procs.append(p)
    try:
        for parent in pipes:
            parent.send("go")
        released = sum(sum(parent.recv()) for parent in pipes if parent.poll(120))
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
    assert released == 3  # of 24 guesses racing in 3 processes
    assert store.failures(["pan:race", "principal:race"], DAY) == {"pan:race": 3, "principal:race": 3}
    rows = [r for r in store.audit_rows() if r.actor == "race"]
    assert len(rows) == 3  # one audit row per counted failure, none for a refusal
