"""Health tells the truth: a real server process, its database a private cluster the test stops,
hangs and starts again; /readyz, gRPC health, the store gauge and the WARN lines follow it."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client import ClientError
from tests.api.solo import Solo, solo_server
from tests.pgcluster import Cluster, private_cluster

SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
WITHIN = 5.0


def _until(solo: Solo, what: str, cond: Callable[[], bool], within: float = WITHIN) -> float:
    """Seconds until ``cond()`` held, polling; /healthz must answer 200 at every poll meanwhile."""
    start = time.monotonic()
    while True:
        assert solo.http("/healthz") == (200, "ok\n"), "liveness must hold throughout"
        if cond():
            return time.monotonic() - start
        assert time.monotonic() - start < within, f"{what}: not within {within} s"
        time.sleep(0.1)


def _state(solo: Solo) -> tuple[int, int]:
    return solo.http("/readyz")[0], solo.health()


def _postgres_pids(cluster: Cluster) -> list[int]:
    """The cluster's postmaster and its children (from /proc: only this test's own processes)."""
    master = int((cluster.data / "postmaster.pid").read_text().split()[0])
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master:
            kids.append(int(stat.parent.name))
    return [master, *kids]


def test_readyz_and_grpc_health_follow_the_database(tmp_path: Path) -> None:
    with private_cluster() as cluster, solo_server(tmp_path, cluster.url) as solo:
        auditor = solo.client("auditor")
        _until(solo, "ready at start", lambda: _state(solo) == (200, SERVING))
        assert solo.http("/readyz") == (200, "ready\n")
        assert "hsmsvc_store_healthy 1.0" in solo.http("/metrics")[1]

        cluster.stop()
        took_down = _until(solo, "503 and NOT_SERVING", lambda: _state(solo) == (503, NOT_SERVING))
        assert solo.http("/readyz") == (503, "not ready: store unreachable\n")
        assert "hsmsvc_store_healthy 0.0" in solo.http("/metrics")[1]
        with pytest.raises(ClientError) as e:  # a call meanwhile: UNAVAILABLE, never INTERNAL
            auditor.keys.ListKeys(key_pb.ListKeysRequest())
        assert e.value.code is grpc.StatusCode.UNAVAILABLE

        cluster.start()
        took_up = _until(solo, "200 and SERVING", lambda: _state(solo) == (200, SERVING))
        assert [k.key_id for k in auditor.keys.ListKeys(key_pb.ListKeysRequest()).keys][:1] == ["pvk-visa"]

        # Hung, not stopped: every PostgreSQL process stopped. The probe times out (down), and
        # the server itself answers at once meanwhile: nothing waits on the event loop.
        pids = _postgres_pids(cluster)
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            took_hung = _until(solo, "503 while hung", lambda: _state(solo) == (503, NOT_SERVING))
            t = time.monotonic()
            assert solo.health(timeout=3.0) == NOT_SERVING and solo.http("/healthz", timeout=3.0)[0] == 200
            assert time.monotonic() - t < 2.5  # a new TLS channel and an HTTP GET; the hang is endless
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
        took_back = _until(solo, "200 after the hang", lambda: _state(solo) == (200, SERVING))

        warned = [(r["message"], r["serving"]) for r in solo.log_lines()
                  if r.get("level") == "WARNING" and r.get("logger") == "hsmsvc.health"]
        assert warned == [("health changed: store down", False), ("health changed: store up", True)] * 2, warned
        print(f"store stopped -> 503/NOT_SERVING in {took_down:.2f} s; started -> 200/SERVING in {took_up:.2f} s; "
              f"hung -> 503 in {took_hung:.2f} s; resumed -> 200 in {took_back:.2f} s")
