"""A PostgreSQL primary and a streaming standby (``pg_basebackup -R``), synchronously replicated.

Both are private clusters (tests/pgcluster.py) on loopback. The primary commits
only once the standby has the commit's WAL (``synchronous_standby_names = '*'``,
``synchronous_commit = on``, set by ALTER SYSTEM after the base backup, so the
standby does not inherit it: promoted, with no standby of its own, it must not
wait for one). :meth:`Pair.switchover` stops the primary and promotes the standby
with ``pg_ctl``, as an operator (or Patroni) does; :meth:`Pair.crash_lagging` kills
the primary while its standby lags; :meth:`Pair.attach` makes the old primary the
new one's standby again.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.pgcluster import Cluster, _bindir, _free_port, private_cluster

__all__ = ["Pair", "streaming_pair"]


@dataclass
class Pair:
    primary: Cluster
    standby: Cluster

    def __post_init__(self) -> None:
        self.hosts = (self.primary.port, self.standby.port)

    @property
    def url(self) -> str:
        """Both hosts, libpq choosing the one that accepts writes (whichever is primary now)."""
        a, b = self.hosts
        return (f"postgresql+psycopg://postgres@/hsmsvc?host=127.0.0.1:{a}&host=127.0.0.1:{b}"
                "&target_session_attrs=read-write")

    def sync_state(self) -> str:
        """The standby's state in the primary's ``pg_stat_replication`` (``sync`` when synchronous)."""
        with psycopg.connect(self.primary.admin, autocommit=True) as c:
            row = c.execute("SELECT sync_state FROM pg_stat_replication").fetchone()
        return str(row[0]) if row else "none"

    def attach(self) -> None:
        """Make the standby a fresh copy of the primary (``pg_basebackup -R``), streaming, synchronous."""
        if self.standby.data.exists():
            shutil.rmtree(self.standby.data)
        self.standby._run("pg_basebackup", "-D", str(self.standby.data), "-R", "-X", "stream", "-c", "fast",
                          "-h", "127.0.0.1", "-p", str(self.primary.port), "-U", "postgres")
        with open(self.standby.data / "postgresql.auto.conf", "a") as conf:
            # After the primary's crash, PostgreSQL 15 acted on `pg_ctl promote` only once this
            # interval (default 5 s) since its last try to reach the primary had passed.
            conf.write("wal_retrieve_retry_interval = '200ms'\n")
        self.standby.start()
        # After the base backup, so the standby does not inherit it.
        with psycopg.connect(self.primary.admin, autocommit=True) as c:
            c.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            c.execute("ALTER SYSTEM SET synchronous_commit = 'on'")
            c.execute("SELECT pg_reload_conf()")
        deadline = time.monotonic() + 20
        while self.sync_state() != "sync":
            assert time.monotonic() < deadline, "the standby did not become synchronous"
            time.sleep(0.05)

    def switchover(self) -> tuple[float, float]:
        """Stop the primary (``pg_ctl stop -m fast``), promote the standby, swap their roles; returns
        how long each step took."""
        t0 = time.monotonic()
        self.primary.stop("fast")
        return time.monotonic() - t0, self._promote()

    def crash_lagging(self, lag: float) -> tuple[float, float]:
        """The primary crashes while its standby lags ``lag`` seconds behind, then the standby is promoted.

        The primary's WAL sender is stopped (SIGSTOP) for ``lag`` seconds, so WAL written meanwhile
        does not leave the machine; then the postmaster is frozen and it and every child SIGKILLed, as
        a power cut would. Returns the time taken by the kill and the promotion.
        """
        with psycopg.connect(self.primary.admin, autocommit=True) as c:
            row = c.execute("SELECT pid FROM pg_stat_replication").fetchone()
        assert row is not None, "no WAL sender"
        os.kill(int(row[0]), signal.SIGSTOP)
        time.sleep(lag)
        t0 = time.monotonic()
        postmaster = int((self.primary.data / "postmaster.pid").read_text().split()[0])
        os.kill(postmaster, signal.SIGSTOP)  # no new backend forks while its children are killed
        for pid in _children(postmaster):
            os.kill(pid, signal.SIGKILL)
        os.kill(postmaster, signal.SIGKILL)
        return time.monotonic() - t0, self._promote()

    def _promote(self) -> float:
        t0 = time.monotonic()
        self.standby._run("pg_ctl", "-D", str(self.standby.data), "-w", "-t", "30", "promote")
        self.primary, self.standby = self.standby, self.primary
        return time.monotonic() - t0


def _children(parent: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == parent:
            out.append(int(stat.parent.name))
    return out


@contextmanager
def streaming_pair() -> Iterator[Pair]:
    """A primary with database ``hsmsvc`` and its synchronous standby, both running; removed afterwards."""
    with private_cluster() as primary:
        bindir = _bindir()
        assert bindir is not None
        root = Path(tempfile.mkdtemp(prefix="hsmsvc-pg-standby-"))
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
        pair = Pair(primary, Cluster(bindir, root, _free_port()))
        try:
            pair.attach()
            yield pair
        finally:
            # private_cluster() stops and removes the cluster it made, whichever role it has now.
            other = pair.standby if pair.standby is not primary else pair.primary
            if other.running():
                try:
                    other.stop("immediate")
                except AssertionError:
                    pass
            shutil.rmtree(root, ignore_errors=True)
