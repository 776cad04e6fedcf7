"""Where a ceremony is recorded: its journal and, when a store is named, the store's audit chain.

A :class:`Session` is one ceremony: it has an id (which names its mailers and
staging directories), journals its beginning, and ends either completed (the
outputs published, then the journal and audit written) or abandoned, with the
reason, whatever stopped it: an error, Ctrl-C or a closed terminal. All of a
ceremony's lines carry its id, so they read together.

A closed terminal is a SIGHUP, and a ``kill`` a SIGTERM, whose default action ends
the process at once: no ``finally``, so staged mailers (clear components) stay on
disk and nothing is journaled. :func:`stop_on_signals` turns both into
:class:`Stopped`, which unwinds like Ctrl-C. Only SIGKILL is left.
"""

from __future__ import annotations

import secrets
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType

from hsmsvc.ceremony import journal
from hsmsvc.ceremony.staging import Staging
from hsmsvc.errors import HsmsvcError
from hsmsvc.hsm.backend import Backend
from hsmsvc.keys.model import AuditEvent
from hsmsvc.keys.store import KeyStore

__all__ = ["JOURNALED", "Record", "Session", "Stopped", "reason", "stop_on_signals"]

JOURNALED = "hsmsvc: journaled as abandoned"
"""The note a session adds to the exception that ended it."""


class Stopped(KeyboardInterrupt):
    """A ceremony stopped by a signal: its terminal closed (SIGHUP) or it was told to end (SIGTERM)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _stop(signum: int, frame: object) -> None:
    raise Stopped(signum)


def stop_on_signals() -> None:
    """From here on, SIGHUP and SIGTERM unwind the ceremony (discard, journal) as Ctrl-C does."""
    for sig in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, _stop)


def reason(e: BaseException) -> str:
    """One line saying why a ceremony stopped; our errors carry no secret, others only their type."""
    if isinstance(e, Stopped):
        return f"stopped by {signal.Signals(e.signum).name}" + (
            " (terminal closed)" if e.signum == signal.SIGHUP else "")
    if isinstance(e, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    if isinstance(e, HsmsvcError):
        return str(e).splitlines()[0] if str(e) else type(e).__name__
    return type(e).__name__


@dataclass(frozen=True)
class Record:
    """The officer running ceremonies, their journal, and the store to audit in (if any)."""

    officer: str
    journal: Path | None = None
    store_url: str | None = None

    def line(self, ceremony: str, action: str, **detail: str) -> str | None:
        """Journal one line; returns the journal's new head ("line N, hash H") to write on paper."""
        if self.journal is None:
            return None
        written = journal.append(self.journal, {"ceremony": ceremony, "officer": self.officer, "action": action,
                                                **detail})
        return journal.head(written)

    def audit(self, action: str, backend: Backend, **detail: str) -> None:
        """An audit row in the store, MACed under ``backend``'s LMK (nothing without a store)."""
        if self.store_url is None:
            return
        store = KeyStore(self.store_url, backend)
        try:
            store.migrate()
            store.audit(AuditEvent(self.officer, action, None, None, tuple(sorted(detail.items()))))
        finally:
            store.close()

    def session(self, kind: str) -> Session:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        return Session(self, kind, f"{kind}-{stamp}-{secrets.token_hex(2)}")


@dataclass
class Session:
    """One ceremony: ``with record.session("lmk-create") as s: ...; s.complete(...)``."""

    record: Record
    kind: str
    id: str
    staging: Staging = field(init=False)
    done: bool = False
    head: str | None = None
    """The journal's head after the ceremony's completion line: for the paper ceremony log."""

    def __post_init__(self) -> None:
        self.staging = Staging(self.id)

    def __enter__(self) -> Session:
        self.record.line(self.id, f"{self.kind}.begin")
        return self

    def complete(self, action: str, detail: dict[str, str], *, then: Callable[[], None] = lambda: None,
                 undo: Callable[[], None] = lambda: None,
                 audit: Callable[[str, dict[str, str]], None] | None = None) -> None:
        """Publish the staged outputs, run ``then`` (a token's LMK), journal and ``audit`` the step;
        a failure in any of these takes the published outputs back, and ``then``'s with ``undo``."""
        self.staging.publish()
        self._swept()
        done_then = False
        try:
            then()
            done_then = True
            self.head = self.record.line(self.id, action, **detail)
            if audit is not None and self.record.store_url is not None:
                audit(action, {"ceremony": self.id, **detail})
        except BaseException:
            try:
                if done_then:
                    undo()
            finally:
                self.staging.discard()
            raise
        self.done = True

    def report(self, say: Callable[[str], None]) -> None:
        """Tell the officer the journal's head, for the paper ceremony log."""
        if self.head is not None and self.record.journal is not None:
            say(f"Journal {self.record.journal}: {self.head}. Write it in the paper ceremony log; "
                "`hsmsvc ceremony journal verify` shows it again.")

    def _swept(self) -> None:
        """Journal what this ceremony shredded of killed ones (named staging only; see staging.py)."""
        if self.staging.swept:
            self.record.line(self.id, "staging.swept", directories=",".join(str(p) for p in self.staging.swept))
            self.staging.swept.clear()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        if self.done:
            return
        if e is not None:
            e.add_note(JOURNALED)  # so the CLI does not journal it a second time
        self.staging.discard()
        try:
            self._swept()
        except HsmsvcError:
            pass
        why = reason(e) if e is not None else "ended without completing"
        try:
            self.record.line(self.id, f"{self.kind}.abandoned", reason=why, discarded="every staged output")
        except HsmsvcError:
            pass  # the original error is the one to report; the journal's absence says the rest
