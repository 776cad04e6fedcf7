"""Scale-out shown: three replicas on one PostgreSQL behind haproxy; one SIGKILLed, one drained with SIGTERM.

Real processes throughout: three ``hsmsvc serve`` on one throw-away database,
haproxy in TCP mode (mTLS end to end, ``/readyz`` health checks), and client
threads calling through :class:`hsmsvc_client.Client` with its default retry
policy: three through haproxy, one given the three replicas' addresses (the
SDK's client-side round-robin, as behind a Kubernetes headless Service). The
calls are idempotent ones (TranslatePin, GenerateMac, VerifyMac, GetKey); every
answer is checked against tests/reference.py. The test prints calls made,
failed and wrong, and the attempts the SDK retried, by route and phase.
"""

from __future__ import annotations

import os
import secrets
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from hsmsvc.hsm.model import KeySpec
from hsmsvc.types import Algorithm, KeyType, KeyUsage, ModeOfUse
from hsmsvc_client import Client, ClientError, ClientTls
from tests import pg
from tests import reference as ind
from tests.api.conftest import _form, forming, seal_lmk, stop
from tests.ops.fleet import Attempts, Balancer, start_replicas
from tools.bench.pki import ThrowawayCA as TestCA

PIN = "4321"
PANS = [ind.luhn_pan(f"4000001234{i:05d}") for i in range(16)]
ROUTES = {"haproxy": 3, "client round-robin": 1}  # workers calling through haproxy, and straight to the replicas
PHASES = ("all 3", "r0 SIGKILLed", "r1 SIGTERMed")
KILL_AT, TERM_AT, END_AT = 6.0, 13.0, 22.0
PAUSE = 0.004  # between one worker's calls: a bounded load on two shared cores


