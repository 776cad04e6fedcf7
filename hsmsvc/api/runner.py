"""Where a call's use case runs: on the event loop, or on a bounded executor.

A use case that may wait (store I/O, a pool member, a PKCS#11 token, a peer, a
batch) runs on an executor thread, so a slow one delays only its own call.
There are two executors, by :class:`Lane`: the transaction path (PIN, MAC and
data calls) and everything else (key management, key sync, ceremonies,
batches), so a key change stuck on a locked table or a stopped peer cannot take
the threads a PIN translation needs. Each is bounded: past ``threads + queue``
calls in a lane, a call is refused at once with RESOURCE_EXHAUSTED rather than
queued without limit.

The hot path's short calls (:attr:`Lane.INLINE`) first run on the loop under
:func:`hsmsvc.loopguard.run_inline` when the backend is in-process: a hop to a
thread, and the thread's contention with the loop for the GIL, would cost more
than the 5 % the hot path may lose (``docs/performance.md``). If one
reaches I/O it runs again on the transaction executor. A method whose inline
runs keep reaching I/O is tried inline less and less often: after ``n``
blocked runs in a row, the next ``2**n - 1`` calls go straight to the
executor, up to 63.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from typing import Final, TypeVar

from hsmsvc.errors import Overloaded
from hsmsvc.loopguard import WouldBlock, run_inline

__all__ = ["InlineState", "Lane", "Runner"]

R = TypeVar("R")

_MAX_SKIP: Final = 63


class Lane(Enum):
    """Where a method's use case runs."""

    INLINE = "inline"
    """On the loop first, when the backend is in-process; else on the transaction executor."""
    TRANSACTION = "transaction"
    """On the transaction executor."""
    OTHER = "other"
    """On the executor for everything else."""


@dataclass
class InlineState:
    """One method's record of its inline runs (kept by its wrapper, read on the loop only)."""

    blocked: int = 0
    """Inline runs in a row that reached I/O."""
    skip: int = 0
    """Calls still to send straight to the executor."""


class _Executor:
    """A thread pool that refuses work past ``threads + queue`` calls."""

    def __init__(self, name: str, threads: int, queue: int) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix=name)
        self._limit = threads + queue
        self._lock = threading.Lock()
        self.busy = 0
        """Calls running on, or waiting for, a thread."""

    async def run(self, fn: Callable[..., R], *args: object) -> R:
        with self._lock:
            if self.busy >= self._limit:
                raise Overloaded("server")
            self.busy += 1
        try:
            future: Future[R] = self._pool.submit(contextvars.copy_context().run, fn, *args)
        except BaseException:
            self._done(None)
            raise
        # Counted down when the thread is done, not when the caller stops waiting:
        # a cancelled call's thread may still be busy.
        future.add_done_callback(self._done)
        return await asyncio.wrap_future(future)

    def _done(self, _: object) -> None:
        with self._lock:
            self.busy -= 1

    def close(self) -> None:
        """Refuse new work and drop what waits; threads still running are left to finish."""
        self._pool.shutdown(wait=False, cancel_futures=True)


@dataclass
class Runner:
    """The executors and the inline policy of one server."""

    threads: int = 8
    """Threads of the other lane."""
    queue: int = 256
    """Calls that may wait for a thread, per lane."""
    inline: bool = True
    """Whether the backend runs in this process (the soft backend): then inline methods try the loop first."""
    transaction_threads: int = 2
    """Threads of the transaction lane."""
    _lanes: dict[Lane, _Executor] = field(init=False)

    def __post_init__(self) -> None:
        tx = _Executor("transaction", self.transaction_threads, self.queue)
        self._lanes = {Lane.INLINE: tx, Lane.TRANSACTION: tx,
                       Lane.OTHER: _Executor("usecase", self.threads, self.queue)}

    def busy(self, lane: Lane) -> int:
        """Calls running on, or waiting for, ``lane``'s executor."""
        return self._lanes[lane].busy

    def first_inline(self, state: InlineState) -> bool:
        """Whether this call of an inline method should try the loop first."""
        if not self.inline:
            return False
        if state.skip:
            state.skip -= 1
            return False
        return True

    def call(self, state: InlineState, fn: Callable[..., R], *args: object) -> R:
        """Run ``fn`` inline; :class:`WouldBlock` propagates after noting it in ``state``."""
        try:
            out = run_inline(fn, *args)
        except WouldBlock:
            state.blocked = min(state.blocked + 1, 6)
            state.skip = min(2 ** state.blocked - 1, _MAX_SKIP)
            raise
        state.blocked = 0
        return out

    async def offload(self, lane: Lane, fn: Callable[..., R], *args: object) -> R:
        """``fn(*args)`` on ``lane``'s executor, in a copy of the caller's context (its request id)."""
        return await self._lanes[lane].run(fn, *args)

    def close(self, timeout: float = 1.0) -> int:
        """Stop both executors; wait up to ``timeout`` for running calls, and return how many
        are still running then (stuck on a dependency past the shutdown's grace)."""
        lanes = (self._lanes[Lane.TRANSACTION], self._lanes[Lane.OTHER])
        for lane in lanes:
            lane.close()
        deadline = time.monotonic() + timeout
        while (busy := sum(lane.busy for lane in lanes)) and time.monotonic() < deadline:
            time.sleep(0.02)
        return busy
