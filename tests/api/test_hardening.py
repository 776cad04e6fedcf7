"""Issue 27's hardening: each finding of the "Low" list, against a real server where it is a server's."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import generate_latest

from hsmsvc.api import config as api_config
from hsmsvc.api.metrics import Metrics
from hsmsvc.errors import InvalidInput
from hsmsvc.hsm.model import KeySpec
from hsmsvc.hsm.config import SecretSource, SoftConfig, build
from hsmsvc.hsm.soft import sealed
from hsmsvc.hsm.soft.backend import SoftBackend
from hsmsvc.keys.hierarchy import KeyManager
from hsmsvc.keys.store import KeyStore
from hsmsvc.types import Algorithm, KeyType, KeyUsage, ModeOfUse
from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import key_service_pb2_grpc as key_grpc
from hsmsvc_client.v1 import types_pb2 as pb
from hsmsvc_client import ClientTls
from tests.api.conftest import Env
from tools.bench.pki import Identity

_BACKEND = '[backend]\nsealed_lmk = "lmk.sealed"\npassphrase_env = "HSMSVC_UNUSED"\n'
_TLS = '[tls]\ncert = "c.pem"\nkey = "k.pem"\nclient_ca = "ca.pem"\n'


def _serve_refuses(tmp_path: Path, config: str, *args: str, env: dict[str, str] | None = None) -> str:
    """``hsmsvc serve`` on ``config`` exits 2 before it binds anything; its stderr."""
    f = tmp_path / "hsmsvc.toml"
    f.write_text(config)
    r = subprocess.run([sys.executable, "-m", "hsmsvc", "serve", "--config", str(f), *args],
                       capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})
    assert r.returncode == 2, r.stderr
    return r.stderr


# -- 1. insecure-dev only for a development config on loopback ------------------------------------

def test_insecure_dev_variable_refuses_a_config_holding_tls(tmp_path: Path) -> None:
    err = _serve_refuses(tmp_path, 'store = "sqlite:///x.db"\n' + _TLS + _BACKEND, env={"HSMSVC_INSECURE_DEV": "1"})
    assert "insecure_dev" in err and "[tls]" in err


def test_insecure_dev_flag_refuses_a_config_naming_a_policy(tmp_path: Path) -> None:
    err = _serve_refuses(tmp_path, 'store = "sqlite:///x.db"\npolicy = "p.toml"\n' + _BACKEND, "--insecure-dev")
    assert "policy" in err


@pytest.mark.parametrize("listen", ["0.0.0.0:8443", "[::]:8443", "10.1.2.3:8443", "db.example:8443", "8443"])
def test_insecure_dev_refuses_a_non_loopback_address(tmp_path: Path, listen: str) -> None:
    err = _serve_refuses(tmp_path, 'store = "sqlite:///x.db"\n' + _BACKEND, "--insecure-dev", "--listen", listen)
    assert "loopback" in err


@pytest.mark.parametrize("listen", ["127.0.0.1:0", "127.0.0.2:9", "[::1]:8443", "localhost:8443"])
def test_insecure_dev_accepts_loopback(tmp_path: Path, listen: str) -> None:
    f = tmp_path / "c.toml"
    f.write_text('store = "sqlite:///x.db"\n' + _BACKEND)
    assert api_config.load(str(f), {"listen": listen}, environ={"HSMSVC_INSECURE_DEV": "1"}).insecure_dev
    with pytest.raises(InvalidInput, match="loopback"):
        api_config.load(str(f), {"listen": "0.0.0.0:1"}, environ={"HSMSVC_INSECURE_DEV": "1"})


# -- 2. request ids are plain tokens --------------------------------------------------------------

@pytest.mark.parametrize("sent,kept", [
    ("rq-1.a:b_C", True), ("x" * 64, True),
    ("a/b", False), ("x" * 65, False), ("", False), ("a b", False), ("a;b", False)])
def test_request_ids_outside_the_token_alphabet_are_replaced(server: Env, sent: str, kept: bool) -> None:
    me = server.ids["key-manager"]
    creds = ClientTls(server.ca.ca_file, me.cert, me.key, "localhost").credentials()
    with grpc.secure_channel(f"127.0.0.1:{server.port}", creds,
                             (("grpc.ssl_target_name_override", "localhost"),)) as ch:
        get = key_grpc.KeyServiceStub(ch).GetKey
        with pytest.raises(grpc.RpcError) as e:
            get(key_pb.GetKeyRequest(key=pb.KeyRef(key_id="no-such-key")), timeout=10,
                metadata=(("x-request-id", sent),))
    assert e.value.code() is grpc.StatusCode.NOT_FOUND
    rid = dict(e.value.trailing_metadata())["x-request-id"]
    assert (rid == sent) is kept
    assert re.fullmatch(r"[A-Za-z0-9._:-]{1,64}", rid)


# -- 3. the SQLite store is the service user's only ------------------------------------------------

def _sealed_lmk(d: Path, passphrase: bytes) -> Path:
    f = d / "lmk.sealed"
    f.write_bytes(sealed.seal(Algorithm.AES_256, secrets.token_bytes(32), passphrase, sealed.ScryptParams(log2_n=14)))
    return f


def test_sqlite_store_and_its_wal_files_are_created_0600(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask, under which SQLite would make them 0644
    try:
        backend = SoftBackend.from_sealed(_sealed_lmk(tmp_path, b"store-mode-passphrase"), b"store-mode-passphrase")
        db = tmp_path / "keys.db"
        store = KeyStore(f"sqlite:///{db}", backend)
        try:
            store.migrate()
            KeyManager(store, backend, "test").generate(
                KeySpec("dek", 1, KeyType.DEK, Algorithm.AES_256, KeyUsage.DATA, ModeOfUse.ENCRYPT_DECRYPT))
            files = [db, Path(f"{db}-wal"), Path(f"{db}-shm")]
            assert all(f.exists() for f in files)
            assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {f.name: 0o600 for f in files}
        finally:
            store.close()
            backend.close()
    finally:
        os.umask(old)


# -- 4. the LMK passphrase from a credential, a file descriptor, or an environment it then leaves ---

_PASS = "hardening-test-passphrase"


def _dev_server(d: Path, secret_line: str, env: dict[str, str], pass_fds: tuple[int, ...] = ()) -> None:
    """``hsmsvc serve --insecure-dev`` on SQLite with the passphrase from ``secret_line``: it must
    open the sealed LMK and answer /readyz 200; then it drains on SIGTERM."""
    lmk = _sealed_lmk(d, _PASS.encode())
    (d / "hsmsvc.toml").write_text(f'listen = "127.0.0.1:0"\nmetrics_listen = "127.0.0.1:0"\n'
                                   f'store = "sqlite:///{d / "keys.db"}"\n[backend]\nsealed_lmk = "{lmk}"\n'
                                   f'{secret_line}\n')
    ready = d / "ready.json"
    proc = subprocess.Popen([sys.executable, "-m", "hsmsvc", "serve", "--insecure-dev", "--config",
                             str(d / "hsmsvc.toml"), "--ready-file", str(ready)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, **env},
                            pass_fds=pass_fds)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert proc.poll() is None, proc.communicate()[1].decode()
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        port = json.loads(ready.read_text())["metrics_port"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
            assert r.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0


def test_passphrase_from_a_systemd_credential(tmp_path: Path) -> None:
    creds = tmp_path / "credentials"
    creds.mkdir(mode=0o700)
    (creds / "lmk-passphrase").write_text(_PASS + "\n")
    _dev_server(tmp_path, 'passphrase_credential = "lmk-passphrase"', {"CREDENTIALS_DIRECTORY": str(creds)})


def test_passphrase_from_an_inherited_file_descriptor(tmp_path: Path) -> None:
    r, w = os.pipe()
    try:
        os.write(w, _PASS.encode())
        os.close(w)
        _dev_server(tmp_path, f"passphrase_fd = {r}", {}, pass_fds=(r,))
    finally:
        os.close(r)


def test_a_file_descriptor_is_refused_where_it_would_be_read_twice(tmp_path: Path) -> None:
    err = _serve_refuses(tmp_path, 'store = "sqlite:///x.db"\nworkers = 2\n[backend]\nsealed_lmk = "l"\n'
                                   'passphrase_fd = 3\n', "--insecure-dev")
    assert "file descriptor" in err
    with pytest.raises(InvalidInput, match="credential"):
        SecretSource(credential="../etc/passwd")
    with pytest.raises(InvalidInput, match="exactly one"):
        SecretSource(env="A", fd=3)


def test_passphrase_variable_is_removed_once_read_and_not_inherited(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    var = "HSMSVC_HARDENING_PASSPHRASE"
    monkeypatch.setenv(var, _PASS)
    backend = build(SoftConfig(str(_sealed_lmk(tmp_path, _PASS.encode())), SecretSource(env=var)), forget=True)
    try:
        assert var not in os.environ
        child = subprocess.run([sys.executable, "-c", f"import os; print(os.environ.get({var!r}, 'absent'))"],
                               capture_output=True, text=True, check=True)
        assert child.stdout.strip() == "absent"
    finally:
        backend.close()


def test_server_started_with_the_variable_serves(tmp_path: Path) -> None:
    _dev_server(tmp_path, 'passphrase_env = "HSMSVC_HARDENING_PASSPHRASE"', {"HSMSVC_HARDENING_PASSPHRASE": _PASS})


# -- 5. the clientAuth EKU, and the names a principal is matched by ---------------------------------

def _get_absent_key(server: Env, ident: Identity) -> grpc.StatusCode:
    """GetKey of a key that does not exist: NOT_FOUND once the caller is a principal that may read."""
    creds = ClientTls(server.ca.ca_file, ident.cert, ident.key, "localhost").credentials()
    with grpc.secure_channel(f"127.0.0.1:{server.port}", creds,
                             (("grpc.ssl_target_name_override", "localhost"),)) as ch:
        try:
            key_grpc.KeyServiceStub(ch).GetKey(key_pb.GetKeyRequest(key=pb.KeyRef(key_id="no-such-key")), timeout=10)
        except grpc.RpcError as e:
            return e.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


@pytest.mark.parametrize("label,eku,san,code", [
    ("cn", None, (), grpc.StatusCode.NOT_FOUND),
    ("no-eku", (), (), grpc.StatusCode.PERMISSION_DENIED),
    ("server-only", (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CODE_SIGNING), (),
     grpc.StatusCode.PERMISSION_DENIED),
])
def test_a_client_certificate_must_carry_client_auth(server: Env, label: str,
                                                     eku: tuple[x509.ObjectIdentifier, ...] | None,
                                                     san: tuple[x509.GeneralName, ...], code: grpc.StatusCode) -> None:
    ident = server.ca.issue("auditor", eku=eku, san=san, file=f"auditor-{label}-{secrets.token_hex(3)}")
    got = _get_absent_key(server, ident)
    # OpenSSL may itself refuse a client certificate whose EKU lacks clientAuth (UNAVAILABLE).
    assert got is code or (label == "server-only" and got is grpc.StatusCode.UNAVAILABLE)


@pytest.mark.parametrize("san,code", [
    (x509.DNSName("auditor"), grpc.StatusCode.NOT_FOUND),
    (x509.UniformResourceIdentifier("auditor"), grpc.StatusCode.NOT_FOUND),
    (x509.RFC822Name("auditor"), grpc.StatusCode.PERMISSION_DENIED),
])
def test_a_principal_is_named_by_cn_dns_or_uri_never_email(server: Env, san: x509.GeneralName,
                                                           code: grpc.StatusCode) -> None:
    ident = server.ca.issue("not-in-policy", san=(san,), file=f"san-{type(san).__name__}-{secrets.token_hex(3)}")
    assert _get_absent_key(server, ident) is code


def test_a_certificate_naming_two_principals_is_refused(server: Env) -> None:
    ident = server.ca.issue("auditor", san=(x509.DNSName("key-manager"),), file=f"two-{secrets.token_hex(3)}")
    assert _get_absent_key(server, ident) is grpc.StatusCode.PERMISSION_DENIED


# -- 6. health and reflection for the policy's principals; metrics without key ids by default -------

def _health_and_reflection(server: Env, ident: Identity) -> tuple[grpc.StatusCode, grpc.StatusCode]:
    creds = ClientTls(server.ca.ca_file, ident.cert, ident.key, "localhost").credentials()
    out = []
    with grpc.secure_channel(f"127.0.0.1:{server.port}", creds,
                             (("grpc.ssl_target_name_override", "localhost"),)) as ch:
        for call in (lambda: health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10),
                     lambda: list(reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(
                         iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10))):
            try:
                call()
                out.append(grpc.StatusCode.OK)
            except grpc.RpcError as e:
                out.append(e.code())
    return out[0], out[1]


def test_health_and_reflection_answer_policy_principals_only(server: Env) -> None:
    assert _health_and_reflection(server, server.ids["auditor"]) == (grpc.StatusCode.OK, grpc.StatusCode.OK)
    # "stranger" holds a certificate from the same CA but is not in the policy.
    denied = grpc.StatusCode.PERMISSION_DENIED
    assert _health_and_reflection(server, server.ids["stranger"]) == (denied, denied)
    no_eku = server.ca.issue("auditor", eku=(), file=f"auditor-health-{secrets.token_hex(3)}")
    assert _health_and_reflection(server, no_eku) == (denied, denied)
    # The load balancer's check needs no certificate at all.
    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/readyz", timeout=5) as r:
        assert r.status == 200


def test_metrics_never_label_key_uses_by_key(server: Env) -> None:
    """Issue 31: a key_id label grew with one key per terminal; per-key counts are in the key report."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5).read().decode()
    assert re.search(r"^hsmsvc_key_uses_total \d", text, re.M) and "key_id=" not in text
    m = Metrics()
    m.count_key_uses(lambda: {("zpk-a", 1): 3, ("zpk-b", 2): 4})
    lines = [ln for ln in generate_latest(m.registry).decode().splitlines()
             if ln.startswith("hsmsvc_key_uses_total")]
    assert lines == ["hsmsvc_key_uses_total 7.0"]