def test_three_replicas_lose_two_with_no_failed_and_no_wrong_answer(tmp_path: Path) -> None:
    ca = TestCA(tmp_path)
    srv = ca.issue("hsmsvc-server", server=True)
    sealed_file = seal_lmk(tmp_path)
    pin, mac = (KeyUsage.PIN_ENCRYPTION, ModeOfUse.ENCRYPT_DECRYPT), ModeOfUse.MAC_GENERATE_VERIFY
    with pg.throwaway_db() as url:
        with forming(url, sealed_file) as km:
            zpk1 = _form(km, KeySpec("zpk1", 1, KeyType.ZPK, Algorithm.TDES_2KEY, *pin))
            zpk2 = _form(km, KeySpec("zpk2", 1, KeyType.ZPK, Algorithm.TDES_2KEY, *pin))
            mak = _form(km, KeySpec("mak", 1, KeyType.MAK, Algorithm.TDES_2KEY, KeyUsage.MAC_ISO9797_ALG3, mac))
        started = time.monotonic()
        replicas = start_replicas(tmp_path, 3, url=url, sealed_file=sealed_file, srv=srv, ca=ca)
        boot = time.monotonic() - started
        lb = Balancer(tmp_path, replicas)
        phase = ["all 3"]
        direct = [f"127.0.0.1:{r.port}" for r in replicas]
        attempts = {route: Attempts(lambda: phase[0]) for route in ROUTES}
        clients: list[Client] = []

        def client(who: str, route: str) -> Client:
            me = ca.issue(who, file=f"{who}-{len(clients)}")
            # Through haproxy: one Client (one channel, one connection) per worker, the connections
            # spread over the replicas round-robin. Client-side: a channel to each replica, the
            # calls round-robin over them.
            c = Client(lb.address if route == "haproxy" else direct,
                       ClientTls(ca.ca_file, me.cert, me.key, "localhost"), interceptors=[attempts[route]])
            clients.append(c)
            return c

        want_kcv = ind.tdes_kcv(zpk2)
        outcomes: Counter[tuple[str, str, str]] = Counter()  # (route, phase, OK | FAILED <code> | WRONG <method>)
        took: dict[str, list[float]] = {route: [] for route in ROUTES}
        failures: list[str] = []
        lock = threading.Lock()
        done = threading.Event()

        def check(worker: int, c: Client, reader: Client) -> Callable[[int], tuple[str, bool]]:
            def one(i: int) -> tuple[str, bool]:
                pan = PANS[(worker + i) % len(PANS)]
                kind = i % 4
                if kind == 0:
                    out = c.translate_pin("zpk1", "zpk2", ind.tdes_ecb(zpk1, ind.iso0(PIN, pan)), pan=pan)
                    return "TranslatePin", out == ind.tdes_ecb(zpk2, ind.iso0(PIN, pan))
                if kind == 1:
                    data = secrets.token_bytes(24)
                    return "GenerateMac", c.generate_mac("mak", data) == ind.retail_mac(mak, data)
                if kind == 2:
                    data = secrets.token_bytes(24)
                    return "VerifyMac", c.verify_mac("mak", data, ind.retail_mac(mak, data)) is True
                return "GetKey", bytes(reader.get_key("zpk2").kcv) == want_kcv
            return one

        def load(route: str, one: Callable[[int], tuple[str, bool]]) -> None:
            i = 0
            while not done.is_set():
                t0 = time.monotonic()
                where = phase[0]
                try:
                    method, right = one(i)
                    result = "OK" if right else f"WRONG {method}"
                except ClientError as e:
                    result = f"FAILED {e.code.name}"
                    with lock:
                        failures.append(f"{route}, {where}: {e}")
                with lock:
                    outcomes[(route, where, result)] += 1
                    took[route].append(time.monotonic() - t0)
                i += 1
                time.sleep(PAUSE)

        # Made here, one after another: certificate files written by threads at once could be read half-written.
        plan = [(route, w) for route, n in ROUTES.items() for w in range(n)]
        workers = [threading.Thread(target=load, args=(route, check(w, client("core-banking", route),
                                                                    client("auditor", route))), daemon=True)
                   for route, w in plan]
        drained = 0.0
        try:
            t0 = time.monotonic()
            for t in workers:
                t.start()
            time.sleep(KILL_AT)
            phase[0] = "r0 SIGKILLed"
            os.kill(replicas[0].proc.pid, signal.SIGKILL)
            assert replicas[0].proc.wait(10) == -signal.SIGKILL
            time.sleep(max(0.0, t0 + TERM_AT - time.monotonic()))
            phase[0] = "r1 SIGTERMed"
            term = time.monotonic()
            stop(replicas[1].proc, replicas[1].log)  # SIGTERM; requires a clean drain and exit 0
            drained = time.monotonic() - term
            time.sleep(max(0.0, t0 + END_AT - time.monotonic()))
            seen = lb.servers()
        finally:
            done.set()
            for t in workers:
                t.join(30)
            for c in clients:
                c.close()
            lb.stop()
            for r in replicas:
                if r.proc.poll() is None:
                    stop(r.proc, r.log)

    made = sum(outcomes.values())
    failed = sum(n for (_, _, res), n in outcomes.items() if res.startswith("FAILED"))
    wrong = sum(n for (_, _, res), n in outcomes.items() if res.startswith("WRONG"))
    print(f"\nreplicas: 3 started in {boot:.2f} s; {END_AT:.0f} s of load; r0 SIGKILL at {KILL_AT:.0f} s, "
          f"r1 SIGTERM at {TERM_AT:.0f} s (drained and exited in {drained:.2f} s)")
    print(f"calls made {made}, failed {failed}, wrong {wrong}")
    for route, n in ROUTES.items():
        t = sorted(took[route])
        print(f"{route} ({n} workers): longest call (retries included) {t[-1]:.3f} s, "
              f"p99 {t[int(len(t) * 0.99)]:.3f} s, median {t[len(t) // 2]:.4f} s")
        for p in PHASES:
            calls = {res: k for (ro, ph, res), k in outcomes.items() if (ro, ph) == (route, p)}
            tries = {code: k for (ph, code), k in attempts[route].codes.items() if ph == p}
            print(f"  {p}: calls {calls}; attempts by status {tries}")
        print(f"  retried attempts said: {dict(attempts[route].details)}")
    print("haproxy: " + ", ".join(f"{n} {s['status']} ({s['stot']} connections)" for n, s in seen.items()))
    assert wrong == 0, outcomes
    assert failed == 0, failures[:5]
    # Each phase carried load, and the survivor answered the last one.
    for route in ROUTES:
        for p in PHASES:
            assert outcomes[(route, p, "OK")] > 50, outcomes
    assert seen["r0"]["status"].startswith("DOWN") and seen["r2"]["status"] == "UP", seen
    assert all(int(seen[n]["stot"]) > 0 for n in ("r0", "r1", "r2")), seen
