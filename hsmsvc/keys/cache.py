"""Stored keys for the use path, read from the database once and kept until the store changes.

Without it every PIN translation or MAC made two database queries to find its
keys, which cost more than the call's crypto and gRPC together. What is kept is
the stored row only (cryptogram under the LMK, state, dates, use count); clear
keys stay in the backend, which keeps its own unwrapped-key cache.

When the cache trusts an entry:

* **This process changed the store** (:attr:`KeyStore.changes` moved): all is
  dropped at once, so a revocation made through this server applies to the
  next call.
* **Another process changed it**: every key change appends an audit row in the
  same transaction, so the audit head moving is the cue. The head is read at
  most every ``refresh`` seconds, which bounds how long a change made on another
  server sharing the database takes to apply here (default 0.2 s).
* **A key change's new version activates at a set time**: an entry for "the
  version active now" lapses at the next pending activation time.
* **Use counts** move without an audit row; the use meter reports the count it
  reserved (:meth:`note_uses`), so the hard stop at twice ``max_uses`` holds.

Expiry and activation are checked against the clock at every use
(:meth:`KeyManager.check_use`), not here.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import datetime, timezone
from typing import Callable, Final

from hsmsvc.keys.model import KeyRef, StoredKey
from hsmsvc.keys.store import KeyStore

__all__ = ["KeyCache"]

_MAX_ENTRIES: Final = 10_000
_LAPSED: Final = datetime.min.replace(tzinfo=timezone.utc)


@dataclasses.dataclass
class _Entry:
    key: StoredKey
    until: datetime | None
    """For "the version active now": when another version becomes the active one."""


class KeyCache:
    """``lookup(ref)`` as :meth:`KeyManager.lookup`, served from memory while the store is unchanged."""

    def __init__(self, store: KeyStore, refresh: float = 0.2, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._refresh = refresh
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[KeyRef, _Entry] = {}
        self._changes = store.changes
        self._head = -1
        self._checked = float("-inf")
        self._epoch = 0
        """Bumped at every clear: a row read before a clear is not kept after it."""
        self._stamp = 0
        """Bumped whenever any entry goes or changes, for what callers derive from entries."""

    def lookup(self, ref: KeyRef) -> StoredKey:
        self._revalidate()
        e = self._entries.get(ref)
        if e is not None and (e.until is None or datetime.now(timezone.utc) < e.until):
            return e.key
        epoch = self._epoch
        key = (self._store.get(ref.key_id, ref.version) if ref.key_id
               else self._store.get_by_alias(ref.alias, ref.version))
        until = None
        if ref.version is None:
            until = self._store.next_activation(ref.key_id, ref.alias)
        with self._lock:
            if epoch == self._epoch:
                if len(self._entries) >= _MAX_ENTRIES:
                    self._drop()
                self._entries[ref] = _Entry(key, until)
        return key

    def until(self, ref: KeyRef) -> datetime | None:
        """When the entry for ``ref`` lapses by the clock (a newer version activates), if it does;
        an entry not kept (a clear raced its lookup) has lapsed already."""
        e = self._entries.get(ref)
        return _LAPSED if e is None else e.until

    @property
    def stamp(self) -> int:
        """Changes whenever an entry is dropped or changed; read before the lookups it vouches for."""
        return self._stamp

    def current(self, stamp: int) -> bool:
        """Whether nothing looked up since ``stamp`` was read has been dropped or changed."""
        # _revalidate's two tests first, inline: this is on every routed translation.
        if self._store.changes != self._changes or self._clock() - self._checked >= self._refresh:
            self._revalidate()
        return stamp == self._stamp

    def note_uses(self, key_id: str, version: int, use_count: int) -> None:
        """The store's use counter for a version is now at least ``use_count``."""
        with self._lock:
            for e in self._entries.values():
                k = e.key
                if k.key_id == key_id and k.version == version and k.use_count < use_count:
                    e.key = dataclasses.replace(k, use_count=use_count)
                    self._stamp += 1

    def _drop(self) -> None:
        self._entries.clear()
        self._epoch += 1
        self._stamp += 1

    def _revalidate(self) -> None:
        if self._store.changes != self._changes:
            with self._lock:
                self._changes = self._store.changes
                self._drop()
        now = self._clock()
        if now - self._checked < self._refresh:
            return
        head = self._store.audit_head()
        with self._lock:
            self._checked = now
            if head != self._head:
                self._head = head
                self._drop()
