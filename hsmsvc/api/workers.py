"""Several server processes on one port (SO_REUSEPORT), under one supervisor.

One asyncio process handles every call on one core's worth of Python; the
kernel spreads incoming connections (not calls) over processes bound to the
same port. Workers are started fresh (``python -m hsmsvc serve``), not forked,
because a forked child would share the parent's PKCS#11 session and login
(``docs/platform-notes.md``). The supervisor migrates the store once before any
worker starts, restarts a worker that dies, and passes SIGTERM/SIGINT on so each
worker drains its calls.
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

    from hsmsvc.api.server import Running, serve

    def ready(running: Running) -> None:
        if ready_file:
            write_ready(ready_file, {"port": running.port, "metrics_port": running.metrics_port,
                                     "pid": os.getpid(),
                                     "workers": [{"pid": os.getpid(), "metrics_port": running.metrics_port}]})

    asyncio.run(serve(cfg, ready))
    return 0


def supervise(cfg: ServerConfig, argv: list[str], ready_file: str | None) -> int:
    """Run ``cfg.workers`` servers on one port until SIGTERM or SIGINT; restart any that dies."""
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
    mhost, mport = _split(cfg.metrics_listen) if cfg.metrics_listen else ("", 0)
    stopping = False

    def stop(_sig: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with tempfile.TemporaryDirectory(prefix="hsmsvc-workers-") as tmp:
        def launch(i: int) -> subprocess.Popen[bytes]:
            metrics = f"{mhost}:{mport + i if mport else 0}" if cfg.metrics_listen else ""
            ready = Path(tmp) / f"worker-{i}.json"
            ready.unlink(missing_ok=True)
            return subprocess.Popen(_worker_args(argv, listen, metrics, ready, i))

        procs = [launch(i) for i in range(cfg.workers)]
        deadline = time.monotonic() + _START_TIMEOUT
        readies = [Path(tmp) / f"worker-{i}.json" for i in range(cfg.workers)]
        while not all(r.exists() for r in readies):
            if stopping or any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                for p in procs:
                    p.terminate()
                for p in procs:
                    p.wait()
                print("hsmsvc: a worker failed to start", file=sys.stderr)
                return 1
            time.sleep(0.05)
        holder.close()
        workers = [{k: json.loads(r.read_text())[k] for k in ("pid", "metrics_port")} for r in readies]
        if ready_file:
            doc = {"port": port, "metrics_port": workers[0]["metrics_port"], "pid": os.getpid(),
                   "workers": workers}
            write_ready(ready_file, doc)
        log.info("workers serving", extra={"port": port, "workers": len(procs)})
        while not stopping:
            for i, p in enumerate(procs):
                if p.poll() is not None and not stopping:
                    log.warning("worker exited; restarting", extra={"worker": i, "code": p.returncode})
                    procs[i] = launch(i)
            time.sleep(0.2)
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait()
    return 0
