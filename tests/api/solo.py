"""A server process of a test's own, over mTLS, on a database the test chooses and may break.

The session's shared server (conftest.py) must not see its database dropped or
stopped; the fault tests start one of these instead. Keys are formed before the
server starts, from components the test knows, so results can be checked
independently.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hsmsvc.hsm.model import KeySpec
from hsmsvc.types import Algorithm, KeyType, KeyUsage, ModeOfUse
from hsmsvc_client import Client, ClientTls
from tests.api.conftest import ATTEMPTS, POLICY, _form, forming, launch, seal_lmk, stop
from tools.bench.pki import Identity
from tools.bench.pki import ThrowawayCA as TestCA

TABLE = "0123456789012347"


@dataclass
class Solo:
    port: int
    metrics_port: int
    ca: TestCA
    ids: dict[str, Identity]
    log: Path
    clear: dict[str, bytes]
    clients: list[Client] = field(default_factory=list)

    def client(self, name: str = "core-banking", **kw: Any) -> Client:
        """A client as ``name``: core-banking (an operator) or auditor (reads key metadata)."""
        me = self.ids[name]
        c = Client(f"127.0.0.1:{self.port}", ClientTls(self.ca.ca_file, me.cert, me.key, "localhost"), **kw)
        self.clients.append(c)
        return c

    def health(self, timeout: float = 2.0) -> int:
        """gRPC health of the whole server (service "")."""
        me = self.ids["core-banking"]
        creds = grpc.ssl_channel_credentials(Path(self.ca.ca_file).read_bytes(), Path(me.key).read_bytes(),
                                             Path(me.cert).read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{self.port}", creds,
                                 [("grpc.ssl_target_name_override", "localhost")]) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            return int(stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout).status)

    def http(self, path: str, timeout: float = 2.0) -> tuple[int, str]:
        """GET on the metrics listener: (status, body)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}{path}", timeout=timeout) as r:
                return int(r.status), r.read().decode()
        except urllib.error.HTTPError as e:
            return int(e.code), e.read().decode()

    def log_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out


@contextmanager
def solo_server(d: Path, url: str, top: str = "") -> Iterator[Solo]:
    """Keys formed on ``url`` (a ZPK pair, a PVK for PVVs), then ``hsmsvc serve`` on it (``top``: more settings)."""
    ca = TestCA(d)
    ids = {n: ca.issue(n) for n in ("core-banking", "auditor")}
    srv = ca.issue("hsmsvc-server", server=True)
    sealed_file = seal_lmk(d)
    (d / "policy.toml").write_text(POLICY)
    pin, mac = (KeyUsage.PIN_ENCRYPTION, ModeOfUse.ENCRYPT_DECRYPT), ModeOfUse.MAC_GENERATE_VERIFY
    with forming(url, sealed_file) as km:
        clear = {
            "zpk1": _form(km, KeySpec("zpk1", 1, KeyType.ZPK, Algorithm.TDES_2KEY, *pin)),
            "zpk2": _form(km, KeySpec("zpk2", 1, KeyType.ZPK, Algorithm.TDES_2KEY, *pin)),
            "pvk": _form(km, KeySpec("pvk-visa", 1, KeyType.PVK, Algorithm.TDES_2KEY,
                                     KeyUsage.PIN_VERIFICATION_VISA_PVV, mac)),
        }
    proc, info = launch(d, url, sealed_file, srv, ca, ATTEMPTS, top=top)
    solo = Solo(info["port"], info["metrics_port"], ca, ids, d / "server.log", clear)
    try:
        yield solo
    finally:
        for c in solo.clients:
            c.close()
        if proc.poll() is None:
            stop(proc, solo.log)
        else:
            raise AssertionError("the server died:\n" + solo.log.read_text()[-3000:])

