"""Pickled messages over one end of a socket pair, every wait bounded by a deadline.

The pool talks to its workers through this rather than through
``multiprocessing.Connection``: ``Connection.recv`` blocks without limit once a
message has begun to arrive, and ``send`` blocks once the socket buffer is full,
so a worker stopped half way through a large reply (or before reading a large
request) would hold its caller for good. Here every wait is a ``poll`` that
ends at the caller's deadline.

A message is an 8-byte big-endian length, then that many bytes of pickle. Both
ends are our own processes, so unpickling is no trust boundary.
"""

from __future__ import annotations

import math
import os
import pickle
import select
import struct
import time
from typing import Any

__all__ = ["Channel", "ChannelClosed", "ChannelTimeout"]

_HEADER = struct.Struct("!Q")
_READ = 1 << 16


class ChannelTimeout(Exception):
    """The deadline passed before the message was wholly sent or received."""


class ChannelClosed(Exception):
    """The other end closed (the worker died) or the socket failed."""


class Channel:
    """One end of a socket pair. ``deadline`` is a ``time.monotonic()`` value, or None to wait for good.

    With a deadline the descriptor is switched to non-blocking; without one (the
    worker's end) reads and writes simply block.
    """

    def __init__(self, fd: int, *, bounded: bool) -> None:
        self._fd = fd
        self._buf = bytearray()
        self._poll = select.poll()
        self._registered = 0
        if bounded:
            os.set_blocking(fd, False)

    def send(self, message: Any, deadline: float | None) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(_HEADER.pack(len(data)) + data)
        while view:
            try:
                n = os.write(self._fd, view)
            except BlockingIOError:
                self._wait(select.POLLOUT, deadline)
                continue
            except OSError:  # EPIPE, ECONNRESET: the worker is gone
                raise ChannelClosed from None
            view = view[n:]

    def recv(self, deadline: float | None) -> Any:
        """The next whole message; a partial one is kept for the next read."""
        while True:
            if len(self._buf) >= _HEADER.size:
                (n,) = _HEADER.unpack_from(self._buf)
                end = _HEADER.size + n
                if len(self._buf) >= end:
                    data = bytes(self._buf[_HEADER.size:end])
                    del self._buf[:end]
                    return pickle.loads(data)
                need = end - len(self._buf)
            else:
                need = _HEADER.size - len(self._buf)
            self._fill(max(need, _READ), deadline)

    def _fill(self, size: int, deadline: float | None) -> None:
        while True:
            if deadline is not None:
                # Poll first: a reply is rarely there already, and this spares a failed read.
                self._wait(select.POLLIN, deadline)
            try:
                chunk = os.read(self._fd, size)
            except BlockingIOError:
                continue
            except OSError:
                raise ChannelClosed from None
            if not chunk:
                raise ChannelClosed
            self._buf += chunk
            return

    def _wait(self, events: int, deadline: float | None) -> None:
        if events != self._registered:
            self._poll.register(self._fd, events)
            self._registered = events
        if deadline is None:
            self._poll.poll()
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not self._poll.poll(math.ceil(remaining * 1000)):
            raise ChannelTimeout
