"""Prometheus metrics on their own port: per-method calls, errors, latency, store and backend health,
key use, the process's own figures and the build; and, on the same port, ``/healthz`` and
``/readyz`` for load balancers and Kubernetes.

Labels carry method names, status codes, executor lanes and pool member numbers only: every label
has a bounded set of values, and none is a key id, a PAN or any request data (uses per key are in
the key report, not here). The port is plain HTTP without authentication (a load balancer's probe
has no client certificate), so it answers nothing but these figures and, from /readyz, which of
store, backend and LMK is not ready. Under a supervisor of several workers, each worker's figures
are written to files that the supervisor's one endpoint sums (``api/metrics_files.py``).
"""

from __future__ import annotations

import bisect
import platform
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, GCCollector, Gauge, PlatformCollector, ProcessCollector, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer

import hsmsvc

__all__ = ["BEAT", "STALLED", "BuildInfo", "Endpoint", "Metrics", "standard_collectors"]

BEAT: Final = 0.25
"""Seconds between the event loop's heartbeats."""
STALLED: Final = 2.0
"""A heartbeat older than this answers /healthz and /readyz 503."""

_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class _Counts:
    """Calls, errors and latency as plain counters, read out when scraped, with key uses.

    prometheus_client's Counter and Histogram take a lock and walk the buckets
    on every increment: five of them per call were a tenth of a PIN
    translation's own time. Here a call appends its method, code and time to a
    deque; they are folded into the counters together, at a scrape or every
    ``fold_at`` calls. The exposition is the same.
    """

    def __init__(self, fold_at: int = 1024) -> None:
        self._lock = threading.Lock()
        self._fold_at = fold_at
        self._pending: deque[tuple[str, str, float]] = deque()
        self._calls: dict[tuple[str, str], int] = {}
        self._hist: dict[str, list[float]] = {}
        """method -> count per bucket (not cumulative), then +Inf, then the sum."""
        self.key_uses: Callable[[], Mapping[tuple[str, int], int]] = dict
        """Where key uses are counted (the use meter's :meth:`~hsmsvc.service.usage.UseMeter.uses`);
        only their sum is reported: a label per key would grow with every terminal's key."""
        self.audit_failures: Callable[[], Mapping[str, int]] = lambda: {"anchor": 0, "checkpoint": 0}
        """Audit anchor and checkpoint writes that failed, by stage (the store's audit chain)."""

    def record(self, method: str, code: str, seconds: float) -> None:
        pending = self._pending
        pending.append((method, code, seconds))
        if len(pending) >= self._fold_at:
            self._fold()

    def _fold(self) -> None:
        # Drained from the left while calls append on the right: none is lost or counted twice.
        pending, calls, hists, buckets = self._pending, self._calls, self._hist, len(_BUCKETS) + 2
        with self._lock:
            while True:
                try:
                    method, code, seconds = pending.popleft()
                except IndexError:
                    return
                ident = (method, code)
                calls[ident] = calls.get(ident, 0) + 1
                h = hists.get(method)
                if h is None:
                    h = hists[method] = [0.0] * buckets
                h[bisect.bisect_left(_BUCKETS, seconds)] += 1
                h[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        self._fold()
        with self._lock:
            calls, hist = dict(self._calls), {m: list(h) for m, h in self._hist.items()}
        uses = self.key_uses()
        total = CounterMetricFamily("hsmsvc_rpc_calls", "RPCs handled", labels=["code", "method"])
        errors = CounterMetricFamily("hsmsvc_rpc_errors", "RPCs that did not end OK", labels=["code", "method"])
        for (method, code), n in sorted(calls.items()):
            total.add_metric([code, method], n)
            if code != "OK":
                errors.add_metric([code, method], n)
        latency = HistogramMetricFamily("hsmsvc_rpc_duration_seconds", "RPC handling time", labels=["method"])
        for method, h in sorted(hist.items()):
            buckets, running = [], 0.0
            for bound, count in zip((*map(str, _BUCKETS), "+Inf"), h[:-1]):
                running += count
                buckets.append((bound, running))
            latency.add_metric([method], buckets, h[-1])
        key_uses = CounterMetricFamily("hsmsvc_key_uses", "Cryptographic uses of keys (all keys)",
                                       value=sum(uses.values()))
        audit = CounterMetricFamily("hsmsvc_audit_write_failures",
                                    "audit anchor or checkpoint writes that failed after their row committed",
                                    labels=["stage"])
        for stage, n in sorted(self.audit_failures().items()):
            audit.add_metric([stage], n)
        yield from (total, errors, latency, key_uses, audit)


@dataclass(frozen=True)
class BuildInfo:
    """``hsmsvc_build_info{version, python, backend} 1``: what is running, for dashboards and upgrades."""

    backend: str
    version: str = hsmsvc.__version__
    python: str = platform.python_version()

    def collect(self) -> Iterator[Metric]:
        g = GaugeMetricFamily("hsmsvc_build_info", "hsmsvc's version, the Python running it and the backend kind",
                              labels=["version", "python", "backend"])
        g.add_metric([self.version, self.python, self.backend], 1)
        yield g


def standard_collectors(registry: CollectorRegistry) -> None:
    """This process's ``process_*`` (CPU, memory, file descriptors, start time) and ``python_*``
    (interpreter version, garbage collections) series."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)


class Endpoint:
    """The HTTP endpoint: ``/metrics`` from a registry, ``/healthz`` and ``/readyz``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.heartbeat = time.monotonic()
        """Set every :data:`BEAT` seconds by the loop that serves (``api/server.py``), or by a
        supervisor's own loop: a stale one is a frozen loop."""
        self.readiness: Callable[[], tuple[bool, str]] = lambda: (False, "not ready: starting")
        """What /readyz answers: ready or not, and why (the health monitor's last finding)."""
        self.liveness: Callable[[], tuple[bool, str]] = lambda: (True, "ok")
        """What /healthz answers while the heartbeat is fresh (a supervisor asks its workers)."""
        self._server: WSGIServer | None = None

    def serve(self, address: str) -> int:
        """Start the HTTP endpoint (prometheus_client's server, with our two paths); returns the bound port."""
        host, _, port = address.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        family = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]

        class Server(ThreadingWSGIServer):
            address_family = family

        server = make_server(host, int(port), self._app(make_wsgi_app(self.registry)), Server, _Quiet)
        threading.Thread(target=server.serve_forever, name="hsmsvc-metrics", daemon=True).start()
        self._server = server
        return int(server.server_port)

    def _app(self, metrics: Any) -> Any:
        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            path = environ.get("PATH_INFO", "")
            if path in ("/healthz", "/readyz") and time.monotonic() - self.heartbeat > STALLED:
                # This thread answers even when the event loop that serves calls is stuck.
                return _plain(start_response, 503, "not live: event loop stalled")
            if path == "/healthz":
                live, reason = self.liveness()
                return _plain(start_response, 200 if live else 503, reason)
            if path == "/readyz":
                ready, reason = self.readiness()
                return _plain(start_response, 200 if ready else 503, reason)
            return metrics(environ, start_response)  # type: ignore[no-any-return]

        return app

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class Metrics(Endpoint):
    """One registry per server, so several servers can live in one test process."""

    def __init__(self, backend: str = "soft") -> None:
        super().__init__(CollectorRegistry())
        self._counts = _Counts()
        self.registry.register(self._counts)
        self.registry.register(BuildInfo(backend))
        standard_collectors(self.registry)
        self.backend_healthy = Gauge("hsmsvc_backend_healthy", "1 if a backend (pool member) answers",
                                     ["member"], registry=self.registry)
        self.store_healthy = Gauge("hsmsvc_store_healthy", "1 if the key store's database answers",
                                   registry=self.registry)
        self.lmk_loaded = Gauge("hsmsvc_lmk_loaded", "1 if the backend holds the LMK (0 while sealed)",
                                registry=self.registry)
        self.record = self._counts.record
        self._mirror: Any = None

    def count_busy(self, lanes: Mapping[str, Callable[[], int]]) -> None:
        """``hsmsvc_executor_busy{lane}``: calls running on or waiting for each executor lane."""
        gauge = Gauge("hsmsvc_executor_busy", "calls running on, or waiting for, an executor lane's threads",
                      ["lane"], registry=self.registry)
        for lane, busy in lanes.items():
            gauge.labels(lane).set_function(busy)

    def count_key_uses(self, source: Callable[[], Mapping[tuple[str, int], int]]) -> None:
        """Report the sum of ``source()``, uses per (key id, version), as ``hsmsvc_key_uses_total``."""
        self._counts.key_uses = source

    def count_audit_failures(self, source: Callable[[], Mapping[str, int]]) -> None:
        """Report ``source()``, failed audit anchor and checkpoint writes by stage, as
        ``hsmsvc_audit_write_failures_total{stage}``."""
        self._counts.audit_failures = source

    def mirror_to(self, directory: str, ident: str) -> None:
        """Write these figures every half second into ``directory``, where a supervisor sums its
        workers' (``api/metrics_files.py``); ``ident`` names this worker's run there."""
        from hsmsvc.api.metrics_files import Mirror

        self._mirror = Mirror(self.registry, directory, ident)
        self._mirror.start()

    def close(self) -> None:
        if self._mirror is not None:
            self._mirror.close()  # the last figures, written before the process exits
            self._mirror = None
        super().close()


def _plain(start_response: Callable[..., Any], code: int, text: str) -> list[bytes]:
    body = (text + "\n").encode()
    start_response("200 OK" if code == 200 else "503 Service Unavailable",
                   [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
                    ("Cache-Control", "no-store")])
    return [body]


class _Quiet(WSGIRequestHandler):
    """No line on stderr per request (a probe every second would fill the log)."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        return None
