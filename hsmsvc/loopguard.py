"""Which code may wait: the event loop's guard.

The api layer runs the hot path's short use cases (a PIN translation or a MAC
on an in-process backend, keys cached) on the event loop itself, because a hop
to a thread and its contention for the GIL cost more than such a call may lose
(``docs/performance.md``). Everything that may wait on
I/O (a database connection, a peer, a backend in another process or device)
calls :func:`may_block` first. Under :func:`run_inline` that raises
:class:`WouldBlock` before the I/O starts, and the api layer runs the whole call
again on its bounded executor. So a use case must change nothing that a second
run would change again before its first :func:`may_block`; the store and the
use meter are written to that rule (``docs/architecture.md``, "Where calls run").
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Final, TypeVar

__all__ = ["WouldBlock", "may_block", "run_inline"]

R = TypeVar("R")

_STATE: Final = threading.local()


class WouldBlock(BaseException):
    """Raised on the event loop where code would wait; a BaseException, so no
    ``except Exception`` in a use case turns it into an answer."""


def may_block() -> None:
    """Call before anything that may wait on I/O; raises :class:`WouldBlock` on the loop."""
    if getattr(_STATE, "inline", False):
        raise WouldBlock


def run_inline(fn: Callable[..., R], *args: object) -> R:
    """``fn(*args)`` with :func:`may_block` raising; :class:`WouldBlock` propagates."""
    state = _STATE
    state.inline = True
    try:
        return fn(*args)
    finally:
        state.inline = False
