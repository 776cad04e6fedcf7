"""Issue 31: the server's log is JSON lines only, grpc's own included; refused clients are logged
with their certificate's subject and their address; a stream cut by shutdown with its real code.

Real ``hsmsvc serve`` processes over mTLS on loopback; clients with certificates from the
test CA that the policy does not name, from another CA, and with none.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from hsmsvc.api.logs import foreign_line
from hsmsvc.hsm.model import KeySpec
from hsmsvc.types import Algorithm, KeyType, KeyUsage, ModeOfUse
from hsmsvc_client.v1 import mac_service_pb2 as mac_pb
from hsmsvc_client.v1 import mac_service_pb2_grpc as mac_grpc
from hsmsvc_client.v1 import types_pb2 as pb
from hsmsvc_client import ClientError, ClientTls
from tests import pg
from tests.api.conftest import POLICY, Env, _form, forming, launch, seal_lmk
from tools.bench.pki import Identity
from tools.bench.pki import ThrowawayCA as TestCA


def records(log: Path) -> list[dict[str, Any]]:
    """Every line of the log as JSON: one that is not fails the test."""
    out = []
    for n, line in enumerate(log.read_text().splitlines(), 1):
        try:
            out.append(json.loads(line))
        except ValueError:
            pytest.fail(f"line {n} of the server's stderr is not JSON: {line!r}")
    return out


def wait_record(log: Path, what: str, **fields: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while True:
        for r in records(log):
            if all(r.get(k) == v for k, v in fields.items()):
                return r
        assert time.monotonic() < deadline, f"no log line for {what} ({fields})"
        time.sleep(0.05)


def call_as(server: Env, ident: Identity | None, ca_file: str) -> grpc.StatusCode:
    """One health check over mTLS as ``ident`` (no client certificate: None)."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    creds = grpc.ssl_channel_credentials(
        Path(ca_file).read_bytes(),
        Path(ident.key).read_bytes() if ident else None, Path(ident.cert).read_bytes() if ident else None)
    with grpc.secure_channel(f"127.0.0.1:{server.port}", creds,
                             [("grpc.ssl_target_name_override", "localhost")]) as ch:
        try:
            health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        except grpc.RpcError as e:
            return e.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def test_a_foreign_line_becomes_a_json_record() -> None:
    grpc_line = b"E1201 10:11:12.131415   4242 ssl_transport_security.cc:1665] Handshake failed with error\n"
    r = json.loads(foreign_line(grpc_line, now=0.5))
    assert r == {"time": "1970-01-01T00:00:00.500Z", "level": "ERROR", "logger": "grpc", "source": "grpc",
                 "message": "Handshake failed with error", "request_id": "-",
                 "where": "ssl_transport_security.cc:1665"}
    r = json.loads(foreign_line(b'Traceback (most recent call last): "x"\n', now=0))
    assert (r["level"], r["logger"], r["message"]) == ("WARNING", "stderr", 'Traceback (most recent call last): "x"')


def test_handshake_failures_leave_only_json_on_stderr(server: Env, tmp_path: Path) -> None:
    other = TestCA(tmp_path)  # a CA the server does not trust
    assert call_as(server, other.issue("core-banking"), server.ca.ca_file) == grpc.StatusCode.UNAVAILABLE
    assert call_as(server, None, server.ca.ca_file) == grpc.StatusCode.UNAVAILABLE
    # grpc's C core writes "I1207 05:21:37.863  4242 ssl_transport_security.cc:2563] Handshake failed ...".
    deadline = time.monotonic() + 5
    while not (found := [r for r in records(server.log)
                         if r.get("source") == "grpc" and r["message"].startswith("Handshake failed")]):
        assert time.monotonic() < deadline, "no JSON record of grpc's handshake failure"
        time.sleep(0.05)
    assert found[-1]["logger"] == "grpc" and found[-1]["where"].startswith("ssl_transport_security.cc:")
    assert found[-1]["level"] in ("INFO", "WARNING", "ERROR")


def test_a_client_the_policy_does_not_name_is_logged_with_subject_and_address(server: Env) -> None:
    stranger = server.client("stranger", retries=0)
    with pytest.raises(ClientError) as e:
        stranger.generate_mac("mak-x919", b"who am I")
    assert e.value.code is grpc.StatusCode.PERMISSION_DENIED
    r = wait_record(server.log, "the refused client", logger="hsmsvc.identity", message="client refused",
                    subject="CN=stranger,O=hsmsvc throw-away")
    assert r["level"] == "WARNING" and r["peer"].startswith("ipv4:127.0.0.1:"), r
    assert r["reason"] == "principal: the client certificate names no principal of the policy"


