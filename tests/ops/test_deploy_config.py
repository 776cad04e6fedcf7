"""deploy/hsmsvc.toml and deploy/policy.toml are what a real server runs on, so they cannot rot.

The shipped files are copied into a directory laid out as /etc/hsmsvc (tls/ beside them), only the
site values the file's header lists are substituted (addresses, store URL, state directory), and
``hsmsvc serve`` starts from them against PostgreSQL, its LMK passphrase from a systemd credential,
after ``hsmsvc db upgrade`` as the DBA would run it; one mTLS call proves it serves.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from hsmsvc.cli import main
from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import types_pb2 as pb
from hsmsvc_client import Client, ClientTls
from tests import pg
from tests.api.conftest import PASSPHRASE, seal_lmk, stop, template
from tests.ops.serving import start_server
from tools.bench.pki import ThrowawayCA as TestCA

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SHIPPED_STORE = "postgresql+psycopg://hsmsvc@db.example.internal:5432/hsmsvc?sslmode=verify-full"


def test_shipped_files_check_unchanged(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", "--no-files", str(DEPLOY / "hsmsvc.toml")]) == 0
    assert main(["policy", "check", str(DEPLOY / "policy.toml")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{DEPLOY / 'hsmsvc.toml'}: ok" and out[1].startswith(f"{DEPLOY / 'policy.toml'}: ok")


def site(d: Path, url: str) -> tuple[Path, TestCA]:
    """The deploy files in ``d/etc`` with this site's values; TLS files and sealed LMK in place."""
    etc, var, creds = d / "etc", d / "var", d / "credentials"
    for p in (etc / "tls", var, creds):
        p.mkdir(parents=True)
    text = (DEPLOY / "hsmsvc.toml").read_text()
    for shipped, ours in (('"0.0.0.0:8443"', '"127.0.0.1:0"'), ('"127.0.0.1:9464"', '"127.0.0.1:0"'),
                          (SHIPPED_STORE, url), ("/var/lib/hsmsvc", str(var))):
        assert shipped in text, f"deploy/hsmsvc.toml no longer holds {shipped}: update its header and this test"
        text = text.replace(shipped, ours)
    (etc / "hsmsvc.toml").write_text(text)
    shutil.copy(DEPLOY / "policy.toml", etc / "policy.toml")
    ca = TestCA(d)
    srv = ca.issue("hsmsvc-server", server=True)
    for src, name in ((srv.cert, "server.pem"), (srv.key, "server.key"), (ca.ca_file, "clients-ca.pem")):
        shutil.copy(src, etc / "tls" / name)
    seal_lmk(var)
    (creds / "lmk-passphrase").write_text(PASSPHRASE + "\n")
    return etc / "hsmsvc.toml", ca


def test_a_server_starts_from_the_deploy_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pg.throwaway_db() as url:
        config, ca = site(tmp_path, url)
        assert main(["config", "check", str(config)]) == 0  # the files it names too
        assert capsys.readouterr().out == f"{config}: ok\n"
        # auto_migrate = false: the schema is the DBA's step (test_db.py: serve refuses until it is done).
        env = {**os.environ, "CREDENTIALS_DIRECTORY": str(tmp_path / "credentials")}
        assert main(["db", "upgrade", "--config", str(config)]) == 0
        # From another working directory: every path resolves against the config file's.
        proc, info, log = start_server(config, cwd=Path("/"), env=env)
        try:
            ident = ca.issue("key-manager")
            with Client(f"127.0.0.1:{info['port']}",
                        ClientTls(ca.ca_file, ident.cert, ident.key, "localhost")) as mgr:
                got = mgr.keys.GenerateKey(key_pb.GenerateKeyRequest(template=template(
                    "deploy-dek", pb.KEY_TYPE_DEK, pb.ALGORITHM_AES_128, pb.KEY_USAGE_DATA,
                    pb.MODE_OF_USE_ENCRYPT_DECRYPT)))
                assert got.key.key_id == "deploy-dek"
            assert (tmp_path / "var" / "audit-checkpoints").exists()
        finally:
            stop(proc, log)



def test_make_run_ports_are_overridable() -> None:
    import subprocess

    root = DEPLOY.parent
    run = subprocess.run(["make", "-n", "-o", ".venv/.installed", "run", "PORT=18443", "METRICS_PORT=19464"],
                         cwd=root, capture_output=True, text=True, timeout=30)
    assert "--listen 127.0.0.1:18443 --metrics-listen 127.0.0.1:19464" in run.stdout, run.stderr
    run = subprocess.run(["make", "-n", "-o", ".venv/.installed", "run"], cwd=root, capture_output=True, text=True,
                         timeout=30)
    assert "--listen 127.0.0.1:8443 --metrics-listen 127.0.0.1:9464" in run.stdout, run.stderr
