"""Structured JSON logs with the request id. Callers log names and codes, never payloads.

A server process also sends whatever else is written to its stderr (grpc's C core
writes its own plain-text lines there, such as ``I1201 ... Handshake failed``)
through :func:`route_stderr`, so that the log holds JSON lines only.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import json
import logging
import os
import re
import sys
import threading
import time
from collections import deque
from typing import Final, TextIO

__all__ = ["ACCESS", "REQUEST_ID", "AccessLog", "JsonFormatter", "configure", "foreign_line", "release_stderr",
           "route_stderr"]

REQUEST_ID: Final[contextvars.ContextVar[str]] = contextvars.ContextVar("request_id", default="-")
_STANDARD: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id and extras."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": REQUEST_ID.get(),
        }
        out.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("hsmsvc")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


class AccessLog:
    """One JSON line per RPC, as :class:`JsonFormatter` writes, under the logger ``hsmsvc.access``.

    Through :mod:`logging` a line cost more than a PIN translation itself (a
    record, the caller's frame, a dict, ``json.dumps`` and a flush each time).
    Here a call only notes its few fields; the lines are formatted and written
    together, at most ``interval`` seconds after the first of a batch or at
    ``limit`` lines, which costs less per line than formatting each amid the
    call's own work. It writes only while ``hsmsvc.access`` is enabled for
    INFO. Fields are names and codes only; the principal's name, which the
    policy file chooses, is JSON-escaped.
    """

    def __init__(self, stream: TextIO | None = None, interval: float = 0.1, limit: int = 256) -> None:
        self._logger = logging.getLogger("hsmsvc.access")
        self.stream = stream
        """Where lines go; None: ``sys.stderr`` as it is at each write."""
        self._interval = interval
        self._limit = limit
        # A deque, appended to and drained from either end, so no note is lost to a
        # flush on another thread (atexit, or a server stopped from a test's thread).
        self._notes: deque[tuple[float, str, str, str, str, str, float]] = deque()
        self._names: dict[str, str] = {}

    def enabled(self) -> bool:
        return self._logger.isEnabledFor(logging.INFO)

    def write(self, message: str, method: str, principal: str, code: str, seconds: float) -> None:
        """Note one call's line, to be written while ``hsmsvc.access`` is enabled for INFO."""
        if not self._logger.isEnabledFor(logging.INFO):
            return
        notes = self._notes
        notes.append((time.time(), REQUEST_ID.get(), message, method, principal, code, seconds))
        if len(notes) >= self._limit:
            self.flush()
        elif len(notes) == 1:
            try:
                asyncio.get_running_loop().call_later(self._interval, self.flush)
            except RuntimeError:
                self.flush()  # no event loop to come back later: write now

    def flush(self) -> None:
        notes, names, lines = self._notes, self._names, []
        second, stamp = -1, ""
        while True:
            try:
                now, rid, message, method, principal, code, seconds = notes.popleft()
            except IndexError:
                break
            if int(now) != second:
                second = int(now)
                stamp = '{"time": "' + time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            name = names.get(principal)
            if name is None:
                if len(names) >= 1024:
                    names.clear()
                name = names[principal] = json.dumps(principal)
            # Request ids are letters, digits and . _ : / - only (api.status), so need no escaping.
            lines.append(f'{stamp}.{int(now % 1 * 1000):03d}Z", "level": "INFO", "logger": "hsmsvc.access", '
                         f'"message": "{message}", "request_id": "{rid}", "method": "{method}", '
                         f'"principal": {name}, "code": "{code}", "ms": {seconds * 1000:.3f}}}\n')
        if not lines:
            return
        stream = self.stream or sys.stderr
        try:
            stream.write("".join(lines))
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed stream at exit: nothing else to write to


ACCESS: Final = AccessLog()
atexit.register(ACCESS.flush)


# grpc's C core logs through absl: "I1201 12:00:00.123456  4242 ssl_transport_security.cc:1665] text".
_ABSL: Final = re.compile(rb"([IWEF])\d{4} [\d:.]+ +\d+ ([^\]\s]+)\] ?(.*)", re.S)
_LEVELS: Final = {b"I": "INFO", b"W": "WARNING", b"E": "ERROR", b"F": "CRITICAL"}
_OURS: Final = b'{"time": "'
"""How every line of ours begins (JsonFormatter and AccessLog): passed on as it is."""


def foreign_line(line: bytes, now: float | None = None) -> bytes:
    """One line written to stderr by something other than our loggers, as a JSON log line:
    grpc's with its level and source file, anything else at WARNING."""
    now = time.time() if now is None else now
    text = line.rstrip(b"\r\n")
    m = _ABSL.fullmatch(text)
    out = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"}
    if m:
        out.update(level=_LEVELS[m[1]], logger="grpc", message=m[3].decode(errors="replace"), request_id="-",
                   source="grpc", where=m[2].decode(errors="replace"))
    else:
        out.update(level="WARNING", logger="stderr", message=text.decode(errors="replace"), request_id="-",
                   source="stderr")
    return json.dumps(out).encode() + b"\n"


class _Router:
    """File descriptor 2 turned into a pipe whose lines a thread wraps as JSON; our own loggers
    write straight to the real stderr, so the hot path's access lines take no detour."""

    def __init__(self) -> None:
        sys.stderr.flush()
        self.target = os.dup(2)
        read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        self._read = read
        self.direct = os.fdopen(os.dup(self.target), "w", encoding="utf-8", errors="replace")
        self._handlers = [h for h in logging.getLogger("hsmsvc").handlers if isinstance(h, logging.StreamHandler)]
        for h in self._handlers:
            h.setStream(self.direct)
        ACCESS.stream = self.direct
        self._thread = threading.Thread(target=self._run, name="hsmsvc-stderr", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        target, rest = self.target, b""
        while True:
            try:
                chunk = os.read(self._read, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            *lines, rest = (rest + chunk).split(b"\n")
            if lines:
                out = b"".join(ln + b"\n" if ln.startswith(_OURS) else foreign_line(ln) for ln in lines)
                try:
                    os.write(target, out)
                except OSError:
                    pass  # nowhere left to write
        if rest:
            try:
                os.write(target, foreign_line(rest))
            except OSError:
                pass
        os.close(self._read)

    def release(self) -> None:
        """Point fd 2 back at the real stderr and wait for the thread to pass on what is in the pipe."""
        for stream in (sys.stderr, self.direct):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        ACCESS.flush()
        for h in self._handlers:
            h.setStream(sys.stderr)
        ACCESS.stream = None
        os.dup2(self.target, 2)  # the pipe's last writer gone (unless a child holds it): the thread reads to its end
        self._thread.join(2.0)
        self.direct.close()


_ROUTER: _Router | None = None


def route_stderr() -> None:
    """From now until exit, everything this process (and children that inherit its stderr) writes to
    fd 2 reaches the real stderr as JSON lines (:func:`foreign_line`); our own lines unchanged."""
    global _ROUTER
    if _ROUTER is None:
        _ROUTER = _Router()
        atexit.register(release_stderr)


def release_stderr() -> None:
    """Undo :func:`route_stderr` once every line is out: at exit, or before ``os._exit``."""
    global _ROUTER
    if _ROUTER is not None:
        router, _ROUTER = _ROUTER, None
        router.release()
