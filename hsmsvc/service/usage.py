"""Key use counting and rotation by use count or age (bank design 004 clause 7.1.1).

Uses are counted in the store, reserved a block at a time, so the hot path
writes once per block and servers sharing a database never count a use twice
(a reserved block counts as used: the count errs high, never low). When a key
version reaches its rotation limit, a new version is made off the request path:

* a zone key at the site that is the zone's core: a key change, delivered to
  the peer when one is configured;
* a zone key received from a core: nothing here; the core changes it;
* a terminal key (TPK, TAK): audited as due; the terminal gets new keys at its
  next sign-on;
* any other key: a local rotation.

Use is refused at twice the limit (``KeyManager.check_use``).

The meter is also where uses are counted exactly, for the metrics
(:meth:`UseMeter.uses`): one count per use, not one per observer.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from hsmsvc.errors import AlreadyExists, HsmsvcError
from hsmsvc.keys.model import AuditEvent, StoredKey
from hsmsvc.service.authz import Principal, Role
from hsmsvc.service.context import Caller, Services
from hsmsvc.service.keysync import Courier, SyncSettings, start_key_change
from hsmsvc.types import KeyType

__all__ = ["UseMeter"]

log = logging.getLogger("hsmsvc.usage")

ACTOR = "hsmsvc:rotation"
_SYSTEM = Caller(Principal(ACTOR, frozenset({Role.MANAGER}), ("*",)), "rotation", "-")


class UseMeter:
    """Counts uses against the store and starts a new version at the rotation limit."""

    def __init__(self, settings: SyncSettings, courier: Courier | None = None, block: int = 100) -> None:
        self._settings = settings
        self._courier = courier
        self._block = block
        self._lock = threading.Lock()
        self._left: dict[tuple[str, int], int] = {}
        self._due: set[tuple[str, int]] = set()
        # Per key version, when it is due by age: worked out once, not per use.
        self._due_at: dict[tuple[str, int], float] = {}
        self._uses: dict[tuple[str, int], int] = {}
        """Uses per key version since start. Added to without the lock: in a server every
        use case runs on the event loop's one thread."""
        self._services: Services | None = None
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="rotation")

    def attach(self, services: Services) -> None:
        self._services = services

    def close(self) -> None:
        self._worker.shutdown(wait=True)

    def uses(self) -> dict[tuple[str, int], int]:
        """Uses per (key id, version) counted so far: a copy, safe to read from another thread."""
        return self._uses.copy()

    def key_used(self, key: StoredKey, n: int = 1) -> None:
        s = self._services
        if s is None or n <= 0:
            return
        ident = key.ident
        uses = self._uses
        uses[ident] = uses.get(ident, 0) + n
        due = False
        if key.max_uses is not None:
            with self._lock:
                left = self._left.get(ident, 0)
                if left < n:
                    size = max(n, min(self._block, max(1, key.max_uses // 50)))
                    count = s.store.reserve_uses(key.key_id, key.version, size)
                    s.keys.note_uses(key.key_id, key.version, count)
                    left += size
                    due = count >= key.max_uses
                self._left[ident] = left - n
        due_at = self._due_at.get(ident)
        if due_at is None:
            due_at = self._age_limit(key)
            if key.activated_at is not None:  # a pending version is looked at again once active
                self._due_at[ident] = due_at
        if due or (due_at != math.inf and time.time() >= due_at):
            with self._lock:
                if ident in self._due:
                    return
                self._due.add(ident)
            self._worker.submit(self._rotate, key)

    def _age_limit(self, key: StoredKey) -> float:
        """When ``key``'s version is due by age (a POSIX time), or never."""
        rotation = self._settings.rotation.get(key.cryptogram.spec.key_type)
        if rotation is None or rotation.max_age is None or key.activated_at is None:
            return math.inf
        return (key.activated_at + rotation.max_age).timestamp()

    def _rotate(self, key: StoredKey) -> None:
        s = self._services
        assert s is not None
        spec = key.cryptogram.spec
        try:
            if s.store.versions(key.key_id)[-1].version != key.version:
                return  # another server already made the next version
            if spec.zone and s.store.sync_state(spec.zone, "branch") is not None:
                return  # received from the zone's core, which changes it
            if spec.zone and (s.store.sync_state(spec.zone, "core") is not None or self._courier is not None) \
                    and spec.key_type in (KeyType.ZPK, KeyType.MAK, KeyType.DEK):
                start_key_change(s, _SYSTEM, self._settings, spec.zone, [spec.key_type], self._courier)
            elif spec.key_type in (KeyType.TPK, KeyType.TAK):
                s.store.audit(AuditEvent(ACTOR, "key.sign_on_due", key.key_id, key.version,
                                         (("use_count", "limit"),)))
            else:
                s.manager(_SYSTEM).rotate(key.key_id, max_uses=key.max_uses)
            log.info("key rotated at its limit", extra={"key_id": key.key_id, "version": key.version})
        except AlreadyExists:
            return
        except HsmsvcError as e:
            # Retried at the next use past the limit; the hard stop protects meanwhile.
            log.warning("rotation failed", extra={"key_id": key.key_id, "error": str(e)})
            with self._lock:
                self._due.discard((key.key_id, key.version))
