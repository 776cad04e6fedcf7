"""One pool member: a backend in a spawned worker process, and the parent's handle on it.

Every message to a worker carries an id the pool draws from one counter, and
every reply echoes it; the parent discards a reply with another id and reads on
until its deadline, so a reply can only ever answer its own request. The
worker's first message (``READY``, with its LMK KCV and capabilities) echoes
the id it was started with.

The parent's handle is not thread-safe by itself: the pool lets one thread at a
time use a member (the one that marked it busy), and only that thread touches
its process and channel.
"""

from __future__ import annotations

import enum
import multiprocessing as mp
import time
from multiprocessing.connection import Connection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

from hsmsvc.errors import BackendUnavailable, HsmsvcError
from hsmsvc.hsm.channel import Channel, ChannelClosed, ChannelTimeout
from hsmsvc.hsm.commands.base import HsmCommand
from hsmsvc.hsm.config import Pkcs11Config, SoftConfig, build
from hsmsvc.hsm.model import Capabilities

if TYPE_CHECKING:
    from hsmsvc.hsm.commands.core import CommandBackend

__all__ = ["Failure", "Member", "MemberFailed", "PING", "Ping"]

# Spawned, not forked: a forked child would inherit a PKCS#11 login (docs/platform-notes.md).
_CTX = mp.get_context("spawn")
T = TypeVar("T")


@dataclass(frozen=True)
class Ping(HsmCommand[bytes]):
    """The health probe: the worker answers its LMK KCV."""

    def run(self, b: CommandBackend) -> bytes:
        return b.lmk_kcv()


PING = Ping()

_ErrorState = tuple[str, str | None, str]


class Reply(enum.Enum):
    READY = "ready"
    OK = "ok"
    ERROR = "error"  # a typed HsmsvcError from the backend
    FAULT = "fault"  # any other exception: a bug, reported by class name only


class Failure(enum.Enum):
    """Why a member stopped being trusted; each one has it killed and replaced."""

    TIMEOUT = "timed out"
    GONE = "is gone"
    UNAVAILABLE = "reported its backend unavailable"
    WRONG_LMK = "answered a probe with another LMK KCV"


class MemberFailed(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.value)
        self.failure = failure


def _error_state(e: HsmsvcError) -> _ErrorState:
    return (type(e).__qualname__, e.field, e.reason)


def _rebuild(state: _ErrorState) -> HsmsvcError:
    import hsmsvc.errors as errors

    cls = getattr(errors, state[0], None)
    if not (isinstance(cls, type) and issubclass(cls, HsmsvcError)):
        cls = BackendUnavailable
    e = cls.__new__(cls)
    HsmsvcError.__init__(e, state[1], state[2])
    return e


def serve(config: SoftConfig | Pkcs11Config, conn: Connection, hello_id: int) -> None:
    """The worker: build the backend, then answer requests in order until the pipe closes."""
    channel = Channel(conn.fileno(), bounded=False)
    try:
        backend = build(config, forget=True)  # the worker's own copy of the environment
    except HsmsvcError as e:
        channel.send((hello_id, Reply.ERROR, _error_state(e)), None)
        return
    channel.send((hello_id, Reply.READY, (backend.lmk_kcv(), backend.capabilities)), None)
    try:
        while True:
            msg_id, command = channel.recv(None)
            reply: tuple[int, Reply, Any]
            try:
                reply = (msg_id, Reply.OK, backend.execute(command))
            except HsmsvcError as e:
                reply = (msg_id, Reply.ERROR, _error_state(e))
            except Exception as e:  # a bug: report it without a traceback or values
                reply = (msg_id, Reply.FAULT, type(e).__name__)
            channel.send(reply, None)
    except ChannelClosed:
        pass
    finally:
        backend.close()


class Member:
    """The parent's handle on one worker; ``healthy``, ``busy`` and the counters belong to the pool's lock."""

    def __init__(self, index: int, config: SoftConfig | Pkcs11Config) -> None:
        self.index = index
        self.config = config
        self.healthy = False
        self.busy = False
        self.pid: int | None = None
        self.restarts = -1
        self.ops = 0
        self.failures = 0
        self.stale = 0
        self.last_reply = 0.0
        self.start_failures = 0
        self.next_start = 0.0
        self._proc: Any = None
        self._conn: Connection | None = None
        self._channel: Channel | None = None

    def start(self, hello_id: int, timeout: float) -> tuple[bytes, Capabilities]:
        """Spawn a fresh worker; its READY must echo ``hello_id`` within ``timeout``."""
        self.kill()  # the previous worker, if any: never two for one member
        parent, child = _CTX.Pipe()
        proc = _CTX.Process(target=serve, args=(self.config, child, hello_id), daemon=True)
        proc.start()
        child.close()
        self._proc, self._conn, self.pid = proc, parent, proc.pid
        self._channel = Channel(parent.fileno(), bounded=True)
        try:
            kind, payload = self._receive(hello_id, time.monotonic() + timeout)
        except MemberFailed:
            self.kill()
            raise BackendUnavailable("pool", f"member {self.index} did not start") from None
        if kind is not Reply.READY:
            self.kill()
            raise _rebuild(payload)
        self.restarts += 1
        kcv, caps = payload
        return bytes(kcv), caps

    def call(self, msg_id: int, command: HsmCommand[T], deadline: float) -> T:
        """The worker's answer to this command, or its typed error.

        Raises :class:`MemberFailed` when the worker cannot be trusted to answer
        the next request correctly (timed out, gone, or its backend unavailable).
        """
        self.send(msg_id, command, deadline)
        kind, payload = self._receive(msg_id, deadline)
        if kind is Reply.OK:
            return cast(T, payload)  # the worker ran this very command: its answer is a T
        if kind is Reply.FAULT:
            raise BackendUnavailable("hsm", f"internal error {payload}")
        error = _rebuild(payload)
        if isinstance(error, BackendUnavailable):
            raise MemberFailed(Failure.UNAVAILABLE)
        raise error

    def send(self, msg_id: int, command: HsmCommand[Any], deadline: float) -> None:
        if self._channel is None:
            raise MemberFailed(Failure.GONE)
        try:
            self._channel.send((msg_id, command), deadline)
        except ChannelTimeout:
            raise MemberFailed(Failure.TIMEOUT) from None
        except ChannelClosed:
            raise MemberFailed(Failure.GONE) from None

    def _receive(self, msg_id: int, deadline: float) -> tuple[Reply, Any]:
        if self._channel is None:
            raise MemberFailed(Failure.GONE)
        while True:
            try:
                reply_id, kind, payload = self._channel.recv(deadline)
            except ChannelTimeout:
                raise MemberFailed(Failure.TIMEOUT) from None
            except ChannelClosed:
                raise MemberFailed(Failure.GONE) from None
            if reply_id == msg_id:
                return kind, payload
            self.stale += 1  # an answer to some earlier request: never anyone's answer now

    def alive(self) -> bool:
        return self._proc is not None and bool(self._proc.is_alive())

    def kill(self) -> None:
        """SIGKILL the worker (a stopped one too), reap it and close the pipe."""
        if self._proc is not None:
            self._proc.kill()  # only while not yet reaped: never a recycled pid
            self._proc.join(5)
        self._close()

    def stop(self, grace: float) -> None:
        """Close the pipe so the worker closes its backend (PKCS#11 logout); kill it if it lingers."""
        self._close()
        if self._proc is not None:
            self._proc.join(grace)
            if self._proc.is_alive():
                self.kill()

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = self._channel = None
