"""A private PostgreSQL cluster that a test may stop and start (the machine's shared one it must not).

``initdb`` into a temporary directory, served on a free loopback port with trust
auth and fsync off. PostgreSQL refuses to run as root, so under root the cluster
runs as the ``postgres`` user (``runuser``). The binaries are the newest
``/usr/lib/postgresql/*/bin`` (Debian's ``postgresql`` package) or
``$HSMSVC_TEST_PG_BIN``. Under CI missing binaries fail the run; on a laptop the
tests skip and say how to enable them.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.hsm.components_env import require_or_skip

__all__ = ["Cluster", "private_cluster"]


def _bindir() -> Path | None:
    given = os.environ.get("HSMSVC_TEST_PG_BIN")
    found = [given] if given else sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                                         key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0)
    for d in reversed(found):
        if all(os.access(Path(d) / b, os.X_OK) for b in ("initdb", "pg_ctl", "postgres")):
            return Path(d)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """One running cluster with a database ``hsmsvc``; :meth:`stop` and :meth:`start` it at will."""

    def __init__(self, bindir: Path, root: Path, port: int) -> None:
        self.bindir, self.root, self.port = bindir, root, port
        self.data = root / "data"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/hsmsvc"
        self.admin = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def _run(self, *args: str) -> None:
        argv = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise AssertionError(f"{args[0]} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")

    def start(self) -> None:
        """Start and wait until it accepts connections."""
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off "
                "-c full_page_writes=off -c shared_buffers=16MB -c max_connections=40")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", opts, "-w", "-t", "30",
                  "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop it: ``fast`` ends every session and refuses new ones, as a database shut down does."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


@contextmanager
def private_cluster() -> Iterator[Cluster]:
    """A fresh cluster, started, with an empty database ``hsmsvc``; stopped and removed afterwards."""
    bindir = _bindir()
    require_or_skip(bindir is not None, "PostgreSQL server binaries (initdb, pg_ctl, postgres)",
                    "install Debian's `postgresql` package (`.ci/run` does) or set HSMSVC_TEST_PG_BIN")
    assert bindir is not None
    if os.geteuid() == 0:
        require_or_skip(shutil.which("runuser") is not None, "runuser", "PostgreSQL will not run as root")
    root = Path(tempfile.mkdtemp(prefix="hsmsvc-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    cluster = Cluster(bindir, root, _free_port())
    try:
        cluster.init()
        cluster.start()
        import psycopg

        with psycopg.connect(cluster.admin, autocommit=True) as c:
            c.execute("CREATE DATABASE hsmsvc")
        yield cluster
    finally:
        if cluster.running():
            try:
                cluster.stop("immediate")
            except (AssertionError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(root, ignore_errors=True)
