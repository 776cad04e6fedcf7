"""A real mTLS server on PostgreSQL appends audit checkpoints; `hsmsvc audit verify --checkpoints`
then reports a rollback of anchor and table together as BROKEN (issue 27, item 5)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg

from tests import pg
from tests import reference as ind
from tests.api.conftest import PASSPHRASE
from tests.api.solo import solo_server

PAN = "4012345678909"


def _verify(d: Path, url: str, sink: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hsmsvc", "audit", "verify", "--sealed", str(d / "lmk.sealed"),
         "--passphrase-env", "LMK_PASS", "--store", url, "--checkpoints", str(sink)],
        capture_output=True, text=True, timeout=120, env=dict(os.environ, LMK_PASS=PASSPHRASE))


def test_the_server_checkpoints_and_verify_catches_a_joint_rollback(tmp_path: Path) -> None:
    from hsmsvc_client import ClientError

    sink = tmp_path / "checkpoints"
    with pg.throwaway_db() as url:
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as db:
            with solo_server(tmp_path, url, top=f'audit_checkpoints = "{sink}"') as s:
                cl = s.client(deadline=5.0, retries=0)
                good = ind.tdes_ecb(s.clear["zpk1"], ind.iso0("1234", PAN))
                cl.translate_pin("zpk1", "zpk2", good, pan=PAN)
                row = db.execute("SELECT value FROM store_meta WHERE name = 'store_id'").fetchone()
                assert row is not None
                anchor = tmp_path / f"lmk.sealed.anchor.{row[0]}"
                seq_before = db.execute("SELECT max(seq) FROM audit").fetchone()
                assert seq_before is not None
                old_anchor = anchor.read_bytes()
                for _ in range(3):  # wrong blocks: failed attempts, each an audit row and a checkpoint
                    try:
                        cl.translate_pin("zpk1", "zpk2", bytes(8), pan=PAN)
                    except ClientError:
                        pass
            lines = sink.read_text().splitlines()
            assert len(lines) >= 3 and all(f"store={row[0]}" in ln for ln in lines)
            assert oct(sink.stat().st_mode & 0o777) == "0o600"
            r = _verify(tmp_path, url, sink)
            assert r.returncode == 0 and "chain intact" in r.stdout, r.stdout + r.stderr

            anchor.write_bytes(old_anchor)  # the insider puts back the older anchor ...
            db.execute("DELETE FROM audit WHERE seq > %s", (seq_before[0],))  # ... and cuts the table to it
            r = _verify(tmp_path, url, sink)
            assert r.returncode == 1 and "BROKEN" in r.stdout and "rolled back" in r.stdout, r.stdout + r.stderr
