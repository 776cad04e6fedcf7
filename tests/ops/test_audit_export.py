"""``hsmsvc audit export`` / ``verify-export`` and the read-only local ``hsmsvc status``, as real processes.

The store is a real SQLite file with keys made through the library under a
real sealed LMK; the commands run as ``.venv/bin/hsmsvc`` child processes, with
no passphrase anywhere in their environment or on their stdin.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine

from hsmsvc.cli import auditexport
from hsmsvc.errors import InvalidInput
from hsmsvc.hsm.model import KeySpec
from hsmsvc.hsm.soft import sealed
from hsmsvc.hsm.soft.backend import SoftBackend
from hsmsvc.keys.audit import AuditRow
from hsmsvc.keys.hierarchy import KeyManager
from hsmsvc.keys.store import KeyStore
from hsmsvc.keys.store.reader import StoreReader
from hsmsvc.types import Algorithm, KeyType, KeyUsage
from tests.hsm.helpers import clear_key
from tests.ops import cli

PASSPHRASE = b"ops-export-test-passphrase"
# RFC 5424: <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG
SYSLOG = re.compile(r"<(\d{1,3})>1 (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00) (\S+) hsmsvc - audit - (CEF:0\|.*)")


@dataclass
class Store:
    d: Path
    url: str
    sealed: Path
    clear: list[bytes]

    def add_keys(self, n: int, prefix: str) -> None:
        backend = SoftBackend.from_sealed(self.sealed, PASSPHRASE)
        store = KeyStore(self.url, backend)
        try:
            km = KeyManager(store, backend, "officer 1")
            for i in range(n):
                clear = clear_key(Algorithm.TDES_2KEY)
                c1 = os.urandom(len(clear))
                km.form(KeySpec(f"{prefix}{i}", 1, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION),
                        [c1, bytes(a ^ b for a, b in zip(clear, c1))])
                self.clear += [clear, c1]
        finally:
            store.close()
            backend.close()


def hsmsvc(*argv: str, process: bool = False) -> subprocess.CompletedProcess[str]:
    """``hsmsvc ARGV`` with no passphrase anywhere in its environment; ``process``: as a child process."""
    return cli.run(list(argv), process=process, env={k: v for k, v in os.environ.items() if "PASS" not in k})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    sealed_file = tmp_path / "lmk.sealed"
    sealed_file.write_bytes(sealed.seal(Algorithm.AES_256, os.urandom(32), PASSPHRASE, sealed.ScryptParams(14)))
    s = Store(tmp_path, f"sqlite:///{tmp_path}/keys.db", sealed_file, [])
    backend = SoftBackend.from_sealed(sealed_file, PASSPHRASE)
    ks = KeyStore(s.url, backend)
    ks.migrate()
    ks.close()
    backend.close()
    s.add_keys(3, "zpk-")
    yield s


def _no_secrets(text: str, s: Store) -> None:
    for k in s.clear:
        assert k.hex() not in text.lower() and k.hex().upper() not in text
    assert PASSPHRASE.decode() not in text


def test_jsonl_export_resumes_and_a_tampered_copy_is_detected(store: Store) -> None:
    out = store.d / "audit.jsonl"
    r = hsmsvc("audit", "export", "--store", store.url, "--output", str(out), process=True)
    assert r.returncode == 0, r.stderr
    first = out.read_text().splitlines()
    assert len(first) == 3 and [json.loads(x)["seq"] for x in first] == [1, 2, 3]
    assert {"seq", "at", "actor", "action", "hash", "prev_hash", "mac", "detail"} <= set(json.loads(first[0]))

    store.add_keys(2, "more-")
    r = hsmsvc("audit", "export", "--store", store.url, "--output", str(out))  # resumes after seq 3
    assert r.returncode == 0, r.stderr
    assert "seq 4 to 5" in r.stderr
    lines = out.read_text().splitlines()
    assert lines[:3] == first and [json.loads(x)["seq"] for x in lines] == [1, 2, 3, 4, 5]
    _no_secrets(out.read_text(), store)

    r = hsmsvc("audit", "verify-export", str(out), "--store", store.url, process=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "5 records, seq 1 to 5; chain intact" in r.stdout

    # One field of one line changed: its hash no longer matches.
    rec = json.loads(lines[2])
    rec["actor"] = "someone else"
    tampered = store.d / "tampered.jsonl"
    tampered.write_text("\n".join([*lines[:2], json.dumps(rec), *lines[3:]]) + "\n")
    r = hsmsvc("audit", "verify-export", str(tampered))
    assert r.returncode == 1
    assert "FAIL  line 3 (seq 3): content does not match its hash" in r.stdout
    # A line removed: the gap and the broken link are found.
    removed = store.d / "removed.jsonl"
    removed.write_text("\n".join([*lines[:1], *lines[2:]]) + "\n")
    r = hsmsvc("audit", "verify-export", str(removed))
    assert r.returncode == 1 and "expected seq 2" in r.stdout


def test_syslog_cef_export_from_a_sequence_number(store: Store) -> None:
    cfg = store.d / "hsmsvc.toml"
    cfg.write_text(f'store = "{store.url}"\npolicy = "policy.toml"\n[tls]\ncert = "s.pem"\nkey = "s.key"\n'
                   f'client_ca = "ca.pem"\n[backend]\nkind = "soft"\nsealed_lmk = "{store.sealed}"\n')
    out = store.d / "audit.log"
    r = hsmsvc("audit", "export", "--config", str(cfg), "--format", "syslog", "--from-seq", "2", "--output",
               str(out), "--hostname", "hsm-a", process=True)
    assert r.returncode == 0, r.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == 2
    with StoreReader.open(store.url) as reader:
        rows = {row.seq: row for row in reader.audit_rows()}
    for line, seq in zip(lines, (2, 3)):
        m = SYSLOG.fullmatch(line)
        assert m, line
        assert m.group(2) == rows[seq].at and m.group(3) == "hsm-a"
        cef = m.group(4)
        assert cef.startswith(f"CEF:0|hsmsvc|hsmsvc|0.1.0|{rows[seq].action}|{rows[seq].action}|")
        assert f"externalId={seq} " in cef and f"cs2Label=chainHash cs2={rows[seq].hash}" in cef
        assert auditexport.parse(line) == rows[seq]
    _no_secrets(out.read_text(), store)
    r = hsmsvc("audit", "verify-export", str(out), "--config", str(cfg))
    assert r.returncode == 0, r.stdout
    assert "starts at seq 2" in r.stdout and "2 records, seq 2 to 3; chain intact" in r.stdout
    bad = out.read_text().replace("suser=officer 1", "suser=officer 2", 1)
    (store.d / "bad.log").write_text(bad)
    r = hsmsvc("audit", "verify-export", str(store.d / "bad.log"))
    assert r.returncode == 1 and "content does not match its hash" in r.stdout


def test_export_refuses_a_file_that_is_not_this_stores_copy(store: Store) -> None:
    out = store.d / "audit.jsonl"
    assert hsmsvc("audit", "export", "--store", store.url, "--output", str(out)).returncode == 0
    rec = json.loads(out.read_text().splitlines()[-1])
    rec["hash"] = "0" * 64
    out.write_text(out.read_text().rsplit("\n", 2)[0] + "\n" + json.dumps(rec) + "\n")
    r = hsmsvc("audit", "export", "--store", store.url, "--output", str(out))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not this store's" in r.stderr
    r = hsmsvc("audit", "export", "--store", f"sqlite:///{store.d}/absent.db")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and not (store.d / "absent.db").exists()


def test_local_status_needs_no_passphrase_and_never_migrates(store: Store) -> None:
    r = hsmsvc("status", "--store", store.url, "--sealed", str(store.sealed), "--json", process=True)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["lmk_kcv"] == sealed.recorded_kcv(store.sealed.read_bytes()).hex().upper()
    assert doc["audit"]["head_sequence"] == 3 and doc["audit"]["intact"]
    assert doc["keys"] == [{"type": "ZPK", "state": "ACTIVE", "count": 3}]
    assert doc["store"]["kind"] == "sqlite" and not doc["store"]["schema_behind"]

    # A store at an older revision: said in one line, exit 1, and left as it was.
    old = store.d / "old.db"
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("hsmsvc.keys") / "migrations"))
    engine = create_engine(f"sqlite:///{old}")
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0005")
        conn.commit()
    engine.dispose()
    r = hsmsvc("status", "--store", f"sqlite:///{old}")
    assert r.returncode == 1, r.stdout + r.stderr
    head = doc["store"]["schema_head"]
    assert head > "0005" and [line for line in r.stdout.splitlines() if "behind" in line] == [
        f"schema    0005, behind {head}: run the migrations (nothing was changed)"]
    with sqlite3.connect(old) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [("0005",)]


def test_local_status_verify_macs_opens_the_lmk(store: Store) -> None:
    env = {**{k: v for k, v in os.environ.items() if "PASS" not in k}, "OPS_LMK_SECRET": PASSPHRASE.decode()}
    r = cli.run(["status", "--store", store.url, "--sealed", str(store.sealed), "--passphrase-env", "OPS_LMK_SECRET",
                 "--verify-macs", "--json"], process=False, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["lmk_kcv_source"] == "backend"
    assert doc["lmk_kcv"] == sealed.recorded_kcv(store.sealed.read_bytes()).hex().upper()
    assert doc["audit"]["intact"] and doc["audit"]["checked"] == "hashes, MACs, anchor"


def test_the_guard_refuses_a_pan_and_the_url_hides_its_password() -> None:
    row = AuditRow(7, "2026-01-01T00:00:00.000000+00:00", "x", "pin.verify", None, None,
                   '{"pan":"4111111111111111"}', "0" * 64, "1" * 64, "2" * 32)
    with pytest.raises(InvalidInput, match="seq 7: holds what looks like a PAN"):
        auditexport.jsonl(row)
    auditexport.jsonl(AuditRow(8, row.at, "x", "key.use", None, None, '{"use_count":"1234567890123"}',
                               "0" * 64, "1" * 64, "2" * 32))  # 13 digits, not a PAN by Luhn
    auditexport.jsonl(AuditRow(9, row.at, "x", "lmk.reseal", None, None, '{"seal_id":"4111111111111111AB"}',
                               "0" * 64, "1" * 64, "2" * 32))  # digits inside a hex value
    reader = StoreReader.open("postgresql+psycopg://bank:s3cret@127.0.0.1:1/core")
    try:
        assert "s3cret" not in reader.url and "***" in reader.url
    finally:
        reader.close()
