"""A pool of backends, each in its own spawned worker process (``hsm/member.py``), with failover.

* Every request carries an id from one counter and its reply must echo it; any
  other reply is discarded, so no caller ever receives another request's answer.
* At start, and on every restart, a member must prove the pool's LMK KCV and
  declare the same capabilities, or it is refused.
* A call takes a free healthy member in turn, waiting on a condition (up to the
  call timeout) only when all are busy: it never queues behind a stalled member
  while another is free, and calls on different members run in parallel.
* Commands are values (:mod:`hsmsvc.hsm.commands`) sent to a worker as they are; a
  broadcast command (cache drops, audit anchors) goes to every member.
* A member that times out, dies, breaks its pipe or reports ``BackendUnavailable``
  is killed (SIGKILL, reaped) at once and the call is retried once on another:
  the commands are idempotent. The killed worker never answers again.
* A health thread starts fresh workers for killed or dead members (backing off
  while a start fails) and probes members idle for an interval, with their own ids.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Final, Sequence, TypeVar

from hsmsvc.errors import BackendUnavailable, HsmsvcError, InvalidInput, PermissionDenied, Unsupported
from hsmsvc.hsm.commands.base import DEBUG, HsmCommand, TimingHook, debugging, observe
from hsmsvc.hsm.commands.pin import TranslatePin
from hsmsvc.hsm.commands.storedpins import VerifyPinStored
from hsmsvc.hsm.config import Pkcs11Config, SoftConfig
from hsmsvc.hsm.member import PING, Failure, Member, MemberFailed
from hsmsvc.hsm.model import Capabilities, KeyCryptogram, PinBlock, PinKey, PinTranslator, PinVerifier, StoredPin
from hsmsvc.loopguard import may_block
from hsmsvc.types import PinBlockFormat

__all__ = ["MemberStats", "Pool"]

log = logging.getLogger("hsmsvc.pool")

_CLOSE_WAIT: Final = 2.0
"""Seconds close() waits for the health thread, and for calls in flight, before it stops members."""

_ATTEMPTS = 2  # the first member, then one other
T = TypeVar("T")


class _Replaced:
    """What :meth:`Pool._ask` gives once the member it asked was killed (a command may answer None)."""


_REPLACED: Final = _Replaced()
_MAX_START_BACKOFF = 30.0


@dataclass(frozen=True)
class MemberStats:
    """One member as the parent sees it; reading these never waits for a worker."""

    index: int
    pid: int | None
    healthy: bool
    restarts: int
    ops: int  # answers received from this member's workers since the pool opened
    busy: bool = False  # a call or probe is in flight on it
    failures: int = 0  # workers killed for a timeout, death, broken pipe or an unavailable backend


class Pool:
    """A :class:`~hsmsvc.hsm.backend.Backend` over several members holding one LMK. Thread-safe."""

    def __init__(
        self,
        configs: Sequence[SoftConfig | Pkcs11Config],
        health_interval: float = 0.5,
        call_timeout: float = 10.0,
        start_timeout: float = 30.0,
    ) -> None:
        if not configs:
            raise PermissionDenied("pool", "at least one member")
        if not 0 < call_timeout < math.inf:
            raise InvalidInput("call_timeout", "a positive number of seconds")
        self._members = [Member(i, c) for i, c in enumerate(configs)]
        self._timeout = call_timeout
        self._start_timeout = start_timeout
        self._interval = health_interval
        # Guards every member's healthy/busy flags and counters, the ids and the turn.
        self._cond = threading.Condition()
        self._ids = itertools.count(1)
        self._turn = 0
        self._targeted = 0  # threads waiting for one particular member
        self._closed = False
        self.timing: TimingHook | None = None
        self._lmk_kcv: bytes | None = None
        self._caps: Capabilities | None = None
        try:
            for m in self._members:
                m.busy = True
                try:
                    self._admit(m, next(self._ids))
                finally:
                    m.busy = False
        except HsmsvcError:
            for m in self._members:
                m.kill()
            raise
        self._wake = threading.Event()
        self._health = threading.Thread(target=self._watch, name="hsmsvc-pool-health", daemon=True)
        self._health.start()

    @property
    def call_timeout(self) -> float:
        return self._timeout

    # -- members: taking, giving back, replacing --------------------------------

    def _admit(self, m: Member, hello_id: int) -> None:
        """Start a fresh worker on ``m`` (held busy by the caller); healthy only once it proves the LMK."""
        kcv, caps = m.start(hello_id, self._start_timeout)
        if self._lmk_kcv is None:
            self._lmk_kcv, self._caps = kcv, caps
        elif kcv != self._lmk_kcv:
            m.kill()
            raise PermissionDenied(
                "pool", f"member {m.index} holds LMK KCV {kcv.hex().upper()}, not {self._lmk_kcv.hex().upper()}"
            )
        elif caps != self._caps:
            m.kill()
            raise PermissionDenied("pool", f"member {m.index} declares other capabilities")
        with self._cond:
            m.healthy = True
            m.last_reply = time.monotonic()
            self._cond.notify_all()

    def _take(self, deadline: float, only: Member | None = None) -> tuple[Member, int] | None:
        """A free healthy member (``only`` that one), marked busy, and a fresh message id.

        None when the deadline passes first, or at once when ``only`` is not healthy.
        """
        with self._cond:
            if only is not None:
                self._targeted += 1
            try:
                while True:
                    if self._closed:
                        raise BackendUnavailable("hsm", "pool closed")
                    m = self._free(only)
                    if m is not None:
                        m.busy = True
                        return m, next(self._ids)
                    remaining = deadline - time.monotonic()
                    if (only is not None and not only.healthy) or remaining <= 0:
                        return None
                    self._cond.wait(remaining)
            finally:
                if only is not None:
                    self._targeted -= 1

    def _free(self, only: Member | None) -> Member | None:
        if only is not None:
            return only if only.healthy and not only.busy else None
        n = len(self._members)
        for k in range(n):
            m = self._members[(self._turn + k) % n]
            if m.healthy and not m.busy:
                self._turn = m.index + 1  # round robin: the next call starts after this one
                return m
        return None

    def _give_back(self, m: Member, *, answered: bool) -> None:
        with self._cond:
            m.busy = False
            if answered:
                m.ops += 1
                m.last_reply = time.monotonic()
            # One free member serves one waiter, unless someone waits for this member in particular.
            if self._targeted:
                self._cond.notify_all()
            else:
                self._cond.notify()

    def _replace(self, m: Member, failure: Failure) -> None:
        """Kill and reap ``m``'s worker (held busy by the caller); the health thread starts a fresh one."""
        with self._cond:
            m.healthy = False
            m.failures += 1
        log.warning("pool member %d %s; killing its worker and starting another", m.index, failure.value)
        m.kill()
        with self._cond:
            m.busy = False
            m.next_start = 0.0
            self._cond.notify_all()
        self._wake.set()

    # -- calls -------------------------------------------------------------------

    def _call(self, command: HsmCommand[T]) -> T:
        may_block()  # a member's answer crosses a pipe and may take up to the timeout
        for _ in range(_ATTEMPTS):
            got = self._take(time.monotonic() + self._timeout)
            if got is None:
                raise BackendUnavailable("hsm", "no pool member free within the call timeout")
            result = self._ask(got, command)
            if not isinstance(result, _Replaced):
                return result
        raise BackendUnavailable("hsm", "no pool member answered")

    def _ask(self, got: tuple[Member, int], command: HsmCommand[T]) -> T | _Replaced:
        """Send the command to a taken member: its answer, or :data:`_REPLACED` once the member is replaced.

        An error the backend answered is the request's, raised as it is; the member is fine.
        """
        m, msg_id = got
        try:
            result = m.call(msg_id, command, time.monotonic() + self._timeout)
        except MemberFailed as f:
            self._replace(m, f.failure)
            return _REPLACED
        except HsmsvcError:
            self._give_back(m, answered=True)
            raise
        except BaseException:
            # Not an answer (a message that would not pickle, an interrupt): its channel may
            # hold half a message, so the member is not used again.
            self._replace(m, Failure.GONE)
            raise
        self._give_back(m, answered=True)
        return result

    def _broadcast(self, command: HsmCommand[T]) -> list[T]:
        """The command on every healthy member (a member restarted meanwhile starts afresh anyway)."""
        may_block()
        out = []
        for member in self._members:
            # A call in flight on it ends within the timeout, by an answer or a kill.
            got = self._take(time.monotonic() + 2 * self._timeout, only=member)
            if got is None:
                continue
            result = self._ask(got, command)
            if not isinstance(result, _Replaced):
                out.append(result)
        if not out:
            raise BackendUnavailable("hsm", "no pool member available")
        return out

    # -- health ------------------------------------------------------------------

    def _watch(self) -> None:
        while not self._closed:
            self._wake.wait(self._interval)
            self._wake.clear()
            for m in self._members:
                if self._closed:
                    return
                self._check(m)

    def _check(self, m: Member) -> None:
        now = time.monotonic()
        with self._cond:
            if m.busy or self._closed:
                return  # in use: its caller learns of any failure first
            if m.healthy and now - m.last_reply < self._interval:
                return
            if not m.healthy and now < m.next_start:
                return
            m.busy = True
            msg_id = next(self._ids)
            restart = not m.healthy
        if restart:
            self._restart(m, msg_id)
            return
        try:
            if not m.alive():
                raise MemberFailed(Failure.GONE)
            if m.call(msg_id, PING, time.monotonic() + self._timeout) != self._lmk_kcv:
                raise MemberFailed(Failure.WRONG_LMK)
        except MemberFailed as f:
            self._replace(m, f.failure)
            return
        except HsmsvcError:
            pass
        self._give_back(m, answered=True)

    def _restart(self, m: Member, hello_id: int) -> None:
        try:
            self._admit(m, hello_id)
        except HsmsvcError as e:
            log.warning("pool member %d did not start: %s", m.index, e.reason)
            with self._cond:
                m.start_failures += 1
                m.next_start = time.monotonic() + min(_MAX_START_BACKOFF, self._interval * 2**m.start_failures)
        else:
            log.warning("pool member %d is back with a fresh worker (pid %s)", m.index, m.pid)
            with self._cond:
                m.start_failures = 0
        finally:
            self._give_back(m, answered=False)

    # -- observation -------------------------------------------------------------

    def stats(self) -> list[MemberStats]:
        """Per member: worker PID, circuit state, restarts and answers; never waits for a worker."""
        with self._cond:
            return [
                MemberStats(m.index, m.pid, m.healthy, max(m.restarts, 0), m.ops, m.busy, m.failures)
                for m in self._members
            ]

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not all(m.healthy for m in self._members):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BackendUnavailable("pool", "members did not recover")
                self._cond.wait(remaining)

    # -- Backend -------------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        if self._caps is None:
            raise BackendUnavailable("pool", "no member admitted")
        return self._caps

    def lmk_kcv(self) -> bytes:
        if self._lmk_kcv is None:
            raise BackendUnavailable("pool", "no member admitted")
        return self._lmk_kcv

    def execute(self, command: HsmCommand[T]) -> T:
        """Send ``command`` to one member (to every member if it is a broadcast), logged and timed here."""
        if self.timing is None and not debugging(DEBUG):
            return self._execute(command)
        return observe(command, lambda: self._execute(command), self.timing)

    def _execute(self, command: HsmCommand[T]) -> T:
        if command.pool_refusal is not None:
            raise Unsupported("command", command.pool_refusal)
        if command.broadcast:
            return command.combine(self._broadcast(command))
        return self._call(command)

    def pin_translator(
        self, *, src: PinKey, src_format: PinBlockFormat, dst: KeyCryptogram, dst_format: PinBlockFormat,
    ) -> PinTranslator:
        # Each call may go to another member, so nothing is bound but the arguments.
        def translate(block: bytes, pan: str | None) -> bytes:
            return self.execute(TranslatePin(pin=PinBlock(block, src_format, pan), src=src, dst=dst,
                                             dst_format=dst_format))

        return translate

    def pin_verifier(self, *, key: PinKey, fmt: PinBlockFormat, psk: KeyCryptogram) -> PinVerifier:
        def verify(block: bytes, pan: str | None, account: str, stored: StoredPin) -> None:
            self.execute(VerifyPinStored(pin=PinBlock(block, fmt, pan), key=key, psk=psk, account=account,
                                         stored=stored))

        return verify

    def close(self) -> None:
        """Stop the health thread, then each worker once its call in flight (if any) has ended."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._wake.set()
        # A shutdown is bounded: a member still starting, or a call still in flight after
        # _CLOSE_WAIT, is left to die with the process (the workers are daemons).
        self._health.join(_CLOSE_WAIT)
        deadline = time.monotonic() + _CLOSE_WAIT
        for m in self._members:
            with self._cond:
                while m.busy and self._cond.wait(max(0.0, deadline - time.monotonic())):
                    pass
                if m.busy:
                    continue  # its holder meets the closed pool and kills nothing more; the daemon dies with us
                m.busy, m.healthy = True, False
            m.stop(2.0)
