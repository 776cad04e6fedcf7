"""Audit checkpoints: the chain's (seq, head) appended, MACed under the LMK, to a sink outside the store.

The anchor beside the LMK (or in the token) can be rolled back together with the
table by whoever can write both. A checkpoint line goes to an append-only file
(``chattr +a``, or a file a log shipper forwards), which that insider cannot
shorten; ``hsmsvc audit verify --checkpoints FILE`` then requires the table to
reach the newest checkpoint's (seq, head). PCI DSS v4.0 10.3.2 (audit logs
protected from modification), 10.3.3 (kept where they are hard to alter) and
10.3.4 (change detection on audit logs).
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from hsmsvc.crypto import compare
from hsmsvc.errors import InvalidInput
from hsmsvc.hsm.backend import Backend
from hsmsvc.hsm.commands import AuditMac

__all__ = ["Checkpoint", "CheckpointSink", "read_checkpoints"]

DOMAIN: Final = b"hsmsvc/audit-checkpoint/v1\x00"
"""Prefix inside the audit MAC's own domain: a row's MAC input is 32 bytes, a checkpoint's 83."""
MARK: Final = "hsmsvc-audit-checkpoint v1"
_LINE: Final = re.compile(MARK + r" store=([0-9a-f]{32}) seq=([0-9]+) head=([0-9a-f]{64}) mac=([0-9a-f]+)$")


@dataclass(frozen=True)
class Checkpoint:
    """One line of the sink; ``valid`` is False if it is malformed or its MAC fails under the LMK."""

    line_no: int
    store: str
    seq: int
    head: str
    valid: bool


def _mac(backend: Backend, *, store: str, seq: int, head: str) -> bytes:
    return backend.execute(AuditMac(data=DOMAIN + bytes.fromhex(store) + seq.to_bytes(8, "big") + bytes.fromhex(head)))


def line(backend: Backend, *, store: str, seq: int, head: str) -> str:
    """The text of one checkpoint (no secret: ids, a sequence number, a hash and a MAC)."""
    return f"{MARK} store={store} seq={seq} head={head} mac={_mac(backend, store=store, seq=seq, head=head).hex()}"


class CheckpointSink:
    """Appends checkpoint lines to ``path``, opened O_APPEND once (a file that is ``chattr +a``
    can be neither truncated nor replaced, even by its owner)."""

    def __init__(self, path: Path) -> None:
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            reason = (e.strerror or type(e).__name__).lower()
            raise InvalidInput(f"audit_checkpoints {path}", f"cannot be opened to append ({reason})") from None
        self._lock = threading.Lock()

    def append(self, backend: Backend, *, store: str, seq: int, head: str) -> None:
        # One write() of one short line: O_APPEND keeps lines from several processes whole.
        data = (line(backend, store=store, seq=seq, head=head) + "\n").encode()
        with self._lock:
            os.write(self._fd, data)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def read_checkpoints(path: Path, backend: Backend, *, store: str) -> list[Checkpoint]:
    """``store``'s checkpoint lines in ``path`` (a syslog prefix before the mark is allowed)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        raise InvalidInput("checkpoints", "a readable checkpoint file") from None
    found = []
    for n, raw in enumerate(text.splitlines(), 1):
        at = raw.find(MARK)
        if at < 0:
            continue
        m = _LINE.match(raw[at:].rstrip())
        if m is None:
            found.append(Checkpoint(n, store, 0, "", False))  # malformed: counted against this store
            continue
        if m.group(1) != store:
            continue
        seq, head = int(m.group(2)), m.group(3)
        try:
            ok = compare.bytes_eq(_mac(backend, store=store, seq=seq, head=head), bytes.fromhex(m.group(4)))
        except ValueError:
            ok = False
        found.append(Checkpoint(n, store, seq, head, ok))
    return found
