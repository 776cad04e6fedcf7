"""Several server processes on one port (SO_REUSEPORT), under one supervisor.

One asyncio process handles every call on one core's worth of Python; the
kernel spreads incoming connections (not calls) over processes bound to the
same port. Workers are started fresh (``python -m hsmsvc serve``), not forked,
because a forked child would share the parent's PKCS#11 session and login
(``docs/platform-notes.md``). The supervisor migrates the store once before any
worker starts, restarts a worker that dies, and passes SIGTERM/SIGINT on so each
worker drains its calls. The supervisor serves the one metrics endpoint, its
workers' figures summed (``api/metrics_files.py``); each worker's own endpoint
listens on loopback only, for the supervisor's /healthz and /readyz questions.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hsmsvc.api.config import ServerConfig
from hsmsvc.errors import InvalidInput

__all__ = ["serve_here", "supervise", "write_ready"]

log = logging.getLogger("hsmsvc.workers")

_START_TIMEOUT = 60.0
_METRICS_DIR = "HSMSVC_WORKER_METRICS_DIR"
_METRICS_ID = "HSMSVC_WORKER_METRICS_ID"
"""Set by the supervisor for each worker: where and under what name it writes its metrics."""


def _split(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise InvalidInput("listen", "host:port")
    return host.strip("[]") or "0.0.0.0", int(port)


def _reserve(host: str, port: int) -> socket.socket:
    """Hold the port (SO_REUSEPORT, not listening) so port 0 means the same port for every worker."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        s.bind((host, port))
    except OSError as e:
        s.close()
        raise InvalidInput(f"listen {host}:{port}", (e.strerror or "cannot bind").lower()) from None
    return s


def _worker_args(argv: list[str], listen: str, metrics: str, ready: Path, index: int) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        name = a.split("=", 1)[0]
        if name in ("--listen", "--metrics-listen", "--ready-file", "--workers"):
            skip = "=" not in a
            continue
        out.append(a)
    return [sys.executable, "-m", "hsmsvc", *out, "--listen", listen, "--metrics-listen", metrics,
            "--ready-file", str(ready), "--workers", "1", "--worker-index", str(index)]


def write_ready(path: str, doc: Mapping[str, Any]) -> None:
    """The ready file, written whole or not at all: a reader never sees half of it."""
    tmp = Path(path + ".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)


def serve_here(cfg: ServerConfig, ready_file: str | None) -> int:
    """One server in this process until SIGTERM or SIGINT; its ports in ``ready_file`` once serving."""
    import asyncio

    from hsmsvc.api.logs import release_stderr, route_stderr
    from hsmsvc.api.server import Running, serve

    def ready(running: Running) -> None:
        if ready_file:
            write_ready(ready_file, {"port": running.port, "metrics_port": running.metrics_port,
                                     "host_port": running.host.port if running.host is not None else None,
                                     "pid": os.getpid(),
                                     "workers": [{"pid": os.getpid(), "metrics_port": running.metrics_port}]})

    directory, ident = os.environ.get(_METRICS_DIR), os.environ.get(_METRICS_ID)
    route_stderr()  # grpc's own lines, as JSON, while serving; the CLI's one-line errors after it as they are
    try:
        asyncio.run(serve(cfg, ready, mirror=(directory, ident) if directory and ident else None))
    finally:
        release_stderr()
    return 0


def supervise(cfg: ServerConfig, argv: list[str], ready_file: str | None) -> int:
    """Run ``cfg.workers`` servers on one port until SIGTERM or SIGINT; restart any that dies."""
    from hsmsvc.api.metrics_files import Supervised
    from hsmsvc.api.server import open_backend
    from hsmsvc.keys.store import KeyStore

    backend = open_backend(cfg, forget=False)  # the workers read the secret again
    try:
        store = KeyStore(cfg.store, backend)
        try:
            if cfg.auto_migrate:
                store.migrate()
            else:
                store.check_schema()
        finally:
            store.close()
    finally:
        backend.close()
    host, port = _split(cfg.listen)
    holder = _reserve(host, port)
    port = holder.getsockname()[1]
    listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    stopping = False

    def stop(_sig: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with tempfile.TemporaryDirectory(prefix="hsmsvc-workers-") as tmp:
        metrics: Supervised | None = None
        metrics_port = None
        if cfg.metrics_listen:
            os.mkdir(Path(tmp) / "metrics", 0o700)
            metrics = Supervised(str(Path(tmp) / "metrics"), cfg.backend.kind, cfg.workers)
            try:
                metrics_port = metrics.endpoint.serve(cfg.metrics_listen)
            except OSError:
                holder.close()
                raise InvalidInput("metrics_listen", f"cannot bind {cfg.metrics_listen}") from None
        runs = 0

        def launch(i: int) -> subprocess.Popen[bytes]:
            nonlocal runs
            runs += 1
            ready = Path(tmp) / f"worker-{i}.json"
            ready.unlink(missing_ok=True)
            env = {**os.environ, _METRICS_DIR: str(Path(tmp) / "metrics"), _METRICS_ID: f"{i}-{runs}"}
            # A worker's own endpoint answers the supervisor's health questions, on loopback.
            p = subprocess.Popen(_worker_args(argv, listen, "127.0.0.1:0" if metrics else "", ready, i),
                                 env=env if metrics else None)
            if metrics is not None:
                metrics.started(i, p.pid, f"{i}-{runs}")
            return p

        def note_ready(i: int) -> dict[str, Any] | None:
            """Worker ``i``'s ready file, once it serves (read whole: write_ready replaces it)."""
            r = Path(tmp) / f"worker-{i}.json"
            if not r.exists():
                return None
            doc: dict[str, Any] = json.loads(r.read_text())
            if metrics is not None:
                metrics.serving(i, doc["metrics_port"])
            return doc

        procs = [launch(i) for i in range(cfg.workers)]
        deadline = time.monotonic() + _START_TIMEOUT
        docs: list[dict[str, Any] | None] = [None] * cfg.workers
        while not all(docs):
            if stopping or any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                for p in procs:
                    p.terminate()
                for p in procs:
                    p.wait()
                if metrics is not None:
                    metrics.endpoint.close()
                print("hsmsvc: a worker failed to start", file=sys.stderr)
                return 1
            docs = [d or note_ready(i) for i, d in enumerate(docs)]
            if metrics is not None:
                metrics.endpoint.heartbeat = time.monotonic()
            time.sleep(0.05)
        holder.close()
        workers = [{"pid": d["pid"], "metrics_port": d["metrics_port"]} for d in docs if d]
        if ready_file:
            write_ready(ready_file, {"port": port, "metrics_port": metrics_port, "pid": os.getpid(),
                                     "host_port": next((d.get("host_port") for d in docs if d), None),
                                     "workers": workers})
        log.info("workers serving", extra={"port": port, "workers": len(procs), "metrics_port": metrics_port})
        waiting: set[int] = set()
        while not stopping:
            if metrics is not None:
                metrics.endpoint.heartbeat = time.monotonic()
            for i, p in enumerate(procs):
                if p.poll() is not None and not stopping:
                    log.warning("worker exited; restarting", extra={"worker": i, "code": p.returncode})
                    if metrics is not None:
                        metrics.exited(i, restart=True)
                    procs[i] = launch(i)
                    waiting.add(i)
            for i in sorted(waiting):
                if note_ready(i) is not None:
                    waiting.discard(i)
            time.sleep(0.2)
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait()
        if metrics is not None:
            metrics.endpoint.close()
    return 0
