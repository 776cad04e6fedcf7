"""The command line: `lmk init`, `status` and `audit verify` end to end on SQLite."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from hsmsvc.cli import main
from hsmsvc.hsm.model import KeySpec
from hsmsvc.hsm.soft.backend import SoftBackend
from hsmsvc.keys.hierarchy import KeyManager
from hsmsvc.keys.store import KeyStore
from hsmsvc.types import Algorithm, KeyType, KeyUsage


def test_lmk_init_then_audit_verify_detects_tampering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LMK_PASS", "a long enough passphrase")
    sealed = tmp_path / "lmk.sealed"
    c1, c2 = tmp_path / "c1", tmp_path / "c2"
    c1.write_text("11" * 32)
    c2.write_text("22" * 32)
    base = ["--sealed", str(sealed), "--passphrase-env", "LMK_PASS"]
    assert main(["lmk", "init", *base, "--scrypt-log2-n", "14",
                 "--component-file", str(c1), "--component-file", str(c2)]) == 0
    assert main(["lmk", "init", *base]) == 2  # never overwritten
    url = f"sqlite:///{tmp_path}/keys.db"
    assert main(["status", *base, "--store", url]) == 2  # a new path: nothing created, nothing BROKEN
    assert main(["audit", "verify", *base, "--store", url]) == 2
    assert not (tmp_path / "keys.db").exists()

    backend = SoftBackend.from_sealed(sealed, b"a long enough passphrase")
    store = KeyStore(url, backend)
    store.migrate()
    assert main(["status", *base, "--store", url]) == 0
    km = KeyManager(store, backend, "officer")
    for i in range(4):
        km.generate(KeySpec(f"z{i}", 1, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION))
    store.close()
    assert main(["audit", "verify", *base, "--store", url]) == 0
    with sqlite3.connect(tmp_path / "keys.db") as db:
        db.execute("DELETE FROM audit WHERE seq = 4")
    capsys.readouterr()
    assert main(["audit", "verify", *base, "--store", url]) == 1
    assert "newest rows were deleted" in capsys.readouterr().out
    out = capsys.readouterr()
    assert "11" * 32 not in out.out + out.err
