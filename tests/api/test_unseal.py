"""Dual control of the running service (issue 29): a server on a 2-of-3 share-sealed LMK starts sealed.

A real ``hsmsvc serve`` over mTLS on loopback; custodians give their shares
under their own certificates. The shares are made with the library (the
ceremony that makes them is tests/test_unseal_cli.py's); the audit chain is
read from the database and verified under the LMK the shares open.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import create_engine, text

from hsmsvc.hsm.soft import shares, sharesealed
from hsmsvc.hsm.soft.backend import SoftBackend
from hsmsvc.keys.store import KeyStore
from hsmsvc.types import Algorithm
from hsmsvc_client.v1 import ceremony_service_pb2 as cer_pb
from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import types_pb2 as pb
from hsmsvc_client import Client, ClientError, ClientTls
from tests.api.conftest import POLICY, launch, stop, template
from tools.bench.pki import Identity
from tools.bench.pki import ThrowawayCA as TestCA

SEALED = "sealed: {} of 2 shares entered; run `hsmsvc unseal`"
NAMES = ("custodian-1", "custodian-2", "custodian-3", "key-manager", "core-banking", "auditor", "stranger")
SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


def share_texts(made: list[shares.Share]) -> list[str]:
    return [shares.text(seal=s.seal, index=s.index, value=s.value) for s in made]


def seal_with_shares(path: Path, lmk: bytes | None = None) -> tuple[list[str], bytes]:
    """A 2-of-3 share-sealed LMK at ``path``; the three shares' texts and the LMK."""
    lmk = lmk or secrets.token_bytes(32)
    blob, _, made = sharesealed.seal(Algorithm.AES_256, lmk, threshold=2, holders=["alice", "bob", "carol"])
    path.write_bytes(blob)
    return share_texts(made), lmk


@dataclass
class Sealed:
    port: int
    metrics_port: int
    ca: TestCA
    ids: dict[str, Identity]
    log: Path
    url: str
    sealed_file: Path
    shares: list[str]
    proc: subprocess.Popen[bytes]

    def client(self, name: str) -> Client:
        me = self.ids[name]
        return Client(f"127.0.0.1:{self.port}", ClientTls(self.ca.ca_file, me.cert, me.key, "localhost"),
                      retries=0)

    def submit(self, name: str, share: str) -> cer_pb.SealStatus:
        with self.client(name) as c:
            return c.ceremony.SubmitUnsealShare(cer_pb.SubmitUnsealShareRequest(share=share.encode())).status

    def status(self, name: str = "auditor") -> cer_pb.SealStatus:
        with self.client(name) as c:
            return c.ceremony.GetSealStatus(cer_pb.GetSealStatusRequest()).status

    def health(self) -> int:
        me = self.ids["auditor"]
        creds = grpc.ssl_channel_credentials(Path(self.ca.ca_file).read_bytes(), Path(me.key).read_bytes(),
                                             Path(me.cert).read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{self.port}", creds,
                                 [("grpc.ssl_target_name_override", "localhost")]) as ch:
            check = health_pb2_grpc.HealthStub(ch).Check
            return int(check(health_pb2.HealthCheckRequest(service=""), timeout=5).status)

    def stream(self, name: str) -> tuple[grpc.StatusCode, str]:
        """A bidi stream opened and left empty: the sealed answer comes without a message being read."""
        me = self.ids[name]
        creds = grpc.ssl_channel_credentials(Path(self.ca.ca_file).read_bytes(), Path(me.key).read_bytes(),
                                             Path(me.cert).read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{self.port}", creds,
                                 [("grpc.ssl_target_name_override", "localhost")]) as ch:
            done = threading.Event()

            def nothing_yet() -> Iterator[bytes]:
                done.wait(10)  # the stream stays open, sending nothing, until the answer is in
                yield from ()

            call = ch.stream_stream("/hsmsvc.v1.PinService/StreamTranslatePin")(nothing_yet(), timeout=5)
            try:
                list(call)
            except grpc.RpcError as e:
                return e.code(), e.details() or ""
            finally:
                done.set()
        return grpc.StatusCode.OK, ""

    def http(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}{path}", timeout=5) as r:
                return int(r.status), r.read().decode()
        except urllib.error.HTTPError as e:
            return int(e.code), e.read().decode()


