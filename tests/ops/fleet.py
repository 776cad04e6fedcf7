"""Several ``hsmsvc serve`` replicas on one database, and haproxy in front of them, for the scale-out tests.

Each replica is a real server process with its own config directory (``launch``
from tests/api/conftest.py), all sharing one sealed LMK file and one store, as
machines behind a load balancer do. haproxy runs in TCP mode: it passes the TLS
bytes through, so mTLS stays end to end between the SDK and the replica, and it
health-checks each replica's ``/readyz`` on its metrics port.
"""

from __future__ import annotations

import csv
import io
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from tests.api.conftest import POLICY, launch
from tests.hsm.components_env import require_or_skip
from tools.bench.pki import Identity
from tools.bench.pki import ThrowawayCA as TestCA

__all__ = ["Attempts", "Balancer", "Replica", "start_replicas"]


@dataclass
class Replica:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    metrics_port: int
    log: Path


def start_replicas(root: Path, n: int, *, url: str, sealed_file: Path, srv: Identity, ca: TestCA,
                   extra: str = "") -> list[Replica]:
    """``n`` servers on ``url``, started side by side (each waits for its ready file)."""

    def one(i: int) -> Replica:
        d = root / f"replica-{i}"
        d.mkdir()
        (d / "policy.toml").write_text(POLICY)
        proc, info = launch(d, url, sealed_file, srv, ca, extra)
        return Replica(f"r{i}", proc, info["port"], info["metrics_port"], d / "server.log")

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Balancer:
    """haproxy, TCP mode, round-robin over ``replicas``; ``address`` is where clients connect.

    A replica is taken out after one failed ``/readyz`` check (every 200 ms) and put back after
    two good ones; a connection refused by a dead replica is sent to another (``redispatch``).
    """

    def __init__(self, work: Path, replicas: list[Replica]) -> None:
        require_or_skip(shutil.which("haproxy") is not None, "haproxy",
                        "apt-get install haproxy (`.ci/run` does)")
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.sock = work / "haproxy.sock"
        servers = "".join(f"    server {r.name} 127.0.0.1:{r.port} check port {r.metrics_port}\n" for r in replicas)
        cfg = work / "haproxy.cfg"
        cfg.write_text(f"""global
    maxconn 1024
    nbthread 1
    stats socket {self.sock} mode 600 level admin
defaults
    mode tcp
    timeout connect 1s
    timeout client 60s
    timeout server 60s
    retries 3
    option redispatch 1
frontend grpc
    bind {self.address}
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 200ms fall 1 rise 2
{servers}""")
        self.log = work / "haproxy.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(cfg)], stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        names = {r.name for r in replicas}
        # Until haproxy answers on its stats socket (so it has bound its front port) with every replica UP.
        while {n for n, s in self.servers().items() if s["status"] == "UP"} != names:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"haproxy did not start:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.05)

    def servers(self) -> dict[str, dict[str, str]]:
        """``show stat`` for the backend's servers, by name (status, stot: connections sent, ...)."""
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(self.sock))
                s.sendall(b"show stat\n")
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
        except OSError:
            return {}
        rows = csv.DictReader(io.StringIO(data.decode().removeprefix("# ")))
        return {r["svname"]: r for r in rows if r["pxname"] == "replicas" and r["svname"] not in ("BACKEND",)}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Attempts(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Counts every attempt's status, retries included (the SDK's loop sits above the interceptor)."""

    def __init__(self, clock: Callable[[], str]) -> None:
        self.codes: Counter[tuple[str, str]] = Counter()
        self.details: Counter[str] = Counter()
        """What the attempts that were not OK said, as the SDK's retries saw them."""
        self._clock = clock
        self._lock = threading.Lock()

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        outcome = continuation(details, request)
        code = outcome.code()
        with self._lock:
            self.codes[(self._clock(), code.name)] += 1
            if code is not grpc.StatusCode.OK:
                self.details[f"{code.name}: {outcome.details()}"] += 1
        return outcome
