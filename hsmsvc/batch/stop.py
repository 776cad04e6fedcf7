"""How a re-encryption run stops: SIGTERM and SIGINT in the parent, in its workers, and when the parent dies.

The parent owns the stop. A job is in one of three phases:

* setup (keys, plan): a signal stops the run at once; each step so far was one transaction;
* work (chunks in flight): the first SIGTERM or SIGINT asks every worker to stop after its
  current chunk, and starts the grace period; a second one, or the end of the grace
  period, abandons the chunks in flight: each is one transaction, so it rolls back;
* report (summary, audit): a signal is noted and the report completes.

Workers ignore SIGINT (Ctrl-C reaches the whole process group; the parent coordinates),
stop after their chunk on SIGTERM, and on Linux receive SIGTERM when the parent dies
(``PR_SET_PDEATHSIG``), however it died; elsewhere they check between chunks that the
parent is still theirs.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum, unique
from types import FrameType
from typing import Any, Final

__all__ = ["STOP_SIGNALS", "Interrupted", "Phase", "Stopper", "WorkerStop"]

STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)
_PR_SET_PDEATHSIG: Final = 1  # <linux/prctl.h>


@unique
class Phase(Enum):
    SETUP = "setup"
    WORK = "work"
    REPORT = "report"


class Interrupted(BaseException):
    """Abandons what the main thread is doing; a transaction it leaves rolls back.

    A BaseException, like KeyboardInterrupt: SQLAlchemy then discards the connection it
    interrupted rather than return it to the pool.
    """

    def __init__(self, sig: signal.Signals) -> None:
        super().__init__(sig.name)
        self.signal = sig


class Stopper:
    """The parent's SIGTERM and SIGINT handlers, for the length of a ``with`` block (main thread only)."""

    def __init__(self, grace: float, note: Callable[[str], None]) -> None:
        self.grace = grace
        self.note = note
        self.phase = Phase.SETUP
        self.signal: signal.Signals | None = None
        """The first stop signal."""
        self.hurried = False
        """A second signal, or the end of the grace period, abandoned the chunks in flight."""
        self._asked_at: float | None = None
        self._in_process = False
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> Stopper:
        if threading.current_thread() is threading.main_thread():
            for sig in (*STOP_SIGNALS, signal.SIGALRM):
                self._saved[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._saved:
            signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        self._saved.clear()

    @property
    def asked(self) -> bool:
        return self.signal is not None

    @property
    def deadline(self) -> float | None:
        """When the grace period ends (time.monotonic), once a stop was asked for."""
        return None if self._asked_at is None else self._asked_at + self.grace

    @contextmanager
    def work(self, *, in_process: bool) -> Iterator[None]:
        """The work phase; ``in_process``: this process moves the chunks itself (a hurry raises here)."""
        self.phase, self._in_process = Phase.WORK, in_process
        try:
            if self.asked and in_process:
                self._start_grace()
            yield
        finally:
            # The phase first: a grace alarm that fires after it is ignored.
            self.phase, self._in_process = Phase.REPORT, False
            if self._saved:
                signal.setitimer(signal.ITIMER_REAL, 0)

    def hurry(self, why: str) -> None:
        """Abandon the chunks in flight (the caller kills its workers; in process, this raises)."""
        if not self.hurried:
            self.hurried = True
            self._say(f"{why}: abandoning the chunks in flight (each rolls back)")
        if self._in_process:
            assert self.signal is not None
            raise Interrupted(self.signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGALRM:  # the grace period of a run in this process ran out
            if self.phase is Phase.WORK and not self.hurried:
                self.hurry(f"the {self.grace:g} s grace period is over")
            return
        sig = signal.Signals(signum)
        if self.phase is Phase.SETUP:
            self.signal = sig
            raise Interrupted(sig)
        if self.signal is None:
            self.signal, self._asked_at = sig, time.monotonic()
            if self.phase is Phase.WORK:
                self._say(f"{sig.name}: stopping after the chunks in flight (at most {self.grace:g} s); "
                          f"{sig.name} again abandons them")
                if self._in_process:
                    self._start_grace()
            return
        if self.phase is Phase.WORK:
            self.hurry(f"{sig.name} again")

    def _start_grace(self) -> None:
        if self._saved:
            signal.setitimer(signal.ITIMER_REAL, max(self.grace, 0.001))

    def _say(self, text: str) -> None:
        try:
            self.note(f"hsmsvc: {text}")
        except Exception:  # a note is a nicety; the stop goes on without it
            pass


class WorkerStop:
    """A forked worker's side: SIGINT ignored, SIGTERM asks for a stop, the parent's death too."""

    def __init__(self, parent: int) -> None:
        self._parent = parent
        self._asked = False

    def install(self) -> None:
        """Call first thing in the child; the parent blocked the stop signals around the fork."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        _die_with_parent(signal.SIGTERM)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

    def __call__(self) -> bool:
        """Whether to stop before the next chunk: asked to, or the parent is gone (we were re-parented)."""
        return self._asked or os.getppid() != self._parent

    def _on_term(self, _signum: int, _frame: FrameType | None) -> None:
        self._asked = True


def _die_with_parent(sig: signal.Signals) -> None:
    """Linux: have the kernel send ``sig`` when the parent dies, even by SIGKILL."""
    if not sys.platform.startswith("linux"):
        return  # WorkerStop.__call__ compares getppid() between chunks
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        pass