def _refused(fn: Any, *a: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(ClientError) as e:
        fn(*a)
    return e.value.code, e.value.details


def _generate(c: Client, key_id: str) -> Any:
    return c.keys.GenerateKey(key_pb.GenerateKeyRequest(template=template(
        key_id, pb.KEY_TYPE_DEK, pb.ALGORITHM_AES_256, pb.KEY_USAGE_DATA, pb.MODE_OF_USE_ENCRYPT_DECRYPT)))


def _start_sealed(tmp_path: Path, timeout_seconds: float) -> Sealed:
    """A real ``hsmsvc serve`` on a 2-of-3 share-sealed LMK, mTLS, the test policy; started sealed."""
    ca = TestCA(tmp_path)
    ids = {n: ca.issue(n) for n in NAMES}
    srv = ca.issue("hsmsvc-server", server=True)
    (tmp_path / "policy.toml").write_text(POLICY)
    sealed_file = tmp_path / "lmk.sealed"
    texts, _ = seal_with_shares(sealed_file)
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    backend = f'[backend]\nkind = "soft"\nsealed_lmk = "{sealed_file}"\n'
    proc, info = launch(tmp_path, url, sealed_file, srv, ca, backend=backend,
                        top=f"unseal_timeout_seconds = {timeout_seconds}")
    return Sealed(info["port"], info["metrics_port"], ca, ids, tmp_path / "server.log", url, sealed_file, texts, proc)


@pytest.fixture
def sealed_server(tmp_path: Path) -> Iterator[Sealed]:
    s = _start_sealed(tmp_path, 600)
    try:
        yield s
    finally:
        if s.proc.poll() is None:
            stop(s.proc, s.log)


def test_a_share_sealed_server_serves_only_once_two_custodians_have_given_their_shares(sealed_server: Sealed) -> None:
    s = sealed_server
    mgr, app, stranger = s.client("key-manager"), s.client("core-banking"), s.client("stranger")
    try:
        # Sealed: every call UNAVAILABLE with the progress; health NOT_SERVING; /readyz 503 "sealed".
        assert _refused(_generate, mgr, "dek-early") == (grpc.StatusCode.UNAVAILABLE, SEALED.format(0))
        assert _refused(app.keys.GetKeyCheckValue, key_pb.GetKeyCheckValueRequest(
            key=pb.KeyRef(key_id="x")))[0] == grpc.StatusCode.UNAVAILABLE
        assert _refused(_generate, stranger, "dek-x")[0] == grpc.StatusCode.PERMISSION_DENIED
        assert s.health() == NOT_SERVING
        assert s.stream("core-banking") == (grpc.StatusCode.UNAVAILABLE, SEALED.format(0))
        assert s.http("/readyz") == (503, "sealed: 0 of 2 shares entered\n")
        st = s.status()
        assert (st.sealed, st.threshold, st.share_count, st.entered) == (True, 2, 3, 0)
        assert st.seal_id.startswith(s.shares[0][:8])

        # Only custodians give shares; the principal is the certificate's.
        assert _refused(s.submit, "key-manager", s.shares[0])[0] == grpc.StatusCode.PERMISSION_DENIED
        assert _refused(s.submit, "stranger", s.shares[0])[0] == grpc.StatusCode.PERMISSION_DENIED

        # One share is not enough.
        st = s.submit("custodian-1", s.shares[0])
        assert (st.sealed, st.entered, list(st.entered_indices)) == (True, 1, [1])
        assert st.HasField("expire_time")
        assert _refused(_generate, mgr, "dek-early") == (grpc.StatusCode.UNAVAILABLE, SEALED.format(1))
        # The same custodian twice, the same index twice, a mistyped share: refused, nothing changes.
        code, msg = _refused(s.submit, "custodian-1", s.shares[1])
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "custodian-1 already entered a share" in msg
        code, msg = _refused(s.submit, "custodian-2", s.shares[0])
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "index 1 was already entered" in msg
        typo = s.shares[1][:20] + ("0" if s.shares[1][20] != "0" else "1") + s.shares[1][21:]
        assert _refused(s.submit, "custodian-2", typo)[0] == grpc.StatusCode.INVALID_ARGUMENT
        assert s.status().entered == 1

        # A share of another seal (its first digits, which are public): refused at once, nothing changes.
        other, _ = seal_with_shares(s.sealed_file.parent / "other.sealed")
        code, msg = _refused(s.submit, "custodian-2", other[1])
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "right envelope" in msg and s.status().entered == 1
        # A well-formed wrong share of this seal: the opening fails with one answer, whichever was wrong,
        # and entry is reset.
        wrong = [shares.text(seal=x[:8], index=int(x[9]), value=secrets.token_bytes(32)) for x in s.shares]
        answers = set()
        for first, second in ((s.shares[0], wrong[1]), (wrong[0], s.shares[2])):
            if s.status().entered == 0:
                s.submit("custodian-1", first)
            answers.add(_refused(s.submit, "custodian-2", second))
            assert s.status().entered == 0
        assert answers == {(grpc.StatusCode.PERMISSION_DENIED,
                            "shares: the shares entered do not open the LMK; entry reset")}
        assert "hsmsvc_unseal_failures_total 2.0" in s.http("/metrics")[1]

        # Two right shares, from two custodians: the LMK opens and the server serves.
        assert s.submit("custodian-3", s.shares[2]).entered == 1
        st = s.submit("custodian-1", s.shares[0])
        assert not st.sealed and st.seal_id == s.status().seal_id
        key = _generate(mgr, "dek-after").key
        assert app.keys.GetKeyCheckValue(key_pb.GetKeyCheckValueRequest(
            key=pb.KeyRef(key_id="dek-after"))).kcv == key.kcv
        assert s.health() == SERVING
        deadline = time.monotonic() + 5
        while s.http("/readyz")[0] != 200:
            assert time.monotonic() < deadline, s.http("/readyz")
            time.sleep(0.1)
        assert "hsmsvc_sealed 0.0" in s.http("/metrics")[1]
        code, msg = _refused(s.submit, "custodian-2", s.shares[1])
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "not sealed" in msg
    finally:
        for c in (mgr, app, stranger):
            c.close()
    stop(s.proc, s.log)

    # The audit chain holds lmk.unseal with the principals that gave the shares, and verifies.
    engine = create_engine(s.url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT actor, action, detail FROM audit ORDER BY seq")).all()
    engine.dispose()
    assert rows[0][:2] == ("custodian-3,custodian-1", "lmk.unseal")
    detail = json.loads(rows[0][2]) if rows[0][2].startswith(("{", "[")) else rows[0][2]
    flat = json.dumps(detail)
    for want in ("custodian-3,custodian-1", "3,1", "carol,alice", "2 of 3"):
        assert want in flat, flat
    backend = SoftBackend.from_shares(s.sealed_file, [shares.parse(s.shares[0]), shares.parse(s.shares[1])])
    store = KeyStore(s.url, backend)
    try:
        assert store.verify_audit().ok
    finally:
        store.close()
        backend.close()

    # No share, in any spelling, reached the server's output.
    log = s.log.read_text()
    assert "unseal: share entered" in log and "do not open the LMK" in log
    for t in (*s.shares, *other):
        digits = re.sub("[^0-9A-F]", "", t)[9:-4]
        for spelling in (t, t.lower(), digits, digits.lower(), t.replace("-", " ")):
            assert spelling not in log


def test_shares_expire_when_the_threshold_is_not_reached_in_time(tmp_path: Path) -> None:
    s = _start_sealed(tmp_path, 1.5)
    texts, proc = s.shares, s.proc
    try:
        assert s.submit("custodian-1", texts[0]).entered == 1
        deadline = time.monotonic() + 10
        while s.status().entered:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert s.status().sealed
        assert "shares expired before the threshold" in s.log.read_text()
        s.submit("custodian-2", texts[1])
        assert not s.submit("custodian-3", texts[2]).sealed
    finally:
        stop(proc, s.log)


def _serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hsmsvc", "serve", "--insecure-dev", "--listen", "127.0.0.1:0",
                           "--metrics-listen", "", "--store", f"sqlite:///{tmp_path / 'keys.db'}", *args],
                          capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "PP": "x" * 20})


