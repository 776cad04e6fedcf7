"""The ceremony journal: an append-only JSON-lines file, each line hash-chained to the one before.

ISO 11568-1 clause 5 asks that key-management events be recorded so that a
change to the record is detectable. The store's audit log does that with a MAC
under the LMK; a ceremony journal must also record ceremonies that never made
an LMK (an abandoned ``lmk create``), so it chains with SHA-256 instead: each
line carries the previous line's hash and its own, over the line's canonical
JSON. An edited, removed or reordered line breaks the chain at that line. The
chain has no key, so whoever can write the file could rewrite every line after
an edit: each ceremony therefore ends by showing the journal's head (its last
line's number and hash), which the officer writes in the paper ceremony log;
``hsmsvc ceremony journal verify`` shows the head to compare with it.

Appends take an exclusive ``flock``, so two ceremonies writing one journal
keep one chain, and each line is fsynced before the ceremony goes on.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hsmsvc.errors import InvalidInput

__all__ = ["GENESIS", "JournalCheck", "append", "head", "verify"]

GENESIS = "0" * 64
"""The ``prev`` of a journal's first line."""


def _digest(line: dict[str, Any]) -> str:
    body = {k: v for k, v in line.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _last(f: Any) -> tuple[int, str]:
    """The last line's sequence number and hash (0 and :data:`GENESIS` for an empty journal)."""
    f.seek(0, os.SEEK_END)
    end = f.tell()
    if end == 0:
        return 0, GENESIS
    # The last line is short: read back until a newline before it.
    start = max(0, end - 65536)
    f.seek(start)
    tail = f.read().splitlines()
    try:
        last = json.loads(tail[-1])
        return int(last["seq"]), str(last["hash"])
    except (ValueError, KeyError, IndexError, TypeError):
        # A journal from before the chain (or a torn last line): the chain starts again here,
        # and verify() reports the unchained lines.
        return len(tail), GENESIS


def append(path: Path, entry: dict[str, str]) -> dict[str, Any]:
    """Append ``entry`` (flat strings) with ``seq``, ``at``, ``prev`` and ``hash``; returns the line.

    ``InvalidInput`` (naming the journal and the system's reason) when it cannot be written.
    """
    try:
        return _append(path, entry)
    except OSError as e:
        raise InvalidInput("journal", f"{path} cannot be written: {e.strerror or type(e).__name__}") from None


def _append(path: Path, entry: dict[str, str]) -> dict[str, Any]:
    path.parent.mkdir(parents=True, exist_ok=True)
    # 0600 when created: the journal names custodians and KCVs (an existing one keeps its mode).
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "r+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        seq, prev = _last(f)
        size = f.seek(0, os.SEEK_END)
        line: dict[str, Any] = {"seq": seq + 1, "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                **entry, "prev": prev}
        line["hash"] = _digest(line)
        data = (json.dumps(line, sort_keys=True) + "\n").encode()
        try:
            # One write, and no torn line if it fails (a full disk, a file-size limit): the chain
            # would otherwise end in a line that does not parse.
            if os.write(fd, data) != len(data):
                raise OSError(errno.ENOSPC, "short write")
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, size)
            raise
    return line


def head(line: dict[str, Any]) -> str:
    """How the paper ceremony log records a journal's head."""
    return f"line {line['seq']}, hash {str(line['hash'])[:16].upper()}"


@dataclass(frozen=True)
class JournalCheck:
    lines: int
    problems: tuple[str, ...] = field(default=())
    head: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(path: Path) -> JournalCheck:
    """Check every line's hash and its link to the line before."""
    problems: list[str] = []
    prev = GENESIS
    n = 0
    last: dict[str, Any] = {}
    with open(path, encoding="utf-8") as f:
        for n, text in enumerate(f, start=1):
            try:
                line = json.loads(text)
                ok = line["prev"] == prev and line["hash"] == _digest(line) and line["seq"] == n
            except (ValueError, KeyError, TypeError):
                ok = False
                line = {}
            if not ok:
                problems.append(f"line {n}: does not chain to the line before")
            prev = str(line.get("hash", ""))
            last = line
    return JournalCheck(n, tuple(problems), head(last) if n and "seq" in last else "")
