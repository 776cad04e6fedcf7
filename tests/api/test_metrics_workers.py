"""Issue 31: one metrics endpoint for ``serve --workers 2``, its counts summed over the workers and
kept across a worker's SIGKILL and restart; process, python and build series beside them.

A real ``hsmsvc serve`` over mTLS on PostgreSQL, with two worker processes on one port
(SO_REUSEPORT); each client has its own connection, so both workers take some calls.
"""

from __future__ import annotations

import os
import re
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hsmsvc.hsm.model import KeySpec
from hsmsvc.types import Algorithm, KeyType, KeyUsage, ModeOfUse
from hsmsvc_client import Client, ClientTls
from tests import pg
from tests.api.conftest import ATTEMPTS, POLICY, Env, _form, forming, launch, seal_lmk, stop
from tests.api.monitoring import SCRAPED, referenced
from tools.bench.pki import ThrowawayCA

CALLS = 'hsmsvc_rpc_calls_total{code="OK",method="MacService.GenerateMac"}'
CONNECTIONS = 16


@dataclass
class Fleet:
    info: dict[str, Any]
    tls: ClientTls
    log: Path

    def page(self, path: str = "/metrics", port: int | None = None) -> tuple[int, str]:
        url = f"http://127.0.0.1:{port or self.info['metrics_port']}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return int(r.status), r.read().decode()
        except urllib.error.HTTPError as e:
            return int(e.code), e.read().decode()

    def calls(self, clients: int, each: int) -> None:
        """``each`` MACs from each of ``clients`` clients, each on a connection of its own."""
        for _ in range(clients):
            c = Client(f"127.0.0.1:{self.info['port']}", self.tls, deadline=10.0, retries=0)
            try:
                for _ in range(each):
                    c.generate_mac("fleet.mak", b"count me")
            finally:
                c.close()


def value(text: str, series: str) -> float | None:
    m = re.search("^" + re.escape(series) + r" (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def wait_for(fleet: Fleet, series: str, want: float, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        _, text = fleet.page()
        if value(text, series) == want:
            return text
        assert time.monotonic() < deadline, f"{series} is {value(text, series)}, not {want}:\n{text}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    d = tmp_path_factory.mktemp("fleet")
    ca = ThrowawayCA(d)
    ident = ca.issue("core-banking")
    cert = ca.issue("hsmsvc-server", server=True)
    sealed_file = seal_lmk(d)
    (d / "policy.toml").write_text(POLICY)
    with pg.throwaway_db() as url:
        with forming(url, sealed_file) as km:
            _form(km, KeySpec("fleet.mak", 1, KeyType.MAK, Algorithm.TDES_2KEY, KeyUsage.MAC_ISO9797_ALG3,
                              ModeOfUse.MAC_GENERATE_VERIFY))
        proc, info = launch(d, url, sealed_file, cert, ca, ATTEMPTS, top="workers = 2\n")
        try:
            yield Fleet(info, ClientTls(ca.ca_file, ident.cert, ident.key, "localhost"), d / "server.log")
        finally:
            stop(proc, d / "server.log")


def test_one_endpoint_sums_the_workers_and_shows_process_and_build_series(fleet: Fleet) -> None:
    assert len(fleet.info["workers"]) == 2
    assert fleet.info["metrics_port"] not in {w["metrics_port"] for w in fleet.info["workers"]}
    fleet.calls(CONNECTIONS, 3)
    text = wait_for(fleet, CALLS, 3.0 * CONNECTIONS)
    # Each worker counted a share of them (on its own loopback page): the supervisor's is the sum.
    shares = [value(fleet.page(port=w["metrics_port"])[1], CALLS) or 0.0 for w in fleet.info["workers"]]
    print("calls per worker:", shares)
    assert all(s > 0 for s in shares) and sum(shares) == 3.0 * CONNECTIONS
    assert value(text, 'hsmsvc_rpc_duration_seconds_count{method="MacService.GenerateMac"}') == 3.0 * CONNECTIONS
    assert value(text, "hsmsvc_key_uses_total") == 3.0 * CONNECTIONS
    names = {s.name for f in text_string_to_metric_families(text) for s in f.samples}  # and it parses
    for series in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
                   "python_info", "python_gc_collections_total", "hsmsvc_workers_up", "hsmsvc_store_healthy",
                   "hsmsvc_backend_healthy", "hsmsvc_executor_busy", "hsmsvc_worker_cpu_seconds_total",
                   "hsmsvc_worker_resident_memory_bytes", "hsmsvc_worker_python_gc_collections_total"):
        assert series in names, series
    assert re.search(r'^hsmsvc_build_info\{backend="soft",python="3\.\d+\.\d+",version="[^"]+"\} 1\.0$', text, re.M)
    assert value(text, "hsmsvc_workers_up") == value(text, "hsmsvc_workers") == 2.0
    assert value(text, "hsmsvc_store_healthy") == 1.0 and value(text, "hsmsvc_lmk_loaded") == 1.0
    assert value(text, 'hsmsvc_worker_resident_memory_bytes{worker="1"}')
    assert value(text, 'hsmsvc_worker_python_gc_collections_total{generation="0",worker="1"}') is not None
    assert "pid=" not in text and "key_id=" not in text
    assert fleet.page("/readyz")[0] == 200 and fleet.page("/healthz")[0] == 200


def test_counts_survive_a_worker_killed_and_restarted(fleet: Fleet) -> None:
    _, text = fleet.page()
    before = value(text, CALLS) or 0.0
    assert before > 0
    os.kill(fleet.info["workers"][0]["pid"], signal.SIGKILL)
    wait_for(fleet, 'hsmsvc_worker_restarts_total{worker="0"}', 1.0)
    text = wait_for(fleet, "hsmsvc_workers_up", 2.0, timeout=30.0)
    assert value(text, CALLS) == before, "the killed worker's counts were lost"
    fleet.calls(CONNECTIONS, 1)
    wait_for(fleet, CALLS, before + CONNECTIONS)
    assert fleet.page("/readyz")[0] == 200


def test_every_series_the_rules_and_dashboard_name_is_exported(fleet: Fleet, server: Env) -> None:
    """deploy/monitoring/ against two running servers: the session's single one and this fleet."""
    exported: set[str] = set()
    for port in (server.metrics_port, fleet.info["metrics_port"]):
        _, text = fleet.page(port=port)
        for f in text_string_to_metric_families(text):
            # A family without samples yet (no error so far) is declared all the same.
            suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}.get(f.type, ("",))
            exported |= {f.name + x for x in suffixes} | {s.name for s in f.samples}
    missing = sorted(referenced() - exported - SCRAPED)
    assert not missing, f"named in deploy/monitoring/ but exported by no server: {missing}"
