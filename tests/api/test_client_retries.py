"""The SDK's defaults ride out a server restart: SIGKILL under load, restart on the same port, 0 failed calls.

Real processes: ``hsmsvc serve`` on a throw-away PostgreSQL database with the
published demo keys, and client threads making idempotent calls through
:class:`hsmsvc_client.Client` with its default settings. Every answer is
checked against pyca/cryptography (the demo keys' clear values are public).
"""

from __future__ import annotations

import os
import secrets
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hsmsvc import devseed
from hsmsvc.hsm.soft.backend import SoftBackend
from hsmsvc.keys.store import KeyStore
from hsmsvc_client import Client, ClientError, ClientTls
from tests import pg
from tests import reference as ind
from tests.api.conftest import PASSPHRASE, POLICY, launch, seal_lmk, stop
from tests.reference import tdes_kcv
from tools.bench.pki import ThrowawayCA as TestCA

CLEAR = {spec.key_id: clear for spec, clear in devseed.DEMO_KEYS}
PAN, PIN = "4012345678909", "4321"


def _calls(core: Client, auditor: Client) -> dict[str, Callable[[], None]]:
    """Idempotent calls (hsmsvc_client.IDEMPOTENT), each checking its answer."""
    block = ind.tdes_ecb(CLEAR["demo-zpk-a"], ind.iso0(PIN, PAN))
    want_block = ind.tdes_ecb(CLEAR["demo-zpk-b"], ind.iso0(PIN, PAN))
    want_kcv = tdes_kcv(CLEAR["demo-zpk-b"])

    def translate() -> None:
        assert core.translate_pin("demo-zpk-a", "demo-zpk-b", block, pan=PAN) == want_block

    def mac() -> None:
        data = secrets.token_bytes(16)
        assert core.generate_mac("demo-mak", data) == ind.retail_mac(CLEAR["demo-mak"], data)

    def get_key() -> None:
        assert auditor.get_key("demo-zpk-b").kcv == want_kcv

    return {"TranslatePin": translate, "GenerateMac": mac, "GetKey": get_key}