def test_a_share_sealed_lmk_is_refused_with_several_workers_or_a_passphrase(tmp_path: Path) -> None:
    seal_with_shares(tmp_path / "lmk.sealed")
    r = _serve(tmp_path, "--sealed", str(tmp_path / "lmk.sealed"), "--workers", "2")
    assert r.returncode == 2 and "workers: a share-sealed LMK is opened by custodians in one server process" in r.stderr
    r = _serve(tmp_path, "--sealed", str(tmp_path / "lmk.sealed"), "--passphrase-env", "PP")
    assert r.returncode == 2 and "remove the passphrase setting" in r.stderr
    assert not (tmp_path / "keys.db").exists()


def test_a_passphrase_sealed_server_serves_without_a_gate_and_says_it_is_not_share_sealed(server: Any) -> None:
    """The session's server (passphrase-sealed): the unseal RPCs answer, precisely, that there is nothing to do."""
    me = server.ids["custodian-1"]
    with Client(f"127.0.0.1:{server.port}", ClientTls(server.ca.ca_file, me.cert, me.key, "localhost")) as c:
        st = c.ceremony.GetSealStatus(cer_pb.GetSealStatusRequest()).status
        assert (st.sealed, st.seal_id, st.threshold) == (False, "", 0)
        code, msg = _refused(c.ceremony.SubmitUnsealShare, cer_pb.SubmitUnsealShareRequest(share=b"x" * 95))
    assert (code, msg) == (grpc.StatusCode.FAILED_PRECONDITION,
                           "lmk: not share-sealed: this server's LMK opens without custodians' shares")
