"""Structured JSON logs with the request id. Callers log names and codes, never payloads."""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import json
import logging
import sys
import time
from typing import Final, TextIO

__all__ = ["ACCESS", "REQUEST_ID", "AccessLog", "JsonFormatter", "configure"]

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
    record, the caller's frame, a dict, ``json.dumps`` and a flush each time),
    so this builds the line from its few fields and writes lines in batches:
    at most ``interval`` seconds after the first line of a batch, or at
    ``limit`` characters. It writes only while ``hsmsvc.access`` is enabled
    for INFO. Fields are names and codes only; the principal's name, which
    the policy file chooses, is JSON-escaped.
    """

    def __init__(self, stream: TextIO | None = None, interval: float = 0.1, limit: int = 64 * 1024) -> None:
        self._logger = logging.getLogger("hsmsvc.access")
        self._stream = stream
        self._interval = interval
        self._limit = limit
        self._lines: list[str] = []
        self._size = 0
        self._second = -1
        self._stamp = ""
        self._names: dict[str, str] = {}

    def enabled(self) -> bool:
        return self._logger.isEnabledFor(logging.INFO)

    def write(self, message: str, method: str, principal: str, code: str, seconds: float) -> None:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = '{"time": "' + time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        name = self._names.get(principal)
        if name is None:
            if len(self._names) >= 1024:
                self._names.clear()
            name = self._names[principal] = json.dumps(principal)
        # Request ids are letters, digits and . _ : / - only (api.status), so need no escaping.
        line = (f'{self._stamp}.{int(now % 1 * 1000):03d}Z", "level": "INFO", "logger": "hsmsvc.access", '
                f'"message": "{message}", "request_id": "{REQUEST_ID.get()}", "method": "{method}", '
                f'"principal": {name}, "code": "{code}", "ms": {seconds * 1000:.3f}}}\n')
        first = not self._lines
        self._lines.append(line)
        self._size += len(line)
        if self._size >= self._limit:
            self.flush()
        elif first:
            try:
                asyncio.get_running_loop().call_later(self._interval, self.flush)
            except RuntimeError:
                self.flush()  # no event loop to come back later: write now

    def flush(self) -> None:
        if not self._lines:
            return
        # Swapped, not cleared after the join: a line another thread adds meanwhile is kept.
        lines, self._lines, self._size = self._lines, [], 0
        text = "".join(lines)
        stream = self._stream or sys.stderr
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed stream at exit: nothing else to write to


ACCESS: Final = AccessLog()
atexit.register(ACCESS.flush)
