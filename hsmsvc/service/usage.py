"""Key use counting and rotation by use count or age (bank design 004 clause 7.1.1).

Uses of every key, limited or not, are counted in the store, reserved a block
at a time ahead of use, off the request path, so the hot path writes nothing
and servers sharing a database never count a use twice (a reserved block counts
as used: the count errs high, never low, if the process dies; a clean shutdown
gives back what it reserved and did not use, so the count is then exact). When
a key version nears its rotation limit (early enough, at its measured rate of
use, that the next version serves before the limit: ``service/rotation.py``),
a new version is made off the request path:

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
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from hsmsvc.hsm import policy
from hsmsvc.errors import AlreadyExists, HsmsvcError
from hsmsvc.keys.model import AuditEvent, StoredKey
from hsmsvc.loopguard import may_block
from hsmsvc.service.authz import Principal, Role
from hsmsvc.service.context import Caller, Services
from hsmsvc.service.keysync import Courier, SyncSettings, start_key_change
from hsmsvc.service.rotation import UseRate, check_settings, lead_seconds
from hsmsvc.types import KeyType

__all__ = ["UseMeter"]

log = logging.getLogger("hsmsvc.usage")

ACTOR = "hsmsvc:rotation"
_SYSTEM = Caller(Principal(ACTOR, frozenset({Role.MANAGER}), ("*",)), "rotation", "-")


class _Count:
    """One key version's counting in this process. Its fields change under the meter's lock."""

    __slots__ = ("uses", "left", "refilling", "reserving", "rate", "due_at", "warned")

    def __init__(self) -> None:
        self.uses = 0
        """Uses since start, exactly."""
        self.left = 0
        """Uses reserved in the store and not yet made; below 0, uses made and not yet reserved."""
        self.refilling = False
        self.reserving = threading.Lock()
        """Held across a store reservation, so one version reserves one block at a time."""
        self.rate = UseRate()
        self.due_at: float | None = None
        """When the version is due by age (POSIX time), worked out once it is active."""
        self.warned = False


class UseMeter:
    """Counts uses against the store and starts a new version in time for the rotation limit.

    Thread-safe: a use takes the meter's lock for a few dict and integer updates
    only. The store is written once per block of uses, off the request path (a
    worker refills a version's block when half of it is gone), except when a
    limited version has used up its block before the refill landed: that use
    reserves the next block itself, because the hard stop reads the count.
    """

    def __init__(self, settings: SyncSettings, courier: Courier | None = None, block: int = 100) -> None:
        for warning in check_settings(settings):
            log.warning("rotation cannot keep up", extra={"detail": warning})
        self._settings = settings
        self._courier = courier
        self._block = block
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, int], _Count] = {}
        self._keys: dict[tuple[str, int], StoredKey] = {}
        self._due: set[tuple[str, int]] = set()
        self._rates: dict[str, float] = {}
        """The last known rate of use per key id, for its next version's first second."""
        self._services: Services | None = None
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="rotation")
        self._counter = ThreadPoolExecutor(1, thread_name_prefix="use-count")

    def attach(self, services: Services) -> None:
        self._services = services

    def close(self) -> None:
        """Finish pending work, then make the store's counts exact: unused reservations go back."""
        self._worker.shutdown(wait=True)
        self._counter.shutdown(wait=True)
        self.flush()

    def flush(self) -> None:
        """Bring every version's store count to exactly the uses made: give back what was reserved
        and not used, add what was used and not yet reserved."""
        s = self._services
        if s is None:
            return
        with self._lock:
            items = [(self._keys[i], c) for i, c in self._counts.items()]
        for key, c in items:
            with c.reserving:
                with self._lock:
                    left, c.left = c.left, 0
                if left == 0:
                    continue
                try:
                    s.store.reserve_uses(key.key_id, key.version, -left)
                except HsmsvcError as e:
                    with self._lock:
                        c.left += left
                    log.warning("use count not written", extra={"key_id": key.key_id, "error": str(e)})

    def uses(self) -> dict[tuple[str, int], int]:
        """Uses per (key id, version) counted so far: a copy, safe to read from another thread."""
        with self._lock:
            return {i: c.uses for i, c in self._counts.items()}

    def key_used(self, key: StoredKey, n: int = 1) -> None:
        self.keys_used((key,), n)

    def keys_used(self, keys: Sequence[StoredKey], n: int = 1) -> None:
        """Count ``n`` uses of each of a call's keys: all of them, or, on the event loop when
        one must wait for the store, none (``loopguard``: the call runs again off the loop)."""
        if self._services is None or n <= 0:
            return
        counts = self._counts
        for key in keys:
            if key.max_uses is not None:
                c = counts.get(key.ident)  # read without the lock: _used checks again under it
                if c is None or c.left < n:
                    may_block()
        for key in keys:
            self._used(key, n)

    def _used(self, key: StoredKey, n: int) -> None:
        s = self._services
        assert s is not None
        ident = key.ident
        with self._lock:
            c = self._counts.get(ident)
            if c is None:
                c = self._counts[ident] = _Count()
                self._keys[ident] = key
            short = c.left < n and key.max_uses is not None
            if not short:
                c.uses += n
                c.left -= n
            refill = not short and not c.refilling and c.left < self._size(key, c) // 2
            if refill:
                c.refilling = True
        if short:
            # The hard stop reads this count: have it from the store before answering. That
            # waits (on the store, or on a refill holding the key's reservation), so on the
            # event loop it stops here, before counting, and the call runs again off it.
            may_block()
            with self._lock:
                c.uses += n
                c.left -= n
            self._reserve(key, c, 0)
        elif refill:
            try:
                self._counter.submit(self._refill, key, c)
            except RuntimeError:  # closing: flush() counts what is left
                with self._lock:
                    c.refilling = False
        due_at = c.due_at
        if due_at is None:
            due_at = self._age_limit(key)
            if key.activated_at is not None:  # a pending version is looked at again once active
                c.due_at = due_at
        if due_at != math.inf and time.time() >= due_at:
            self._start(key)

    def _size(self, key: StoredKey, c: _Count) -> int:
        """A reservation block: small against a use limit, so the count it reports stays close;
        for an unlimited version, about a second of its use and at least ten blocks, so the store
        sees at most a write a second, and one in a thousand uses for a key little used."""
        if key.max_uses is not None:
            return min(self._block, max(1, key.max_uses // 50))
        return min(max(10 * self._block, int(c.rate.value or 0)), 100 * self._block)

    def _refill(self, key: StoredKey, c: _Count) -> None:
        try:
            while True:
                self._reserve(key, c, self._size(key, c) // 2)
                with self._lock:
                    # Uses made during the write found a refill running and asked for none: look again.
                    if c.left >= self._size(key, c) // 2:
                        c.refilling = False
                        return
        except HsmsvcError as e:
            # Counted at the next refill or at close: the uses not reserved stay in ``left``.
            log.warning("use count not reserved", extra={"key_id": key.key_id, "error": str(e)})
        with self._lock:
            c.refilling = False

    def _reserve(self, key: StoredKey, c: _Count, enough: int) -> None:
        """Reserve the next block (and any uses made beyond the last) unless ``left`` is ``enough``."""
        s = self._services
        assert s is not None
        with c.reserving:
            with self._lock:
                if c.left >= enough:
                    return
                size = max(self._size(key, c), -c.left)
            count = s.store.reserve_uses(key.key_id, key.version, size)
            with self._lock:
                c.left += size
                rate = c.rate.observe(time.monotonic(), count)
                # A new version starts at its predecessor's rate until its own is known.
                if rate is None:
                    rate = self._rates.get(key.key_id)
                else:
                    self._rates[key.key_id] = rate
        if key.max_uses is None:
            return
        s.keys.note_uses(key.key_id, key.version, count)
        spec = key.cryptogram.spec
        lead = lead_seconds(self._settings, spec.key_type, spec.zone)
        expected = count + (rate or 0.0) * lead
        if rate is not None and rate * lead > key.max_uses and not c.warned:
            c.warned = True
            log.warning("rotation cannot keep the use limit", extra={
                "key_id": key.key_id, "version": key.version, "uses_per_second": round(rate, 1),
                "activation_delay_seconds": lead - self._settings.rotation_margin.total_seconds(),
                "lead_seconds": lead, "max_uses": key.max_uses, "hard_stop": 2 * key.max_uses,
                "uses_during_lead": round(rate * lead)})
        if expected >= key.max_uses:
            self._start(key, (("use_count", count), ("uses_per_second", round(rate or 0.0, 1)),
                              ("lead_seconds", lead)))

    def _start(self, key: StoredKey, why: tuple[tuple[str, object], ...] = (("age", "due"),)) -> None:
        """Make ``key``'s next version off the request path, once per version."""
        with self._lock:
            if key.ident in self._due:
                return
            self._due.add(key.ident)
        log.info("key replacement due", extra={"key_id": key.key_id, "version": key.version, **dict(why)})
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
                start_key_change(s, _SYSTEM, settings=self._settings, zone=spec.zone, key_types=[spec.key_type],
                                 courier=self._courier)
            elif spec.key_type in (KeyType.TPK, KeyType.TAK):
                s.store.audit(AuditEvent(ACTOR, "key.sign_on_due", key.key_id, key.version,
                                         (("use_count", "limit"),)))
            elif spec.key_type in (KeyType.SIG, KeyType.CSK) or spec.key_type in policy.NOT_ROTATED:
                # A new signature pair needs its certificate, a new two-party key the client's share:
                # an officer's or the client's to make, so the limit is recorded, not acted on; a
                # new BDK, CVK or IMK means injecting its terminals or issuing its cards anew.
                s.store.audit(AuditEvent(ACTOR, "key.renewal_due", key.key_id, key.version,
                                         (("use_count", "limit"),)))
            else:
                s.manager(_SYSTEM).rotate(key.key_id, max_uses=key.max_uses)
            log.info("key replacement started", extra={"key_id": key.key_id, "version": key.version})
        except AlreadyExists:
            return
        except HsmsvcError as e:
            # Retried at the next use past the limit; the hard stop protects meanwhile.
            log.warning("rotation failed", extra={"key_id": key.key_id, "error": str(e)})
            with self._lock:
                self._due.discard((key.key_id, key.version))
