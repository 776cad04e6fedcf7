"""docs/operations.md's runbook, run as written: each block marked ``<!-- runbook-test: NAME -->`` is
given to bash as it stands, with the variables the prose defines set to a scratch directory's files
and throwaway PostgreSQL databases, so that the documented commands cannot rot."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography import x509

from hsmsvc.api.identity import certificate_names
from hsmsvc.hsm.model import KeySpec
from hsmsvc.hsm.soft.backend import SoftBackend
from hsmsvc.keys.hierarchy import KeyManager
from hsmsvc.keys.store import KeyStore
from hsmsvc.types import Algorithm, KeyType, KeyUsage
from hsmsvc_client import Client, ClientError, ClientTls
from tests import pg
from tests.api.conftest import PASSPHRASE, POLICY, forming, launch, seal_lmk, stop
from tests.hsm.components_env import require_or_skip
from tools.bench.pki import Identity

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
BLOCK = re.compile(r"<!-- runbook-test: ([a-z-]+) -->\n```sh\n(.*?)```", re.S)


def _blocks() -> dict[str, str]:
    return dict(BLOCK.findall(DOC.read_text()))


def _bash(name: str, cwd: Path, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Block ``name`` under ``bash -euo pipefail``, with this venv's ``hsmsvc`` first on PATH."""
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    return subprocess.run(["bash", "-euo", "pipefail", "-c", _blocks()[name]], cwd=cwd, input=stdin, text=True,
                          capture_output=True, env={**os.environ, "PATH": path, **env}, timeout=180)


def test_the_marked_blocks_exist() -> None:
    assert set(_blocks()) == {"ca", "backup", "restore", "verify", "reanchor"}


def test_certificate_steps_make_a_ca_whose_certificates_serve_mtls(tmp_path: Path) -> None:
    require_or_skip(shutil.which("openssl") is not None, "openssl", "apt-get install -y openssl")
    r = _bash("ca", tmp_path, {"CA_PASS": "an offline CA's passphrase"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines() == ["server.pem: OK", "core-banking.pem: OK"]
    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "ca.key").read_bytes()  # the CA's key never lies in clear
    client = x509.load_pem_x509_certificate((tmp_path / "core-banking.pem").read_bytes())
    assert certificate_names(client) == ["core-banking"]

    # The same files as a server's [tls] and a client's ClientTls: the handshake passes and the call
    # reaches the policy as the principal core-banking (an operator, which may not read key metadata).
    (tmp_path / "policy.toml").write_text(POLICY)
    with pg.throwaway_db() as url:
        sealed_file = seal_lmk(tmp_path)
        with forming(url, sealed_file):
            pass
        srv = Identity(str(tmp_path / "server.pem"), str(tmp_path / "server.key"))
        proc, info = launch(tmp_path, url, sealed_file, srv, SimpleNamespace(ca_file=str(tmp_path / "ca.pem")))
        try:
            tls = ClientTls(str(tmp_path / "ca.pem"), str(tmp_path / "core-banking.pem"),
                            str(tmp_path / "core-banking.key"), "hsm1.bank.example")
            with Client(f"127.0.0.1:{info['port']}", tls) as c, pytest.raises(ClientError) as e:
                c.get_key("no-such-key")
            assert (e.value.code.name, e.value.details) == (
                "PERMISSION_DENIED", "method: core-banking may not call KeyService.GetKey")
        finally:
            stop(proc, tmp_path / "server.log")


def _populate(store: KeyStore, backend: SoftBackend, first: int, count: int) -> None:
    km = KeyManager(store, backend, "officer-a")
    for i in range(first, first + count):
        km.generate(KeySpec(f"zpk-{i}", 1, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION))


def test_backup_restore_verify_and_reanchor_as_written(tmp_path: Path) -> None:
    require_or_skip(shutil.which("pg_dump") is not None and shutil.which("pg_restore") is not None,
                    "pg_dump and pg_restore", "apt-get install -y postgresql-client")
    lmk = seal_lmk(tmp_path)
    passfile = tmp_path / "lmk-passphrase"
    passfile.write_text(PASSPHRASE)
    checkpoints = tmp_path / "audit-checkpoints"
    with pg.throwaway_db() as store_url, pg.throwaway_db() as restored:
        env = {"STORE": store_url, "RESTORED": restored, "LMK": str(lmk), "PASSFILE": str(passfile),
               "CHECKPOINTS": str(checkpoints)}
        backend = SoftBackend.from_sealed(lmk, PASSPHRASE.encode())
        store = KeyStore(store_url, backend, checkpoints=checkpoints)
        try:
            store.migrate()
            _populate(store, backend, 0, 3)
            r = _bash("backup", tmp_path, env)
            assert r.returncode == 0 and (tmp_path / "hsmsvc.dump").stat().st_size > 0, r.stderr
            _populate(store, backend, 3, 2)  # written after the dump: the restore loses them
        finally:
            store.close()
            backend.close()

        r = _bash("restore", tmp_path, env)
        assert r.returncode == 0, r.stderr
        r = _bash("verify", tmp_path, env)
        assert r.returncode == 1 and "BROKEN" in r.stdout, r.stdout + r.stderr
        r = _bash("reanchor", tmp_path, env, stdin="alice\nbob\n")
        assert r.returncode == 0 and "re-anchored" in r.stdout, r.stdout + r.stderr
        r = _bash("verify", tmp_path, env)
        assert r.returncode == 0 and "chain intact" in r.stdout, r.stdout + r.stderr
        assert "re-anchored by alice" in r.stdout
