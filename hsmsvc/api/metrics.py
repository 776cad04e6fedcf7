"""Prometheus metrics on their own port: per-method calls, errors, latency, backend health, key use.

Labels carry method names, status codes, key ids and pool member numbers only;
never a PAN or any request data.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from hsmsvc.keys.model import StoredKey

__all__ = ["Metrics"]

_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """One registry per server, so several servers can live in one test process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.calls = Counter("hsmsvc_rpc_calls", "RPCs handled", ["method", "code"], registry=self.registry)
        self.errors = Counter("hsmsvc_rpc_errors", "RPCs that did not end OK", ["method", "code"],
                              registry=self.registry)
        self.latency = Histogram("hsmsvc_rpc_duration_seconds", "RPC handling time", ["method"],
                                 buckets=_BUCKETS, registry=self.registry)
        self.backend_healthy = Gauge("hsmsvc_backend_healthy", "1 if a backend (pool member) answers",
                                     ["member"], registry=self.registry)
        self.key_uses = Counter("hsmsvc_key_uses", "Cryptographic uses of a key version",
                                ["key_id", "version"], registry=self.registry)
        self._server: object | None = None
        # Labelled children, found once: labels() costs more than the increment.
        self._ok: dict[str, tuple[Any, Any]] = {}
        self._uses: dict[tuple[str, int], Any] = {}

    def record(self, method: str, code: str, seconds: float) -> None:
        if code == "OK":
            pair = self._ok.get(method)
            if pair is None:
                pair = self._ok[method] = (self.calls.labels(method, code), self.latency.labels(method))
            pair[0].inc()
            pair[1].observe(seconds)
            return
        self.calls.labels(method, code).inc()
        self.errors.labels(method, code).inc()
        self.latency.labels(method).observe(seconds)

    def key_used(self, key: StoredKey, n: int = 1) -> None:
        if n:
            ident = (key.key_id, key.version)
            child = self._uses.get(ident)
            if child is None:
                child = self._uses[ident] = self.key_uses.labels(key.key_id, str(key.version))
            child.inc(n)

    def serve(self, address: str) -> int:
        """Start the HTTP endpoint; returns the bound port."""
        host, _, port = address.rpartition(":")
        server, _thread = start_http_server(int(port), host or "127.0.0.1", registry=self.registry)
        self._server = server
        return int(server.server_port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()  # type: ignore[attr-defined]
            self._server = None
