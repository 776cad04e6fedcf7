"""Shares gathered from custodians until a share-sealed LMK opens: Vault's unseal, for a running server.

A server that starts on a share-sealed LMK (``hsm/soft/sharesealed.py``) is
sealed: it holds the file and nothing that opens it. Custodians give their
shares one by one (``CeremonyService.SubmitUnsealShare``, ``hsmsvc unseal``),
each under their own identity; when k are in, the LMK opens. The rules:

* a mistyped share (its check digits), or one of another seal (its first digits), is
  refused at once and changes nothing;
* one share per index and, outside development, one per principal;
* shares that do not open the LMK are all discarded, with one answer whichever
  was wrong (as Vault resets its unseal progress), and the failure is counted;
* shares entered expire ``timeout`` seconds after the first of them unless
  the threshold is reached before: a share does not wait in memory for a
  second person who never comes.

Shares are kept as ``bytearray`` and wiped when used, reset or expired (where
Python allows; see :class:`~hsmsvc.hsm.soft.shares.Share`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Final

from hsmsvc.errors import InvalidInput, KeyStateError, PermissionDenied, unreadable
from hsmsvc.hsm.soft import shares as sharing
from hsmsvc.hsm.soft import sharesealed
from hsmsvc.hsm.soft.backend import SoftBackend

__all__ = ["DEFAULT_TIMEOUT", "Entered", "Opened", "Progress", "Unsealer"]

log = logging.getLogger("hsmsvc.unseal")

DEFAULT_TIMEOUT: Final = 600.0
"""Ten minutes from the first share: time for the next custodian to walk over, not to wait a day."""
RESET: Final = f"{sharesealed.DO_NOT_OPEN}; entry reset"


@dataclass(frozen=True)
class Entered:
    """Who gave which share index: names and numbers only."""

    principal: str
    index: int


@dataclass(frozen=True)
class Progress:
    header: sharesealed.SealHeader
    entered: tuple[Entered, ...]
    expires_at: datetime | None
    sealed: bool = True

    def summary(self) -> str:
        """``sealed: 1 of 2 shares entered``: what every refused call and /readyz say while sealed."""
        return f"sealed: {len(self.entered)} of {self.header.threshold} shares entered"


@dataclass(frozen=True)
class Opened:
    """The LMK is open: the backend on it, and who opened it."""

    backend: SoftBackend
    header: sharesealed.SealHeader
    entered: tuple[Entered, ...]


class Unsealer:
    """The sealed state of one server process: thread-safe, one LMK file."""

    def __init__(self, path: Path, *, timeout: float = DEFAULT_TIMEOUT, one_per_principal: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        try:
            self._blob = self.path.read_bytes()
        except OSError as e:
            raise unreadable("sealed_lmk", self.path, e) from None
        self.header = sharesealed.read_header(self._blob)
        if not 0 < timeout <= 86400:
            raise InvalidInput("unseal_timeout_seconds", "more than 0, at most 86400")
        self._timeout = timeout
        self._one_per_principal = one_per_principal
        self._clock = clock
        self._lock = threading.Lock()
        self._shares: list[sharing.Share] = []
        self._who: list[Entered] = []
        self._deadline: float | None = None
        self._opening = False
        self.failures = 0
        """Combinations that did not open the LMK, since start."""
        self.expired = 0
        """Times entered shares were discarded for taking too long."""

    # -- state ---------------------------------------------------------------------------

    def _wipe(self) -> None:
        for s in self._shares:
            s.wipe()
        self._shares.clear()
        self._who.clear()
        self._deadline = None

    def _expire(self) -> int:
        if self._deadline is None or self._clock() < self._deadline:
            return 0
        n = len(self._shares)
        self._wipe()
        self.expired += 1
        log.warning("unseal: shares expired before the threshold; entry reset",
                    extra={"discarded": n, "expired": self.expired})
        return n

    def expire(self) -> int:
        """Discard the shares entered if their time is up; returns how many were discarded."""
        with self._lock:
            return self._expire()

    def _progress(self) -> Progress:
        expires = None
        if self._deadline is not None:
            expires = datetime.now(timezone.utc) + timedelta(seconds=max(0.0, self._deadline - self._clock()))
        return Progress(self.header, tuple(self._who), expires)

    def status(self) -> Progress:
        with self._lock:
            self._expire()
            return self._progress()

    def snapshot(self) -> Progress:
        """The progress without taking the lock, for the event loop and the metrics thread: shares
        whose time is up count as gone (:meth:`expire`, run every second, wipes them)."""
        who, deadline = tuple(self._who), self._deadline
        if deadline is not None and self._clock() >= deadline:
            return Progress(self.header, (), None)
        expires = None
        if deadline is not None:
            expires = datetime.now(timezone.utc) + timedelta(seconds=max(0.0, deadline - self._clock()))
        return Progress(self.header, who, expires)

    def reset(self) -> None:
        """Back to no shares and not opening (the LMK opened but the server could not start on it)."""
        with self._lock:
            self._wipe()
            self._opening = False

    # -- entry ---------------------------------------------------------------------------

    def submit(self, *, principal: str, share: bytes | bytearray) -> Progress | Opened:
        """One custodian's share (its text). Returns the progress, or the opened backend at the k-th share.

        Refusals before the threshold name their rule (a typo, an index out of
        range, a repeat); at the threshold any wrong share is :data:`RESET`.
        """
        given = sharing.parse(share)  # a mistyped share: refused here, nothing changes
        with self._lock:
            try:
                if self._opening:
                    raise KeyStateError("lmk", "the shares entered opened the LMK; the server is starting")
                self._expire()
                if given.seal != self.header.prefix:  # public, as the share's first digits: no oracle
                    raise InvalidInput("share", f"a share of LMK seal {given.seal}; this server's LMK is seal "
                                                f"{self.header.prefix}: is it the right envelope?")
                if not 1 <= given.index <= self.header.count:
                    raise InvalidInput("share", f"index {given.index}: this seal has shares 1 to {self.header.count}")
                if any(e.index == given.index for e in self._who):
                    raise KeyStateError("share", f"a share with index {given.index} was already entered")
                if self._one_per_principal and any(e.principal == principal for e in self._who):
                    raise KeyStateError("share", f"{principal} already entered a share: one per custodian")
            except BaseException:
                given.wipe()
                raise
            self._shares.append(given)
            self._who.append(Entered(principal, given.index))
            if self._deadline is None:
                self._deadline = self._clock() + self._timeout
            if len(self._shares) < self.header.threshold:
                return self._progress()
            entered = tuple(self._who)
            try:
                backend = SoftBackend.from_shares(self.path, self._shares, blob=self._blob)
            except PermissionDenied:
                self.failures += 1
                raise PermissionDenied("shares", RESET) from None
            finally:
                self._wipe()
            self._opening = True
            return Opened(backend, self.header, entered)
