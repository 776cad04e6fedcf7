"""Several workers' metrics on one endpoint, through prometheus_client's multiprocess files.

Each worker counts as a single server does (``api/metrics.py``: calls are folded
into plain counters, not a Counter's lock per call) and, every half second and
when it stops, writes its ``hsmsvc_*`` figures into files of its own in a private
directory the supervisor made, in prometheus_client's multiprocess format. The
supervisor serves the one ``/metrics`` page: prometheus_client's
``MultiProcessCollector`` sums counters and histograms over every file, those of
workers that died too, so a count survives its worker's restart (a SIGKILL loses
at most the last half second). Gauges are kept only for live workers
(``mark_process_dead`` when one exits): a health gauge is the lowest any live
worker reports, a busy count their sum. Beside them the supervisor adds its own
``process_*`` and ``python_*`` series, each worker's process figures labelled by
worker index (``hsmsvc_worker_*``), restarts, and the build.
"""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import Metric
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from hsmsvc.api.metrics import BuildInfo, Endpoint, standard_collectors

__all__ = ["INTERVAL", "Mirror", "Supervised"]

INTERVAL: Final = 0.5
"""Seconds between a worker's writes of its figures."""

_GAUGE_MODES: Final = {"hsmsvc_backend_healthy": "livemin", "hsmsvc_store_healthy": "livemin",
                       "hsmsvc_lmk_loaded": "livemin", "hsmsvc_sealed": "livemax"}
"""How live workers' gauges combine; any other gauge is summed (``livesum``)."""
_OWN: Final = ("hsmsvc_build_info",)
"""Series the supervisor reports itself."""


