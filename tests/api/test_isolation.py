"""A slow dependency delays only its own calls (issue 26): a real server on PostgreSQL, with
its executor cut to two threads and two waiting calls per lane so the bounds show.

Every PIN answer is checked with pyca/cryptography (tests/reference.py).
"""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import grpc
import psycopg
import pytest

from hsmsvc.hsm.model import KeySpec
from hsmsvc.types import Algorithm, KeyType, KeyUsage, ModeOfUse
from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import key_sync_service_pb2 as ks
from hsmsvc_client.v1 import pin_service_pb2 as pin_pb
from hsmsvc_client.v1 import types_pb2 as pb
from hsmsvc_client import Client, ClientError
from tests import pg
from tests import reference as ind
from tests.api.conftest import POLICY, _form, forming, launch, seal_lmk, stop, template
from tools.bench.pki import ThrowawayCA

PAN = "4012345678909"
ZONE = "iso-zone"
LIMIT = 120
SETTINGS = "executor_threads = 2\nexecutor_queue = 2\n"
BATCH_JOB = """
[[principals]]
name = "batch-job"
roles = ["operator"]
keys = ["iso.*"]
"""
ATTEMPTS = f"\n[attempts]\nper_pan = 3\nper_principal = {LIMIT}\nwindow_seconds = 3600\n"


@dataclass
class Server:
    url: str
    tpk: bytes
    zpk: bytes
    operator: Client
    manager: Client
    batcher: Client
    peer: subprocess.Popen[bytes]
    """Another hsmsvc, configured as the peer of zone ``iso-zone``."""


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    d = tmp_path_factory.mktemp("isolation")
    ca = ThrowawayCA(d)
    ids = {n: ca.issue(n) for n in ("core-banking", "key-manager", "batch-job")}
    cert = ca.issue("hsmsvc-server", server=True)
    sealed_file = seal_lmk(d)
    (d / "policy.toml").write_text(POLICY + BATCH_JOB)
    (d / "peer").mkdir()
    (d / "peer" / "policy.toml").write_text(POLICY)
    with pg.throwaway_db() as url, pg.throwaway_db() as peer_url:
        peer, peer_info = launch(d / "peer", peer_url, sealed_file, cert, ca)
        with forming(url, sealed_file) as km:
            E = ModeOfUse.ENCRYPT_DECRYPT
            tpk = _form(km, KeySpec("iso.tpk", 1, KeyType.TPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION, E))
            zpk = _form(km, KeySpec("iso.zpk", 1, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION, E))
            _form(km, KeySpec("zmk-iso", 1, KeyType.ZMK, Algorithm.AES_128, KeyUsage.KBPK, E, zone=ZONE))
        peers = f'\n[peers.{ZONE}]\naddress = "127.0.0.1:{peer_info["port"]}"\nserver_name = "localhost"\n'
        proc, info = launch(d, url, sealed_file, cert, ca, ATTEMPTS + peers, top=SETTINGS)

        def client(name: str) -> Client:
            from hsmsvc_client import ClientTls

            i = ids[name]
            return Client(f"127.0.0.1:{info['port']}", ClientTls(ca.ca_file, i.cert, i.key, "localhost"),
                          deadline=30.0, retries=0)

        s = Server(url, tpk, zpk, client("core-banking"), client("key-manager"), client("batch-job"), peer)
        try:
            yield s
        finally:
            for c in (s.operator, s.manager, s.batcher):
                c.close()
            stop(proc, d / "server.log")
            peer.send_signal(signal.SIGCONT)
            stop(peer, d / "peer" / "server.log")


def _translate(s: Server) -> float:
    """One TranslatePin, checked independently; returns its latency in seconds."""
    pin = f"{secrets.randbelow(10**6):06d}"
    started = time.perf_counter()
    out = s.operator.translate_pin("iso.tpk", "iso.zpk", ind.tdes_ecb(s.tpk, ind.iso0(pin, PAN)), pan=PAN)
    took = time.perf_counter() - started
    assert ind.decode_iso0(ind.tdes_ecb(s.zpk, out, decrypt=True), PAN) == pin
    return took


def _p99(samples: list[float]) -> float:
    return sorted(samples)[int(len(samples) * 0.99) - 1]


def _generate(s: Server) -> key_pb.GenerateKeyResponse:
    kid = f"iso.dek-{secrets.token_hex(4)}"
    return s.manager.keys.GenerateKey(key_pb.GenerateKeyRequest(template=template(
        kid, pb.KEY_TYPE_DEK, pb.ALGORITHM_AES_128, pb.KEY_USAGE_DATA, pb.MODE_OF_USE_ENCRYPT_DECRYPT)))


def _waiting_on_locks(url: str, n: int) -> None:
    """Until ``n`` of the server's sessions wait on a lock."""
    admin = url.replace("postgresql+psycopg://", "postgresql://")
    deadline = time.monotonic() + 10
    with psycopg.connect(admin, autocommit=True) as c:
        while time.monotonic() < deadline:
            row = c.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'").fetchone()
            if row is not None and row[0] >= n:
                return
            time.sleep(0.02)
    raise AssertionError(f"{n} sessions never waited on the lock")


