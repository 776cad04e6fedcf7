"""Rotation keeps up with use at the seed's 2,500-use rule (issue 26 item 8; 004 clause 7.1.1).

Two real sites (test_key_sync.py's fixture: ``hsmsvc serve`` each, own LMK and
PostgreSQL store). The zone ZPK is limited to 2,500 uses at both; the core,
which has the branch as its peer, starts each key change by itself from the
ZPK's measured rate of use and delivers it. Several client threads translate
at the branch (TPK -> zone ZPK, no version named) and verify at the core under
the version the branch named, against a digest computed with pyca, as fast as
this machine allows for 15 s, or longer (up to 60 s) until a third version
serves: no call may be refused or fail.

Started at the limit, as before, a change here would activate about
``rate x 3 s`` uses past it; the versions' final use counts show how close to
2,500 each version was replaced.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import types_pb2 as pb
from tests.api.key_sync_sites import ZONE, Sites, change, open_sites, translate_and_verify

MAX_USES = 2500
TIMING = f"""
[key_sync]
activate_after_seconds = 1
grace_seconds = 4
rotation_margin_seconds = 0.5

[rotation.ZPK]
max_age_seconds = 43200
max_uses = {MAX_USES}
"""
THREADS = 6
SECONDS = 15.0
# A slow machine (CI's two cores gave 290 pairs/s) needs longer to reach a third version; the
# load goes on until it does, up to this bound, so the test measures rotation, not the runner.
MAX_SECONDS = 60.0


@pytest.fixture()
def sites(tmp_path: Path) -> Iterator[Sites]:
    with open_sites(tmp_path, TIMING) as s:
        yield s


def test_zone_zpk_at_2500_uses_changes_in_time_under_load(sites: Sites) -> None:
    change(sites)
    time.sleep(2.2)  # version 1 active at both sites
    done = threading.Event()
    errors: list[str] = []
    by_version: dict[int, int] = {}
    lock = threading.Lock()

    def load() -> None:
        while not done.is_set():
            try:
                v = translate_and_verify(sites)
            except Exception as e:  # every failure is a finding
                with lock:
                    errors.append(f"{type(e).__name__}: {e}")
                continue
            with lock:
                by_version[v] = by_version.get(v, 0) + 1

    threads = [threading.Thread(target=load) for _ in range(THREADS)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    try:
        while len(errors) < 50:
            now = time.perf_counter() - t0
            with lock:
                versions = len(by_version)
            if now >= MAX_SECONDS or (now >= SECONDS and versions >= 3):
                break
            time.sleep(0.2)
    finally:
        done.set()
        for t in threads:
            t.join(30)
    elapsed = time.perf_counter() - t0
    pairs = sum(by_version.values())
    officer = sites.branch.clients["branch-officer"]
    counts = {v: officer.keys.GetKey(key_pb.GetKeyRequest(key=pb.KeyRef(key_id=f"{ZONE}.zpk", version=v))).key
              .use_count for v in sorted(by_version)}
    print(f"{pairs} translate+verify pairs in {elapsed:.1f} s ({pairs / elapsed:.0f}/s) from {THREADS} threads; "
          f"pairs by ZPK version {by_version}; branch use counts (reserved blocks included) {counts}; "
          f"{len(errors)} failures")
    assert errors == [], errors[:5]
    assert len(by_version) >= 3, "fewer than two key changes: the load was too light to test anything"
    # Every version but the first (started by hand) and the newest was replaced near its limit, not
    # (rate x 1.5 s) past it as when a change started only at the limit (about 3,300 at 770 pairs/s).
    finished = sorted(by_version)[1:-1]
    assert all(counts[v] <= 1.2 * MAX_USES for v in finished), counts
