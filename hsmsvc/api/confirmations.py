"""The counters of VerifyPin matches in flight in this process, read together in one round trip.

A matched PIN is released only once its counters are read in their queue
(:mod:`hsmsvc.service.attempts`): without that read a right PIN would be answered
ahead of the wrong guesses in flight beside it. The read is one store round trip,
on the transaction executor. Matches evaluated on the event loop while a read is
running wait for the next, which reads the counters of all of them at once: the
same read a VerifyPinBatch makes for its items (``verify_pin_batch``), in the same
queue, so each match is confirmed after every settlement of its counters queued
before its read, exactly as if it had read alone. What grouping saves is the
thread hop and the round trip per call: under load one read serves many calls
(issue 34, ``docs/performance.md``).

A read that fails fails every call that waited on it, each with the read's error
(UNAVAILABLE, RESOURCE_EXHAUSTED); nothing is released.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final

from hsmsvc.api.runner import Lane, Runner

__all__ = ["Confirmations", "Later", "MAX_GROUP"]

MAX_GROUP: Final = 256
"""Matches one read takes at most (512 counters); the rest wait for the next."""

_Read = Callable[[list[str]], dict[str, int]]


class Later:
    """A use case's answer still to be awaited on the event loop, which the api's wrappers do."""

    __slots__ = ("answer",)

    def __init__(self, answer: Awaitable[object]) -> None:
        self.answer = answer


class Confirmations:
    """Reads of counters in their queue, one at a time, each for every match waiting when it starts."""

    def __init__(self, runner: Runner, read: _Read) -> None:
        self._runner = runner
        self._read = read
        self._waiting: list[tuple[list[str], asyncio.Future[dict[str, int]]]] = []
        self._reader: asyncio.Task[None] | None = None

    def request(self, subjects: list[str]) -> asyncio.Future[dict[str, int]]:
        """The counters of ``subjects`` (and perhaps others'), to be read in their queue after
        this call: registered now, so a read that starts before the caller awaits takes it."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[dict[str, int]] = loop.create_future()
        self._waiting.append((subjects, done))
        if self._reader is None:
            self._reader = loop.create_task(self._drain())
        return done

    async def _drain(self) -> None:
        try:
            while self._waiting:
                group, self._waiting = self._waiting[:MAX_GROUP], self._waiting[MAX_GROUP:]
                subjects = sorted({x for want, _ in group for x in want})
                try:
                    counts = await self._runner.offload(Lane.TRANSACTION, self._read, subjects)
                except asyncio.CancelledError:
                    for _, done in group:
                        done.cancel()
                    raise
                except Exception as e:
                    for _, done in group:
                        if not done.done():
                            done.set_exception(e)
                    continue
                for _, done in group:
                    if not done.done():
                        done.set_result(counts)
        except asyncio.CancelledError:
            for _, done in self._waiting:
                done.cancel()
            self._waiting = []
            raise
        finally:
            self._reader = None
