"""Settling PIN-check outcomes against their attempt counters: the rule, without the I/O.

A check is evaluated first and settled after, in one store transaction that
holds its counters' rows (:meth:`hsmsvc.keys.store.KeyStore.settle_attempts`).
Only a settled outcome is released to the caller, so however many checks of one
card run at once, in however many processes, no more wrong ones are answered
than the limit allows. The rule, for each outcome in order:

* an outcome with a counter at its limit is refused, match or not, and counts
  nothing: as a check refused before it was evaluated, and alike for a refused
  match and a refused guess, so neither the answer, the work done nor the
  counters tell them apart;
* a match is released and clears the counters it names in ``clears`` (a
  card's, as a card's PIN try counter is reset);
* a mismatch is released and counted against every counter it names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

__all__ = ["Attempt", "Counter", "Settlement", "settle"]


@dataclass(frozen=True)
class Attempt:
    """One evaluated check: the counters it is kept under and whether the PIN matched."""

    subjects: tuple[str, ...]
    matched: bool
    clears: tuple[str, ...] = ()
    """Counters a released match resets (a card's; never a principal's)."""


@dataclass(frozen=True)
class Counter:
    """A counter's value within its window; ``start`` is ``None`` for a counter at zero."""

    failures: int = 0
    start: datetime | None = None


@dataclass(frozen=True)
class Settlement:
    released: tuple[bool, ...]
    """For each outcome, whether it may be answered."""
    counters: Mapping[str, Counter]
    """Every counter the outcomes changed, with its new value (zero: delete the row)."""
    failures: int
    """How many mismatches were counted."""
    refused: int = field(default=0)
    """How many outcomes were refused at a limit (and not counted)."""
    limited_by: tuple[str | None, ...] = ()
    """For each outcome, the counter that refused it (the first of its subjects at its limit)."""


def settle(
    attempts: Sequence[Attempt],
    counters: Mapping[str, Counter],
    *,
    limits: Mapping[str, int],
    now: datetime,
    window: timedelta,
) -> Settlement:
    """Apply ``attempts`` in order to ``counters`` (as stored, windows not yet aged) under ``limits``."""
    cutoff = now - window
    live = {s: c for s, c in counters.items() if c.start is not None and c.start > cutoff and c.failures > 0}
    changed: dict[str, Counter] = {s: Counter() for s, c in counters.items() if s not in live and c.failures}
    released: list[bool] = []
    failures = refused = 0
    limited_by: list[str | None] = []
    for a in attempts:
        at = next((s for s in a.subjects if live.get(s, Counter()).failures >= limits[s]), None)
        limited_by.append(at)
        if at is not None:
            released.append(False)
            refused += 1
            continue
        released.append(True)
        if a.matched:
            for s in a.clears:
                if s in live:
                    del live[s]
                    changed[s] = Counter()
            continue
        failures += 1
        for s in a.subjects:
            c = live.get(s)
            live[s] = changed[s] = Counter(1, now) if c is None else Counter(c.failures + 1, c.start)
    return Settlement(tuple(released), changed, failures, refused, tuple(limited_by))
