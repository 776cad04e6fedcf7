"""The health monitor: store and backend probed every second, driving gRPC health, /readyz and gauges.

Probes run on threads of their own, never on the event loop, each with a
timeout: a database or HSM that hangs makes its probe late, which counts as
down, and never delays a call. A probe still hung at the next round is not
started again beside itself; it counts as down until it returns.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeVar

from grpc_health.v1 import health, health_pb2

from hsmsvc.api.metrics import Metrics
from hsmsvc.errors import HsmsvcError
from hsmsvc.hsm.backend import Backend
from hsmsvc.hsm.commands import Random
from hsmsvc.keys.store import KeyStore

__all__ = ["Monitor", "Readiness"]

log = logging.getLogger("hsmsvc.health")
T = TypeVar("T")

_SERVING: Final = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING: Final = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass(frozen=True)
class Readiness:
    """What the last probes found. Ready, and SERVING, only when all three hold."""

    store: bool
    backend: bool
    lmk: bool

    @property
    def ready(self) -> bool:
        return self.store and self.backend and self.lmk

    def reason(self) -> str:
        """A short plain-text answer for /readyz: names only, nothing from the request or the keys."""
        down = [what for ok, what in ((self.store, "store unreachable"), (self.backend, "backend unhealthy"),
                                      (self.lmk, "LMK not loaded")) if not ok]
        return "ready" if not down else "not ready: " + ", ".join(down)

    def changes(self, before: Readiness) -> list[str]:
        """What changed since ``before``, e.g. ``["store down"]``."""
        return [f"{name} {'up' if now else 'down'}"
                for name, now, was in (("store", self.store, before.store), ("backend", self.backend, before.backend),
                                       ("lmk", self.lmk, before.lmk))
                if now != was]


class Monitor:
    """Probes every ``interval`` seconds, each given ``timeout`` seconds; see the module's docstring."""

    def __init__(
        self,
        store: KeyStore,
        backend: Backend,
        metrics: Metrics,
        health_servicer: health.aio.HealthServicer,
        services: tuple[str, ...],
        *,
        interval: float = 1.0,
        timeout: float = 2.0,
    ) -> None:
        self._store = store
        self._backend = backend
        self._metrics = metrics
        self._health = health_servicer
        self._services = services
        self.interval = interval
        self.timeout = timeout
        # The server has just migrated the store and read the LMK's KCV: it starts ready.
        self.current = Readiness(True, True, True)
        self._threads = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="hsmsvc-probe")
        self._pending: dict[str, concurrent.futures.Future[object]] = {}
        metrics.store_healthy.set(1)
        metrics.lmk_loaded.set(1)

    async def run(self) -> None:
        """Probe until cancelled."""
        try:
            while True:
                await self.probe()
                await asyncio.sleep(self.interval)
        finally:
            self._threads.shutdown(wait=False, cancel_futures=True)

    async def probe(self) -> Readiness:
        """One round: both probes at once, then gauges, gRPC health and a WARN line on a change."""
        store_ok, backend = await asyncio.gather(self._run("store", self._probe_store),
                                                 self._run("backend", self._probe_backend))
        # A backend probe that hangs says nothing about the LMK: that stays as last seen.
        members, lmk_ok = backend if backend is not None else ([("0", False)], self.current.lmk)
        for name, ok in members:
            self._metrics.backend_healthy.labels(name).set(1 if ok else 0)
        now = Readiness(store_ok is True, any(ok for _, ok in members), lmk_ok)
        self._metrics.store_healthy.set(1 if now.store else 0)
        self._metrics.lmk_loaded.set(1 if now.lmk else 0)
        before, self.current = self.current, now
        changed = now.changes(before)
        if changed:
            log.warning("health changed: " + ", ".join(changed),
                        extra={"store": now.store, "backend": now.backend, "lmk": now.lmk, "serving": now.ready})
        if now.ready != before.ready:
            for n in ("", *self._services):
                await self._health.set(n, _SERVING if now.ready else _NOT_SERVING)
        return now

    async def _run(self, kind: str, probe: Callable[[], T]) -> T | None:
        """``probe()`` on a probe thread within the timeout; None if it failed, timed out or still hangs."""
        pending = self._pending.get(kind)
        if pending is not None and not pending.done():
            return None  # the last one still hangs: still down, and no second one beside it
        fut = self._threads.submit(probe)
        self._pending[kind] = fut  # type: ignore[assignment]
        try:
            return await asyncio.wait_for(asyncio.wrap_future(fut), self.timeout)
        except (asyncio.TimeoutError, HsmsvcError):
            return None
        except Exception as e:  # a probe must never end the monitor; the class is enough to look further
            log.warning("health probe failed", extra={"probe": kind, "error": type(e).__name__})
            return None

    def _probe_store(self) -> bool:
        self._store.ping()
        return True

    def _probe_backend(self) -> tuple[list[tuple[str, bool]], bool]:
        """Per member, whether it answers; and whether the LMK is loaded (its KCV is known)."""
        stats = getattr(self._backend, "stats", None)
        if stats is not None:
            members = [(str(s.index), bool(s.healthy)) for s in stats()]
        else:
            try:
                self._backend.execute(Random(length=8))
                members = [("0", True)]
            except HsmsvcError:
                members = [("0", False)]
        try:
            lmk = bool(self._backend.lmk_kcv())
        except HsmsvcError:
            lmk = False
        return members, lmk
