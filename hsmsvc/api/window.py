"""A stream's messages answered in order, several of them in flight at once.

A bidi stream's handler answered one message at a time: the next was not read
until the last was answered. For a message whose answer waits on a store read
(a VerifyPin match waits for its counters, ``api/confirmations.py``) that made a
stream as slow as one round trip per message, however many messages its client
had sent. Here a reader takes messages as they come, starts each (evaluated on
the loop, its confirmation requested), and hands it on; the writer answers them
in the order they came, so up to ``window`` messages of one stream wait on one
read together. A client that waits for each answer before sending the next is
answered as before: the reader never waits for a message to be answered.

Each message still counts alone: its attempts are settled as a unary call's are,
so a stream of guesses at one card is refused at the limit exactly as the same
guesses sent as concurrent calls would be.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, Final

__all__ = ["WINDOW", "in_window"]

WINDOW: Final = 64
"""Messages of one stream in flight at most (issue 34: a VerifyPin stream's window)."""


class _Failed:
    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


async def in_window(
    requests: AsyncIterator[Any],
    window: int,
    *,
    start: Callable[[Any], object],
    answer: Callable[[Any, object], Any],
    failed: Callable[[Any, Exception], Any],
) -> AsyncGenerator[Any, None]:
    """Each message of ``requests`` answered in order: ``start(q)`` gives its outcome or an awaitable
    of it (raising for an error), ``answer(q, outcome)`` and ``failed(q, error)`` its answer."""
    room = asyncio.Semaphore(window)
    ready: asyncio.Queue[tuple[Any, object] | None] = asyncio.Queue()

    async def read() -> None:
        try:
            async for q in requests:
                await room.acquire()
                try:
                    item = start(q)
                except Exception as e:
                    item = _Failed(e)
                ready.put_nowait((q, item))
        finally:
            ready.put_nowait(None)

    reader = asyncio.get_running_loop().create_task(read())
    try:
        while (entry := await ready.get()) is not None:
            q, item = entry
            if isinstance(item, _Failed):
                out = failed(q, item.error)
            elif inspect.isawaitable(item):
                try:
                    out = answer(q, await item)
                except Exception as e:
                    out = failed(q, e)
            else:
                out = answer(q, item)
            room.release()
            yield out
        await reader  # its error (an undecodable message) ends the stream, as it did unwindowed
    finally:
        if not reader.done():
            reader.cancel()
        _abandon(ready)


def _abandon(ready: asyncio.Queue[tuple[Any, object] | None]) -> None:
    """Started messages the stream will not answer: their work is let go without a warning."""
    while not ready.empty():
        entry = ready.get_nowait()
        if entry is None:
            continue
        item = entry[1]
        if inspect.iscoroutine(item):
            item.close()
        elif isinstance(item, asyncio.Future) and not item.done():
            item.cancel()