class Mirror:
    """A worker's registry, written to ``directory`` every :data:`INTERVAL` seconds until closed.

    ``ident`` is ``<worker index>-<run>``: its files' name. The worker's garbage collections are
    written too, as ``hsmsvc_worker_python_gc_*{worker}``.
    """

    def __init__(self, registry: CollectorRegistry, directory: str, ident: str) -> None:
        self._registry = registry
        self._directory = directory
        self._ident = ident
        self._worker = ident.partition("-")[0]
        self._files: dict[str, MmapedDict] = {}
        self._written: dict[str, float] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hsmsvc-metrics-files", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL):
            self.write()

    def _file(self, kind: str) -> MmapedDict:
        f = self._files.get(kind)
        if f is None:
            f = self._files[kind] = MmapedDict(os.path.join(self._directory, f"{kind}_{self._ident}.db"))
        return f

    def _put(self, kind: str, key: str, value: float) -> None:
        if self._written.get(key) != value:
            self._file(kind).write_value(key, value, 0.0)
            self._written[key] = value

    def write(self) -> None:
        """Write every ``hsmsvc_*`` sample once (MmapedDict is not thread-safe: one writer at a time)."""
        with self._lock:
            if self._closed:
                return
            for family in self._registry.collect():
                if family.name.startswith("hsmsvc_") and family.name not in _OWN:
                    self._family(family)
                elif family.name.startswith("python_gc_"):
                    self._family(self._labelled(family))

    def _labelled(self, family: Metric) -> Metric:
        """``family`` as ``hsmsvc_worker_<name>{worker}``: the supervisor has its own ``python_*``."""
        out = Metric("hsmsvc_worker_" + family.name, "worker's " + family.documentation, family.type)
        for s in family.samples:
            out.add_sample("hsmsvc_worker_" + s.name, {**s.labels, "worker": self._worker}, s.value)
        return out

    def _family(self, family: Metric) -> None:
        doc, name = family.documentation, family.name
        if family.type == "counter":
            for s in family.samples:
                if s.name.endswith("_total"):
                    self._put("counter", mmap_key(name, s.name, list(s.labels), list(s.labels.values()), doc),
                              s.value)
        elif family.type == "gauge":
            kind = "gauge_" + _GAUGE_MODES.get(name, "livesum")
            for s in family.samples:
                self._put(kind, mmap_key(name, s.name, list(s.labels), list(s.labels.values()), doc), s.value)
        elif family.type == "histogram":
            # The files hold each bucket's own count; the collector adds them up again.
            below: dict[tuple[tuple[str, str], ...], float] = {}
            for s in sorted((s for s in family.samples if s.name.endswith("_bucket")),
                            key=lambda s: float(s.labels["le"])):
                series = tuple((k, v) for k, v in s.labels.items() if k != "le")
                self._put("histogram", mmap_key(name, s.name, list(s.labels), list(s.labels.values()), doc),
                          s.value - below.get(series, 0.0))
                below[series] = s.value
            for s in family.samples:
                if s.name.endswith("_sum"):
                    self._put("histogram", mmap_key(name, s.name, list(s.labels), list(s.labels.values()), doc),
                              s.value)

    def close(self) -> None:
        """Stop, after writing the last figures."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.write()
        with self._lock:
            self._closed = True
            for f in self._files.values():
                f.close()
            self._files.clear()


@dataclass
class _Worker:
    index: int
    pid: int
    ident: str
    metrics_port: int | None = None
    process: ProcessCollector | None = None


class Supervised:
    """The supervisor's endpoint: its workers' figures summed, its own, and health asked of each worker."""

    def __init__(self, directory: str, backend: str, workers: int) -> None:
        self.directory = directory
        self.workers = workers
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)
        standard_collectors(registry)
        registry.register(BuildInfo(backend))
        registry.register(self)
        self.endpoint = Endpoint(registry)
        self.endpoint.readiness = lambda: self._ask("/readyz")
        self.endpoint.liveness = lambda: self._ask("/healthz")
        self._workers: dict[int, _Worker] = {}
        self._restarts: dict[int, int] = {}
        self._lock = threading.Lock()

    def started(self, index: int, pid: int, ident: str) -> None:
        """Worker ``index`` runs as ``pid``, writing its files as ``ident``."""
        with self._lock:
            self._workers[index] = _Worker(index, pid, ident)

    def serving(self, index: int, metrics_port: int | None) -> None:
        """Worker ``index`` serves, its own endpoint (loopback) on ``metrics_port``."""
        with self._lock:
            w = self._workers[index]
            w.metrics_port = metrics_port
            pid = w.pid
            w.process = ProcessCollector(pid=lambda: pid, registry=None)

    def exited(self, index: int, *, restart: bool) -> None:
        """Worker ``index`` is gone: its gauges go; its counts stay in the sums."""
        with self._lock:
            w = self._workers.pop(index, None)
            if restart:
                self._restarts[index] = self._restarts.get(index, 0) + 1
        if w is not None:
            mark_process_dead(w.ident, self.directory)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            workers = sorted(self._workers.values(), key=lambda w: w.index)
            restarts = dict(self._restarts)
        up = Metric("hsmsvc_workers_up", "worker processes serving", "gauge")
        up.add_sample("hsmsvc_workers_up", {}, sum(1 for w in workers if w.process is not None))
        configured = Metric("hsmsvc_workers", "worker processes configured (workers = N)", "gauge")
        configured.add_sample("hsmsvc_workers", {}, self.workers)
        again = Metric("hsmsvc_worker_restarts", "workers restarted after they exited", "counter")
        for index in sorted(restarts):
            again.add_sample("hsmsvc_worker_restarts_total", {"worker": str(index)}, restarts[index])
        out: dict[str, Metric] = {}
        for w in workers:
            if w.process is None:
                continue
            for family in w.process.collect():  # /proc/<pid>: gone between the listing and here is no error
                name = "hsmsvc_worker_" + family.name.removeprefix("process_")
                m = out.setdefault(name, Metric(name, "worker's " + family.documentation, family.type))
                for s in family.samples:
                    m.add_sample("hsmsvc_worker_" + s.name.removeprefix("process_"),
                                 {**s.labels, "worker": str(w.index)}, s.value)
        yield from (up, configured, again, *out.values())

    def _ask(self, path: str) -> tuple[bool, str]:
        """Every serving worker's answer on ``path``: fine only if there is one and all are fine."""
        with self._lock:
            ports = [(w.index, w.metrics_port) for w in self._workers.values() if w.metrics_port is not None]
        answered = 0
        for index, port in sorted(ports):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1.0) as r:
                    r.read()
            except urllib.error.HTTPError as e:
                return False, f"worker {index}: {e.read().decode(errors='replace').strip()}"
            except OSError:
                continue  # exited since it was listed: the supervisor restarts it
            answered += 1
        if not answered:
            return False, "not ready: no worker serving"
        return True, "ready" if path == "/readyz" else "ok"