def test_a_stalled_store_write_delays_only_its_own_calls_and_the_queue_is_bounded(srv: Server) -> None:
    """Key writes stalled on a locked audit table hold the key-management lane; translations go on
    (p99 under 100 ms, every answer right); past the lane's bound a call is refused at once."""
    for _ in range(20):
        _translate(srv)  # warm: the route and both keys are cached
    admin = srv.url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin) as locker, ThreadPoolExecutor(4) as pool:
        locker.execute("LOCK TABLE audit IN EXCLUSIVE MODE")  # reads go on, audited writes wait
        stalled: list[Future[key_pb.GenerateKeyResponse]] = [pool.submit(_generate, srv) for _ in range(2)]
        _waiting_on_locks(srv.url, 2)
        queued = [pool.submit(_generate, srv) for _ in range(2)]
        deadline = time.monotonic() + 5
        while not all(f.running() for f in queued) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)  # both queued calls have reached the server (loopback: well under a millisecond)
        started = time.monotonic()
        with pytest.raises(ClientError) as refused:
            _generate(srv)
        assert refused.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert time.monotonic() - started < 1.0
        latencies = [_translate(srv) for _ in range(300)]
        assert _p99(latencies) < 0.1, f"p99 {_p99(latencies) * 1000:.1f} ms while key writes stall"
        locker.rollback()
        for f in stalled + queued:
            assert f.result(30).key.state == pb.KEY_STATE_ACTIVE


def _bad_batch(s: Server, n: int) -> pin_pb.TranslatePinBatchResponse:
    pans = [PAN] * n
    # Random blocks under the TPK: each fails the format 0 checks after decryption (a valid
    # one by chance is counted below and only tightens the bound).
    return s.batcher.pins.TranslatePinBatch(pin_pb.TranslatePinBatchRequest(
        source_key=pb.KeyRef(key_id="iso.tpk"), source_format=pb.PIN_BLOCK_FORMAT_ISO_0,
        destination_key=pb.KeyRef(key_id="iso.zpk"), destination_format=pb.PIN_BLOCK_FORMAT_ISO_0,
        pin_blocks=secrets.token_bytes(8 * n), pans=pans))


def _principal_failures(url: str, name: str) -> int:
    admin = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin) as c:
        row = c.execute("SELECT failures FROM pin_attempts WHERE subject = %s", (f"principal:{name}",)).fetchone()
    return 0 if row is None else int(row[0])


def test_a_bad_batch_stops_at_the_principals_limit_in_one_write_and_freezes_nothing(srv: Server) -> None:
    """10,000 bad blocks: exactly the principal's remaining failures are deciphered and counted
    (one store write for the run), the rest refused undeciphered; translations meanwhile keep a
    p99 under 100 ms."""
    done = threading.Event()
    latencies: list[float] = []

    def load() -> None:
        while not done.is_set():
            latencies.append(_translate(srv))

    t = threading.Thread(target=load)
    t.start()
    try:
        started = time.monotonic()
        r = _bad_batch(srv, 10_000)
        took = time.monotonic() - started
    finally:
        done.set()
        t.join()
    invalid = [e for e in r.errors if e.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]]
    refused = [e for e in r.errors if e.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]]
    assert len(invalid) == LIMIT and len(refused) == 10_000 - LIMIT - (10_000 - len(r.errors))
    assert [e.index for e in refused] == list(range(10_000 - len(refused), 10_000))
    assert _principal_failures(srv.url, "batch-job") == LIMIT
    assert took < 5.0, f"the batch took {took:.1f} s"
    assert latencies and _p99(latencies) < 0.1, f"p99 {_p99(latencies) * 1000:.1f} ms beside the batch"
    again = _bad_batch(srv, 100)
    assert [e.code for e in again.errors] == [grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]] * 100
    admin = srv.url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin) as c:
        rows = c.execute("SELECT detail FROM audit WHERE action = 'pin.translate.failed' "
                         "AND actor = 'batch-job'").fetchall()
    assert len(rows) == 1 and json.loads(rows[0][0])["failures"] == str(LIMIT)


def test_a_stopped_peer_delays_only_its_own_key_change(srv: Server) -> None:
    """StartKeyChange(deliver) to a SIGSTOPped peer answers within the courier's timeout with the
    change made and not confirmed (not UNAVAILABLE, which a client would retry); translations
    meanwhile keep a p99 under 100 ms; asking again resends the same notice."""
    srv.peer.send_signal(signal.SIGSTOP)
    try:
        with ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            change = pool.submit(srv.manager.sync.StartKeyChange, ks.StartKeyChangeRequest(zone=ZONE, deliver=True))
            latencies = []
            while not change.done():
                latencies.append(_translate(srv))
            r = change.result()
            took = time.monotonic() - started
    finally:
        srv.peer.send_signal(signal.SIGCONT)
    assert not r.confirmed and r.delivery_error.startswith("peer: ") and "DEADLINE_EXCEEDED" in r.delivery_error
    assert 4.0 < took < 8.0, f"delivery gave up after {took:.1f} s"
    assert len(latencies) > 20 and _p99(latencies) < 0.1, f"p99 {_p99(latencies) * 1000:.1f} ms"
    again = srv.manager.sync.StartKeyChange(ks.StartKeyChangeRequest(zone=ZONE, deliver=True))
    # The running peer refuses it (it holds no ZMK for the zone): still an answer, same notice.
    assert not again.confirmed and again.notice.sequence == r.notice.sequence and again.delivery_error
