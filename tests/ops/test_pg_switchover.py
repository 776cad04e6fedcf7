"""PostgreSQL role changes under a write load: no acknowledged write lost, and how long callers saw UNAVAILABLE.

Real processes: a private primary and its synchronous streaming standby
(tests/ops/pgha.py), one ``hsmsvc serve`` whose store URL names both hosts with
``target_session_attrs=read-write``, and client threads generating keys through
the SDK (GenerateKey writes a key row and an audit row in one transaction; it is
not idempotent, so the SDK does not retry it and callers see each UNAVAILABLE).

1. A planned switchover: the primary stopped (``pg_ctl stop -m fast``), the
   standby promoted (``pg_ctl promote``).
2. The old primary rebuilt as the new one's synchronous standby (``pg_basebackup
   -R``) while the writes go on.
3. An unplanned failover: the standby lags (the primary's WAL sender stopped for
   1 s), the primary crashes (every process SIGKILLed) and the standby is
   promoted. Here synchronous replication is what keeps every acknowledged
   write: a commit is answered only once the standby has its WAL, so the writes
   of the lagging second wait, and fail with the primary, unacknowledged. (With
   ``synchronous_standby_names`` empty, the same run acknowledged writes that the
   promoted standby did not have: 49 of 528 in one run, 65 of 907 in another,
   where ``audit verify --checkpoints`` reported 65 rows differing from their
   checkpoints; without ``--checkpoints`` it passed.)

Every acknowledged key must then be on the last primary with the KCV the server
returned, and ``hsmsvc audit verify --checkpoints`` must find the chain intact:
each signed checkpoint the server appended after a commit must match its row
(the anchor alone cannot tell: rows written after a failover that lost some take
the lost rows' sequence numbers, and the anchor moves on to them).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg

from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import types_pb2 as pb
from hsmsvc_client import Client, ClientError, ClientTls
from tests.api.conftest import PASSPHRASE, POLICY, forming, launch, seal_lmk, stop, template
from tests.ops.pgha import streaming_pair
from tools.bench.pki import ThrowawayCA as TestCA

WRITERS = 3
LEAD, BACK = 3.0, 2.0  # seconds of writes before the first event; acknowledged after each event before the next
LAG = 1.0  # seconds the standby falls behind before the primary crashes


def test_switchover_and_failover_under_writes_lose_no_acknowledged_write(tmp_path: Path) -> None:
    ca = TestCA(tmp_path)
    srv = ca.issue("hsmsvc-server", server=True)
    sealed_file = seal_lmk(tmp_path)
    (tmp_path / "policy.toml").write_text(POLICY)
    with streaming_pair() as pair:
        with forming(pair.url, sealed_file):
            pass  # the schema, migrated through the multi-host URL
        sink = tmp_path / "checkpoints"
        proc, info = launch(tmp_path, pair.url, sealed_file, srv, ca, top=f'audit_checkpoints = "{sink}"')
        log = tmp_path / "server.log"
        me = ca.issue("key-manager")
        acked: dict[str, tuple[float, bytes]] = {}  # key id -> (when, the KCV the server answered)
        failed: dict[str, tuple[float, float, str]] = {}  # key id -> (started, ended, code)
        lock = threading.Lock()
        done = threading.Event()
        clients = [Client(f"127.0.0.1:{info['port']}", ClientTls(ca.ca_file, me.cert, me.key, "localhost"))
                   for _ in range(WRITERS)]

        def write(worker: int) -> None:
            n = 0
            while not done.is_set():
                kid = f"sw.dek-{worker}-{n}"
                n += 1
                t0 = time.monotonic()
                try:
                    r = clients[worker].keys.GenerateKey(key_pb.GenerateKeyRequest(template=template(
                        kid, pb.KEY_TYPE_DEK, pb.ALGORITHM_AES_128, pb.KEY_USAGE_DATA, pb.MODE_OF_USE_ENCRYPT_DECRYPT)))
                except ClientError as e:
                    with lock:
                        failed[kid] = (t0, time.monotonic(), e.code.name)
                    time.sleep(0.02)
                    continue
                with lock:
                    acked[kid] = (time.monotonic(), bytes(r.key.kcv))

        def writes_back(since: float) -> None:
            """Until writes that started after ``since`` have been acknowledged for BACK seconds."""
            deadline = since + 30
            while time.monotonic() < deadline:
                time.sleep(0.05)
                with lock:
                    ok = [t for t, _ in acked.values() if t > since]
                    bad = [f[1] for f in failed.values() if f[0] > since]
                if ok and time.monotonic() - max([since, *bad]) > BACK:
                    return
            raise AssertionError("writes did not come back within 30 s:\n" + log.read_text()[-3000:])

        workers = [threading.Thread(target=write, args=(w,), daemon=True) for w in range(WRITERS)]
        events: list[tuple[str, float, str]] = []  # (what, when, how long it took)
        states = [pair.sync_state()]
        try:
            for t in workers:
                t.start()
            time.sleep(LEAD)
            at = time.monotonic()
            stopping, promoting = pair.switchover()
            events.append(("switchover (stop -m fast, promote)", at, f"{stopping:.2f} s + {promoting:.2f} s"))
            writes_back(at + stopping + promoting)
            at = time.monotonic()
            pair.attach()
            states.append(pair.sync_state())
            events.append(("old primary rebuilt as standby (pg_basebackup -R)", at, f"{time.monotonic() - at:.2f} s"))
            writes_back(time.monotonic())
            at = time.monotonic()
            killing, promoting = pair.crash_lagging(LAG)
            events.append((f"failover (standby {LAG:.0f} s behind, primary SIGKILLed, promote)", at,
                           f"{LAG:.2f} s lag + {killing:.2f} s + {promoting:.2f} s"))
            writes_back(time.monotonic())
        finally:
            done.set()
            for t in workers:
                t.join(30)
            for c in clients:
                c.close()
            stop(proc, log)

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{pair.primary.port}/hsmsvc", autocommit=True) as c:
            rows: dict[str, str] = dict(c.execute("SELECT key_id, kcv FROM keys WHERE key_id LIKE 'sw.%'").fetchall())
            writable = c.execute("SELECT NOT pg_is_in_recovery()").fetchone()
        verify = subprocess.run(
            [sys.executable, "-m", "hsmsvc", "audit", "verify", "--sealed", str(sealed_file), "--passphrase-env",
             "LMK_PASS", "--store", pair.primary.url, "--checkpoints", str(sink)],
            capture_output=True, text=True, timeout=60, env={**os.environ, "LMK_PASS": PASSPHRASE})

    lost = sorted(k for k in acked if k not in rows)
    kcv_differs = sorted(k for k, (_, kcv) in acked.items() if k in rows and bytes.fromhex(rows[k])[:len(kcv)] != kcv)
    in_doubt = sorted(k for k in failed if k in rows)  # failed to the caller, committed all the same
    codes = sorted({f[2] for f in failed.values()})
    print(f"\nPostgreSQL role changes under {WRITERS} GenerateKey writers; standby '{states[0]}', "
          f"rebuilt one '{states[-1]}'")
    print(f"writes acknowledged {len(acked)}, failed {len(failed)} {codes}, lost {len(lost)}, "
          f"KCV differs {len(kcv_differs)}, failed but committed {len(in_doubt)}")
    # Each event owns the calls that ended from its start to the next one's.
    ends = [e[1] for e in events[1:]] + [float("inf")]
    acks = sorted(t for t, _ in acked.values())
    for (what, at, took), end in zip(events, ends):
        seen = [f for f in failed.values() if at <= f[1] < end]
        gap = max((b - a for a, b in zip(acks, acks[1:]) if at <= b < end), default=0.0)
        window = f"{max(f[1] for f in seen) - min(f[0] for f in seen):.2f} s" if seen else "none"
        print(f"  {what}: took {took}; {len(seen)} calls failed, UNAVAILABLE window {window}; "
              f"longest gap between acknowledged writes {gap:.2f} s")
    print(f"audit verify on the last primary: rc {verify.returncode}: {' '.join(verify.stdout.split())[-200:]}")
    assert states == ["sync", "sync"]
    assert writable == (True,)
    assert not lost, lost[:5]
    assert not kcv_differs, kcv_differs[:5]
    assert set(codes) <= {"UNAVAILABLE"}, failed
    assert verify.returncode == 0, verify.stdout + verify.stderr
