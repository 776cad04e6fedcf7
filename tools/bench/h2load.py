"""Drive a gRPC method with h2load (Debian nghttp2-client) and read its figures.

h2load speaks HTTP/2 in C, so the load generator costs a fraction of what a
Python client would (docs/platform-notes.md: a Python client takes half of a
2-core machine). It sends a prepared body (gRPC length-prefixed messages) with
the two headers gRPC needs. It cannot read gRPC trailers, so whether calls
succeeded is counted on the server (its metrics) and checked once per run with
a real gRPC client before the load starts.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["GRPC_HEADERS", "Load", "Result", "available", "run"]

GRPC_HEADERS = ("--header=content-type:application/grpc", "--header=te:trailers")
"""The two headers a gRPC server needs besides the body, as h2load options."""


@dataclass(frozen=True)
class Load:
    """How many requests are in flight: ``connections`` x ``streams`` per connection."""

    connections: int
    streams: int

    @property
    def in_flight(self) -> int:
        return self.connections * self.streams

    @classmethod
    def of(cls, concurrency: int, max_connections: int = 16) -> "Load":
        # SO_REUSEPORT spreads connections, not calls, over worker processes: with
        # 4 connections a 2-worker server was often split 3:1 or 4:0 and ratios swung
        # by 20 points from run to run; 16 keep both servers' shares near even.
        c = min(concurrency, max_connections)
        while concurrency % c:
            c -= 1
        return cls(c, concurrency // c)


@dataclass(frozen=True)
class Result:
    requests: int
    """Requests that completed with HTTP 200 within the measured period."""
    failed: int
    """Requests h2load counts as failed, errored or timed out."""
    seconds: float
    per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    starts: int = 1
    """How many times h2load was started before its connections were spread evenly."""


def available() -> bool:
    return shutil.which("h2load") is not None


def _percentile(sorted_values: list[int], q: float) -> float:
    if not sorted_values:
        return 0.0
    i = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values)) - 1))
    return sorted_values[i] / 1000.0


def run(url: str, body: bytes, load: Load, duration: float, warm_up: float = 1.0,
        even: Callable[[], bool] | None = None, tries: int = 30) -> Result:
    """Send ``body`` to ``url`` for ``duration`` seconds after a warm-up.

    ``even``, asked once the connections are up (within the warm-up), says whether
    they are spread evenly over the server's workers; if not, h2load starts again,
    up to ``tries`` times in all (:attr:`Result.starts` says how many it took).
    """
    with tempfile.TemporaryDirectory(prefix="hsmsvc-h2load-") as tmp:
        data, log = Path(tmp) / "body", Path(tmp) / "log"
        data.write_bytes(body)
        cmd = ["h2load", *GRPC_HEADERS,
               "-d", str(data), "-c", str(load.connections), "-m", str(load.streams),
               "-D", f"{round(duration * 1000)}ms", "--warm-up-time", f"{round(warm_up * 1000)}ms",
               "--log-file", str(log), url]
        starts = 0
        while True:
            starts += 1
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            if even is not None and starts < tries:
                time.sleep(min(0.3, warm_up / 2))
                if not even():
                    proc.kill()
                    proc.communicate()
                    continue
            try:
                stdout, stderr = proc.communicate(timeout=duration + warm_up + 60)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise RuntimeError("h2load did not finish") from None
            break
        out = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
        if out.returncode != 0 and "finished in" not in out.stdout:
            raise RuntimeError(f"h2load failed: {out.stderr.strip() or out.stdout.strip()}")
        m = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", out.stdout)
        r = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                      r"(\d+) errored, (\d+) timeout", out.stdout)
        if m is None or r is None:
            raise RuntimeError(f"unexpected h2load output: {out.stdout[-400:]}")
        seconds = float(m.group(1)) / (1000.0 if m.group(2) == "ms" else 1.0)
        lat: list[int] = []
        ok = 0
        for line in log.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 3:
                if parts[1] == "200":
                    ok += 1
                lat.append(int(parts[2]))
        lat.sort()
        failed = int(r.group(5)) + int(r.group(6)) + int(r.group(7))
        return Result(ok, failed, seconds, float(m.group(3)), _percentile(lat, 0.50), _percentile(lat, 0.95),
                      _percentile(lat, 0.99), lat[-1] / 1000.0 if lat else 0.0, starts)
