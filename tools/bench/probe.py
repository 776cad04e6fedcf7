"""Server resource use while a load runs, read from /proc (section 7.1.5 b of the bank's test plan):
CPU, memory, open connections and file handles of every server process."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

__all__ = ["Probe", "Usage", "connections_per_process", "spread_evenly"]

_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Usage:
    cpu_cores: float
    """Mean CPU over the run, in cores (1.0 = one core busy)."""
    rss_mb: float
    """Largest resident memory seen, summed over the processes."""
    connections: int
    """Largest number of established TCP connections to the server port."""
    file_handles: int
    """Largest number of open file descriptors, summed over the processes."""


def _cpu(pids: list[int]) -> float:
    total = 0
    for p in pids:
        try:
            fields = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / _TICK


def _rss(pids: list[int]) -> float:
    kb = 0
    for p in pids:
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith("VmRSS:"):
                    kb += int(line.split()[1])
        except OSError:
            pass
    return kb / 1024


def _fds(pids: list[int]) -> int:
    n = 0
    for p in pids:
        try:
            n += len(os.listdir(f"/proc/{p}/fd"))
        except OSError:
            pass
    return n


def _connections(port: int) -> int:
    return len(_established(port))


def _established(port: int) -> set[str]:
    """Socket inodes of the established TCP connections to ``port``."""
    out: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] == "01" and int(f[1].rsplit(":", 1)[1], 16) == port:
                out.add(f[9])
    return out


def connections_per_process(pids: list[int], port: int) -> list[int]:
    """How many of the established connections to ``port`` each process holds."""
    live = _established(port)
    counts = []
    for p in pids:
        n = 0
        try:
            for fd in os.listdir(f"/proc/{p}/fd"):
                try:
                    target = os.readlink(f"/proc/{p}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith("socket:[") and target[8:-1] in live:
                    n += 1
        except OSError:
            pass
        counts.append(n)
    return counts


def spread_evenly(pids: list[int], port: int, connections: int, wait: float = 1.0) -> bool:
    """Whether ``connections`` connections to ``port`` are spread over ``pids`` as evenly as they
    can be (within one for up to 15 connections, two from 16); waits up to ``wait`` seconds for
    all of them to be up."""
    deadline = time.monotonic() + wait
    while True:
        counts = connections_per_process(pids, port)
        if sum(counts) >= connections or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return sum(counts) >= connections and max(counts) - min(counts) <= max(1, connections // 8)


class Probe:
    """Samples the server processes every ``interval`` seconds between ``start()`` and ``stop()``."""

    def __init__(self, pids: list[int], port: int, interval: float = 0.25) -> None:
        self._pids, self._port, self._interval = pids, port, interval
        self._stop = threading.Event()
        self._rss, self._conns, self._fds = 0.0, 0, 0
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self._cpu0, self._t0 = _cpu(self._pids), time.monotonic()
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._rss = max(self._rss, _rss(self._pids))
            self._conns = max(self._conns, _connections(self._port))
            self._fds = max(self._fds, _fds(self._pids))

    def stop(self) -> Usage:
        self._stop.set()
        self._thread.join()
        seconds = max(time.monotonic() - self._t0, 1e-9)
        return Usage(round((_cpu(self._pids) - self._cpu0) / seconds, 2), round(self._rss, 1), self._conns,
                     self._fds)
