"""`hsmsvc audit verify` and `audit reanchor` as real processes, on SQLite and PostgreSQL: every
anchor attack by the insider who can write the LMK's directory is reported BROKEN."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from hsmsvc.hsm.soft import sealed
from hsmsvc.hsm.model import KeySpec
from hsmsvc.hsm.soft.backend import SoftBackend
from hsmsvc.keys.hierarchy import KeyManager
from hsmsvc.keys.store import KeyStore
from hsmsvc.types import Algorithm, KeyType, KeyUsage
from tests import pg

PASSPHRASE = "a long enough passphrase"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/keys.db"
    else:
        with pg.throwaway_db() as u:
            yield u


def _cli(*args: str, answers: str = "") -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LMK_PASS=PASSPHRASE)
    return subprocess.run([sys.executable, "-m", "hsmsvc", *args], input=answers, text=True,
                          capture_output=True, env=env, timeout=120)


def _sql(url: str, statement: str) -> None:
    engine = create_engine(url)
    with engine.begin() as c:
        c.execute(text(statement))
    engine.dispose()


def _populate(store: KeyStore, backend: SoftBackend, first: int, count: int) -> None:
    km = KeyManager(store, backend, "officer-a")
    for i in range(first, first + count):
        km.generate(KeySpec(f"z{i}", 1, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION))


@pytest.mark.parametrize("attack", [
    "anchor deleted", "anchor deleted, table truncated", "every row deleted", "anchor and table rolled back",
    "older checkpoint file restored, table rolled back",
])
def test_audit_verify_reports_each_anchor_attack_broken(url: str, tmp_path: Path, attack: str) -> None:
    lmk = tmp_path / "lmk.sealed"
    lmk.write_bytes(sealed.seal(Algorithm.AES_256, secrets.token_bytes(32), PASSPHRASE.encode(),
                                sealed.ScryptParams(log2_n=14)))
    sink = tmp_path / "checkpoints"
    backend = SoftBackend.from_sealed(lmk, PASSPHRASE.encode())
    store = KeyStore(url, backend, checkpoints=sink)
    store.migrate()
    _populate(store, backend, 0, 3)
    anchor = Path(f"{lmk}.anchor.{store.store_id}")
    old_anchor, old_sink = anchor.read_bytes(), sink.read_bytes()
    _populate(store, backend, 3, 2)
    store.close()
    backend.close()
    base = ["audit", "verify", "--sealed", str(lmk), "--passphrase-env", "LMK_PASS", "--store", url]
    ok = _cli(*base, "--checkpoints", str(sink))
    assert ok.returncode == 0 and "5 audit rows; chain intact" in ok.stdout, ok.stdout + ok.stderr

    if attack.startswith("anchor deleted"):
        anchor.unlink()
    if attack in ("anchor deleted, table truncated", "every row deleted"):
        _sql(url, "DELETE FROM audit")
    if attack == "anchor and table rolled back":
        anchor.write_bytes(old_anchor)
    if attack == "older checkpoint file restored, table rolled back":
        sink.write_bytes(old_sink)
    if "rolled back" in attack:
        _sql(url, "DELETE FROM audit WHERE seq > 3")

    r = _cli(*base, "--checkpoints", str(sink))
    assert r.returncode == 1 and "BROKEN" in r.stdout, r.stdout + r.stderr
    if attack != "anchor and table rolled back":  # the one case that needs the checkpoints
        r = _cli(*base)
        assert r.returncode == 1 and "BROKEN" in r.stdout, r.stdout + r.stderr


def test_reanchor_after_a_restore_takes_two_officers_at_the_console(url: str, tmp_path: Path) -> None:
    lmk = tmp_path / "lmk.sealed"
    lmk.write_bytes(sealed.seal(Algorithm.AES_256, secrets.token_bytes(32), PASSPHRASE.encode(),
                                sealed.ScryptParams(log2_n=14)))
    sink = tmp_path / "checkpoints"
    backend = SoftBackend.from_sealed(lmk, PASSPHRASE.encode())
    store = KeyStore(url, backend, checkpoints=sink)
    store.migrate()
    _populate(store, backend, 0, 5)
    store.close()
    _sql(url, "DELETE FROM audit WHERE seq > 2")  # restored from an older backup
    backend_args = ["--sealed", str(lmk), "--passphrase-env", "LMK_PASS", "--store", url]
    verify = ["audit", "verify", *backend_args, "--checkpoints", str(sink)]
    assert _cli(*verify).returncode == 1

    reanchor = ["audit", "reanchor", *backend_args, "--reason", "CHG-1 restore", "--checkpoints", str(sink)]
    assert _cli(*reanchor, "--officer", "alice").returncode == 2  # one officer: refused
    assert _cli(*reanchor, "--officer", "alice", "--officer", "alice").returncode == 2
    r = _cli(*reanchor, "--officer", "alice", "--officer", "bob", answers="alice\nmallory\n")
    assert r.returncode == 2 and "did not confirm" in r.stderr  # bob was not there
    assert _cli(*verify).returncode == 1  # nothing changed

    r = _cli(*reanchor, "--officer", "alice", "--officer", "bob", answers="alice\nbob\n")
    assert r.returncode == 0 and "re-anchored" in r.stdout, r.stdout + r.stderr
    r = _cli(*verify)
    assert r.returncode == 0 and "3 audit rows; chain intact" in r.stdout, r.stdout + r.stderr
    assert "re-anchored by alice" in r.stdout and "alice,bob" in r.stdout

    store = KeyStore(url, backend, checkpoints=sink)
    _populate(store, backend, 10, 1)  # the server carries on under the new anchor
    store.close()
    backend.close()
    assert _cli(*verify).returncode == 0