def test_sigkill_and_restart_under_load_fails_no_idempotent_call(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    ca = TestCA(tmp_path)
    srv = ca.issue("hsmsvc-server", server=True)
    sealed_file = seal_lmk(tmp_path)
    (tmp_path / "policy.toml").write_text(POLICY)
    with pg.throwaway_db() as url:
        backend = SoftBackend.from_sealed(sealed_file, PASSPHRASE.encode())
        store = KeyStore(url, backend)
        store.migrate()
        list(devseed.seed(store, backend))
        store.close()
        backend.close()
        proc, info = launch(tmp_path, url, sealed_file, srv, ca)
        port = info["port"]

        def client(who: str) -> Client:
            ident = ca.issue(who)
            return Client(f"127.0.0.1:{port}", ClientTls(ca.ca_file, ident.cert, ident.key, "localhost"))

        core, auditor = client("core-banking"), client("auditor")
        calls = _calls(core, auditor)
        for fn in calls.values():
            fn()  # all good before the kill
        stop_load = threading.Event()
        failures: list[str] = []
        done: list[tuple[float, float, str]] = []  # (started, ended, name) of each call that succeeded
        lock = threading.Lock()

        def load(name: str, fn: Callable[[], None]) -> None:
            while not stop_load.is_set():
                t0 = time.monotonic()
                try:
                    fn()
                except (ClientError, AssertionError) as e:
                    with lock:
                        failures.append(f"{name}: {e}")
                    continue
                with lock:
                    done.append((t0, time.monotonic(), name))

        threads = [threading.Thread(target=load, args=(n, fn), daemon=True)
                   for n, fn in [*calls.items(), ("TranslatePin", calls["TranslatePin"])]]
        restarted: Any = None
        try:
            for t in threads:
                t.start()
            time.sleep(1.0)
            killed = time.monotonic()
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(10) == -signal.SIGKILL
            # Same port, same store and LMK; launch() waits for a fresh ready file.
            (tmp_path / "ready.json").unlink()
            monkeypatch.setenv("HSMSVC_LISTEN", f"127.0.0.1:{port}")
            restarted, _ = launch(tmp_path, url, sealed_file, srv, ca)
            ready = time.monotonic()
            # Until every kind of call has started and succeeded after the restart: one still in its
            # retry backoff from before the kill may take a few seconds to start its next call.
            deadline = ready + 10
            while ({name for start, _, name in list(done) if start > ready} != set(calls)
                   and time.monotonic() < deadline):
                time.sleep(0.05)
        finally:
            stop_load.set()
            for t in threads:
                t.join(15)
            core.close()
            auditor.close()
            if restarted is not None:
                stop(restarted, tmp_path / "server.log")
            elif proc.poll() is None:
                proc.kill()
    assert not failures, f"{len(failures)} failed idempotent calls, first: {failures[:3]}"
    before = [d for d in done if d[1] < killed]
    after = [d for d in done if d[0] > ready]
    first_back = min(end for start, end, _ in done if end > killed)
    spanning = max(end - start for start, end, _ in done)
    print(f"\ncalls ok: {len(done)} ({len(before)} before the kill, {len(after)} started after the restart); "
          f"restart took {ready - killed:.2f} s; first answer {first_back - killed:.2f} s after the kill; "
          f"longest call (retries included) {spanning:.2f} s")
    assert before and after
    assert {name for _, _, name in after} == set(calls)


def test_a_cancelled_idempotent_call_is_tried_again_and_a_key_change_is_not() -> None:
    """A draining gRPC server answers CANCELLED to calls it received but had not started
    (grpc/grpc#41785; one in ~8,000 calls at a SIGTERM in tests/ops/test_replicas.py). The SDK
    cancels nothing itself, so it retries an idempotent call on CANCELLED as on UNAVAILABLE;
    a call that changes a key it still never repeats."""
    from concurrent import futures

    import grpc

    from hsmsvc_client.v1 import key_service_pb2 as key_pb
    from hsmsvc_client.v1 import key_service_pb2_grpc as key_grpc
    from hsmsvc_client.v1 import types_pb2 as pb

    seen: list[str] = []

    class Draining(key_grpc.KeyServiceServicer):  # type: ignore[misc]
        """Cancels the first call of each method, as a server in its shutdown does; answers later ones."""

        def GetKey(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC's method name)
            seen.append("GetKey")
            if seen.count("GetKey") == 1:
                context.abort(grpc.StatusCode.CANCELLED, "Cancelled")
            return key_pb.GetKeyResponse(key=pb.KeyInfo(key_id=request.key.key_id))

        def GenerateKey(self, request: Any, context: Any) -> Any:  # noqa: N802
            seen.append("GenerateKey")
            context.abort(grpc.StatusCode.CANCELLED, "Cancelled")

    server = grpc.server(futures.ThreadPoolExecutor(2))
    key_grpc.add_KeyServiceServicer_to_server(Draining(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    c = Client.insecure(f"127.0.0.1:{port}")
    try:
        assert c.get_key("zpk1").key_id == "zpk1"
        with pytest.raises(ClientError) as e:
            c.keys.GenerateKey(key_pb.GenerateKeyRequest())
        assert e.value.code is grpc.StatusCode.CANCELLED
    finally:
        c.close()
        server.stop(None)
    assert seen == ["GetKey", "GetKey", "GenerateKey"]


def test_a_call_moves_to_the_next_address_at_once_and_backs_off_only_after_a_round() -> None:
    """Client-side round-robin with one address dead: each call that lands on it goes on to the live
    one at once. (Sleeping the backoff before each move cost a third of the calls 40-110 ms with
    one replica of three up, tests/ops/test_replicas.py.) With every address dead the backoff
    still applies, once per round."""
    import socket
    from concurrent import futures

    import grpc

    from hsmsvc_client.v1 import key_service_pb2 as key_pb
    from hsmsvc_client.v1 import key_service_pb2_grpc as key_grpc
    from hsmsvc_client.v1 import types_pb2 as pb

    class Live(key_grpc.KeyServiceServicer):  # type: ignore[misc]
        def GetKey(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC's method name)
            return key_pb.GetKeyResponse(key=pb.KeyInfo(key_id=request.key.key_id))

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    server = grpc.server(futures.ThreadPoolExecutor(2))
    key_grpc.add_KeyServiceServicer_to_server(Live(), server)
    live = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    server.start()
    # A backoff of 1 s: a single sleep before moving on would show as half a second or more.
    c = Client.insecure([dead, live], backoff=1.0)
    alone = Client.insecure([dead, dead], backoff=1.0, retries=2)
    try:
        started = time.monotonic()
        assert [c.get_key(f"k{i}").key_id for i in range(6)] == [f"k{i}" for i in range(6)]
        took = time.monotonic() - started
        started = time.monotonic()
        with pytest.raises(ClientError):
            alone.get_key("k")  # dead, dead (a round: back off), dead
        backed_off = time.monotonic() - started
    finally:
        c.close()
        alone.close()
        server.stop(None)
    assert took < 0.5, f"six calls, three through the dead address first, took {took:.2f} s"
    assert backed_off >= 0.5, f"a round of dead addresses was retried after {backed_off:.2f} s"
