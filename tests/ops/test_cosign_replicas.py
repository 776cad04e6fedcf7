"""Two-party SM2 on two replicas of one store (seed 000 annex C.4: active/active co-signing).

Three real ``hsmsvc serve`` on one throw-away PostgreSQL database and one sealed LMK. A client
enrolled through r0 signs through r1 and r2 (the SDK's client-side round-robin); r2 is SIGKILLed
mid-run. Every signature the SDK returned is counted, a sample verified by OpenSSL
(``openssl pkeyutl -verify -digest sm3 -pkeyopt distid:…``, GB/T 32918.2-2016), and the attempts
are counted at the transport: the lost replica costs a signature at most a retry, never a
failure. A share revoked through one replica is refused by the other on its next call.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import grpc
import pytest
from hsmsvc_client import Client, ClientError, ClientTls
from hsmsvc_client.cosign import ClientShare, enroll, signature_to_der

from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import types_pb2 as pb
from tests import pg
from tests.api.conftest import forming, seal_lmk, stop
from tests.ops.fleet import Attempts, start_replicas
from tools.bench.pki import ThrowawayCA as TestCA

KILL_AT, END_AT = 3.0, 7.0


def _openssl_verifies(tmp: Path, spki: bytes, message: bytes, signature: bytes) -> bool:
    tool = shutil.which("openssl")
    assert tool is not None
    pem = tmp / "joint.pem"
    if not pem.exists():
        pem.write_bytes(subprocess.run([tool, "pkey", "-pubin", "-inform", "DER"], input=spki, check=True,
                                       capture_output=True).stdout)
    (tmp / "m").write_bytes(message)
    (tmp / "s").write_bytes(signature_to_der(signature))
    r = subprocess.run([tool, "pkeyutl", "-verify", "-pubin", "-inkey", str(pem), "-rawin", "-in", str(tmp / "m"),
                        "-sigfile", str(tmp / "s"), "-digest", "sm3", "-pkeyopt", "distid:1234567812345678"],
                       capture_output=True, text=True)
    return r.returncode == 0


def test_a_replica_lost_costs_a_retry_not_a_signature(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        if os.environ.get("CI"):
            pytest.fail("openssl missing under CI")
        pytest.skip("openssl not installed")
    ca = TestCA(tmp_path)
    srv = ca.issue("hsmsvc-server", server=True)
    sealed_file = seal_lmk(tmp_path)
    with pg.throwaway_db() as url:
        with forming(url, sealed_file):
            pass  # the schema made once, before the replicas (each would race to make it)
        replicas = start_replicas(tmp_path, 3, url=url, sealed_file=sealed_file, srv=srv, ca=ca)
        addresses = [f"127.0.0.1:{r.port}" for r in replicas[1:]]  # r0 for the officer, r1 and r2 sign
        phase = ["both"]
        attempts = Attempts(lambda: phase[0])

        def tls(who: str) -> ClientTls:
            ident = ca.issue(who, file=f"{who}-{os.urandom(3).hex()}")
            return ClientTls(ca.ca_file, ident.cert, ident.key, "localhost")

        mgr = Client(addresses[0], tls("key-manager"))
        app = Client(addresses, tls("core-banking"), interceptors=[attempts])
        try:
            key = enroll(mgr, ClientShare.generate(), key_id="term-ha.cosign")
            signed: list[tuple[bytes, bytes]] = []
            failures: Counter[str] = Counter()
            lock = threading.Lock()
            started = time.monotonic()

            def signer() -> None:
                i = 0
                while time.monotonic() - started < END_AT:
                    message = f"order {threading.get_ident()} {i}".encode()
                    i += 1
                    try:
                        sig = key.sign(app, message)
                    except Exception as e:  # noqa: BLE001 - counted: the test's answer is their number
                        with lock:
                            failures[type(e).__name__ + ": " + str(e)[:80]] += 1
                        continue
                    with lock:
                        signed.append((message, sig))

            threads = [threading.Thread(target=signer) for _ in range(4)]
            for t in threads:
                t.start()
            time.sleep(KILL_AT)
            before = len(signed)
            replicas[2].proc.send_signal(signal.SIGKILL)
            phase[0] = "r2 SIGKILLed"
            for t in threads:
                t.join()
            after = len(signed) - before
            sample = signed[:: max(1, len(signed) // 60)]
            wrong = sum(not _openssl_verifies(tmp_path, key.public_key_der, m, s) for m, s in sample)
            codes = dict(attempts.codes)
            print(f"\ntwo-party signatures: {before} with both replicas, {after} after r2's SIGKILL; "
                  f"failed {sum(failures.values())}; OpenSSL-verified {len(sample)}, wrong {wrong}; "
                  f"attempts by phase and code {codes}")
            assert not failures, failures
            assert wrong == 0
            assert before > 20 and after > 20
            # The SDK's round-robin still offers the dead replica's channel its turn (docs/deployment.md):
            # one UNAVAILABLE attempt, then the next address at once. At most one retry per signature.
            retried = sum(n for (p, c), n in codes.items() if c != "OK")
            assert retried <= after + 4, codes

            # Revoked through r0: refused by r1, which read the share before, on its next call.
            mgr.keys.UpdateKeyState(key_pb.UpdateKeyStateRequest(
                key=pb.KeyRef(key_id=key.key_id, version=1), state=pb.KEY_STATE_REVOKED, reason="terminal lost"))
            time.sleep(0.5)  # the other replicas' key caches look at the audit head every 0.2 s
            with pytest.raises(ClientError) as e:
                key.sign(app, b"after revocation")
            assert e.value.code is grpc.StatusCode.FAILED_PRECONDITION
        finally:
            app.close()
            mgr.close()
            for r in replicas:
                if r.proc.poll() is None:
                    stop(r.proc, r.log)