def test_a_stream_cut_by_shutdown_is_logged_with_the_code_its_client_saw(tmp_path: Path) -> None:
    """Issue 31: a client saw UNAVAILABLE after 13 replies, and the server logged the stream ``code OK``."""
    ca = TestCA(tmp_path)
    ident = ca.issue("core-banking")
    srv = ca.issue("hsmsvc-server", server=True)
    sealed_file = seal_lmk(tmp_path)
    (tmp_path / "policy.toml").write_text(POLICY)
    with pg.throwaway_db() as url:
        with forming(url, sealed_file) as km:
            _form(km, KeySpec("cut.mak", 1, KeyType.MAK, Algorithm.TDES_2KEY, KeyUsage.MAC_ISO9797_ALG3,
                              ModeOfUse.MAC_GENERATE_VERIFY))
        proc, info = launch(tmp_path, url, sealed_file, srv, ca, grace=0.5)
        log = tmp_path / "server.log"
        hold = threading.Event()

        def requests() -> Iterator[mac_pb.StreamGenerateMacRequest]:
            for n in range(13):
                yield mac_pb.StreamGenerateMacRequest(correlation_id=n, request=mac_pb.GenerateMacRequest(
                    key=pb.KeyRef(key_id="cut.mak"), algorithm=pb.MAC_ALGORITHM_ISO9797_ALG3,
                    padding=pb.MAC_PADDING_METHOD_1, data=b"reply %d" % n))
            hold.wait(30)  # the stream stays open, as a front-end's does

        creds = ClientTls(ca.ca_file, ident.cert, ident.key, "localhost").credentials()
        replies, seen = 0, grpc.StatusCode.OK
        try:
            with grpc.secure_channel(f"127.0.0.1:{info['port']}", creds,
                                     [("grpc.ssl_target_name_override", "localhost")]) as ch:
                try:
                    for r in mac_grpc.MacServiceStub(ch).StreamGenerateMac(requests(), timeout=30):
                        assert r.code == 0, r.message
                        replies += 1
                        if replies == 13:
                            proc.send_signal(signal.SIGTERM)
                except grpc.RpcError as e:
                    seen = e.code()
        finally:
            hold.set()
            assert proc.wait(15) == 0, log.read_text()[-3000:]
    print("client saw", seen, "after", replies, "replies")
    assert replies == 13 and seen in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
    lines = [r for r in records(log) if r.get("method") == "MacService.StreamGenerateMac"]
    assert [(r["logger"], r["message"], r["code"]) for r in lines] == [("hsmsvc.access", "stream", seen.name)]


def test_routed_stderr_keeps_every_line_to_the_exit(tmp_path: Path) -> None:
    """Foreign lines (C-level writes to fd 2, a Python warning, a line cut off without its newline)
    come out as JSON records; ours unchanged; nothing is lost when the process exits."""
    script = r'''
import logging, os, sys, warnings
from hsmsvc.api import logs
logs.configure("INFO")
logs.route_stderr()
os.write(2, b"W1207 05:21:37.863000   4242 chttp2_server.cc:100] from C\n")
logging.getLogger("hsmsvc.test").info("ours", extra={"n": 1})
logs.ACCESS.write("rpc", "MacService.GenerateMac", "core-banking", "OK", 0.001)
warnings.warn("a warning")
sys.stderr.write("plain python line\n")
os.write(2, b"no newline at the end")
'''
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=30)
    lines = r.stderr.decode().splitlines()
    got = [json.loads(ln) for ln in lines]  # every line JSON
    assert r.returncode == 0
    by = {(g["logger"], g["message"].split(":")[-1].strip()) for g in got}
    assert ("grpc", "from C") in by and ("hsmsvc.test", "ours") in by and ("stderr", "plain python line") in by
    assert ("stderr", "no newline at the end") in by
    assert any(g["logger"] == "hsmsvc.access" and g["method"] == "MacService.GenerateMac" for g in got)
    assert any(g["logger"] == "stderr" and "a warning" in g["message"] for g in got)
    assert [g["level"] for g in got if g["logger"] == "grpc"] == ["WARNING"]
