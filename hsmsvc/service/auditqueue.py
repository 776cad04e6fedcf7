"""Group commit for audit rows written on a hot path (each co-signature, seed 000 clause 6.2).

A caller's row must be committed before its answer leaves (an answer whose row was
lost would be an unaudited signature), but one transaction per row serializes every
caller on the chain's head. Callers here queue their row and wait: the first to
find no writer at work becomes it and writes everything queued, in batches, in one
transaction each (``KeyStore.audit_many``), until the queue is empty. Every waiter
gets its batch's outcome: done, or the store's error.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Final

from hsmsvc.keys.model import AuditEvent
from hsmsvc.keys.store import KeyStore

__all__ = ["AuditQueue"]

MAX_BATCH: Final = 512


class AuditQueue:
    """Rows for one store, written in group commits by whichever caller arrives first."""

    def __init__(self, store: KeyStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._pending: list[tuple[AuditEvent, Future[None]]] = []
        self._writing = False

    def record(self, ev: AuditEvent) -> None:
        """Return once ``ev`` is committed in the chain; raise the store's error if its batch failed."""
        done: Future[None] = Future()
        with self._lock:
            self._pending.append((ev, done))
            lead = not self._writing
            self._writing = True
        if lead:
            self._drain()
        done.result()

    def _drain(self) -> None:
        while True:
            with self._lock:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                if not batch:
                    self._writing = False
                    return
            try:
                self._store.audit_many([ev for ev, _ in batch])
            except BaseException as e:  # every waiter learns its row was not written
                for _, done in batch:
                    done.set_exception(e)
                if not isinstance(e, Exception):
                    with self._lock:
                        self._writing = False
                    raise
            else:
                for _, done in batch:
                    done.set_result(None)
