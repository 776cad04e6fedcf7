"""Stopping `hsmsvc reencrypt --workers 2` as an operator would: SIGTERM, SIGKILL, Ctrl-C, real processes.

Each run is a real ``python -m hsmsvc`` process with two forked workers over a
real SQLite file or PostgreSQL database; the workers are found and watched
through /proc. Afterwards every row must be under the old key or the new one,
with the PIN it had (checked by verifying each customer's PIN, rebuilt from the
table's seed, against the row's key), and the moved rows must be exactly those
of the chunks marked done: nothing half-moved.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


from hsmsvc.hsm.commands import VerifyPinStored
from hsmsvc.hsm.model import PinBlock, StoredPin, StoredPinMethod
from hsmsvc.keys.store import KeyStore
from hsmsvc.types import Algorithm, PinBlockFormat
from tests.batch.sites import (
    PASS,
    ROOT,
    ZPK_CLEAR,
    Site,
    check_every_row,
    chunk_rows,
    done_chunks,
    generate_table,
    init_lmk,
    table_rows,
    spawn_job,
    form_zpk,
)
from tests.reference import ecb, iso0
from tools.batch import gen_pin_table as gen

# Small chunks make the job take seconds (each is a transaction): long enough to stop it midway.
MOVE = ("--mode", "psk", "--from", "psk-gen:1", "--to", "psk-new:1", "--generate-to", "TDES_2KEY",
        "--chunk", "100", "--workers", "2")


def _rows_for(site: Site) -> int:
    # PostgreSQL moves ~6,000 rows/s at 100-row chunks here, SQLite ~14,000: a few seconds of work either way.
    return 20_000 if site.db.startswith("postgresql") else 40_000


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc: no psutil)."""
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # pid (comm) state ppid ...: comm may hold spaces, so split after its closing parenthesis.
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def _running(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie has exited: it only waits for its new parent to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _start(site: Site, *extra: str, new_session: bool = False) -> tuple[subprocess.Popen[bytes], list[int]]:
    """The job, once it has moved some chunks; and its two workers' PIDs."""
    proc = spawn_job(site, *MOVE, *extra) if not new_session else _spawn_session(site, *MOVE, *extra)
    deadline = time.monotonic() + 60
    while done_chunks(site.db) < 20 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the job ended before it could be stopped"
    workers = _children(proc.pid)
    assert len(workers) == 2, workers
    return proc, workers


def _spawn_session(site: Site, *extra: str) -> subprocess.Popen[bytes]:
    """As spawn_job, in a process group of its own: Ctrl-C at a terminal signals the whole group."""
    env = {**os.environ, "HSMSVC_TEST_LMK_PASS": PASS, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "hsmsvc", *site.args(*extra)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def _each_row_whole(site: Site, rows: int) -> int:
    """Every row verifies under the key its label names, and the moved rows are the done chunks'; how many moved."""
    b = site.backend()
    store = KeyStore(site.store, b)
    try:
        keys = {lbl: store.get(lbl.split(":")[0], int(lbl.split(":")[1])).cryptogram
                for lbl in ("psk-gen:1", "psk-new:1")}
        zpk = form_zpk(b, store)
        table = table_rows(site.db)
        assert len(table) == rows
        for c in gen.customers(7, rows):
            account, value, under = table[c.id]
            block = PinBlock(ecb(Algorithm.TDES_2KEY, ZPK_CLEAR, iso0(c.pin, c.pan)), PinBlockFormat.ISO_0, c.pan)
            b.execute(VerifyPinStored(pin=block, key=zpk, psk=keys[under], account=account,  # type: ignore[arg-type]
                                      stored=StoredPin(StoredPinMethod.ENCRYPTED, bytes.fromhex(value))))
    finally:
        store.close()
        b.close()
    moved = sum(1 for _, _, under in table.values() if under == "psk-new:1")
    assert moved == sum(m for _, done, m, _, _ in chunk_rows(site.db) if done), "a row moved outside a done chunk"
    return moved


def _audit(site: Site) -> list[tuple[str, dict[str, str]]]:
    """The job's audit rows (the chain verified first), in order."""
    b = site.backend()
    store = KeyStore(site.store, b)
    try:
        assert store.verify_audit().ok
        return [(r.action, json.loads(r.detail)) for r in store.audit_rows() if r.action.startswith("pins.")]
    finally:
        store.close()
        b.close()


def test_sigterm_stops_the_workers_reports_audits_and_the_job_resumes(site: Site) -> None:
    rows = _rows_for(site)
    generate_table(site, rows)
    proc, workers = _start(site, "--grace", "20")
    stopped_at = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = (s.decode() for s in proc.communicate(timeout=30))
    assert time.monotonic() - stopped_at < 20, "not within the grace period"
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert not [w for w in workers if _running(w)], "a worker outlived the stop"
    assert "Traceback" not in err
    assert "stopped  by SIGTERM: the chunks in flight finished" in out
    assert "run the same command again to resume" in out and "run the same command again to resume" in err
    assert f"{rows:,} planned" in out
    moved = _each_row_whole(site, rows)
    assert 0 < moved < rows
    actions = _audit(site)
    stop = [d for a, d in actions if a == "pins.reencrypt.finish"]
    assert [a for a, _ in actions] == ["pins.reencrypt.start", "pins.reencrypt.finish"]
    assert stop[0]["outcome"] == "stopped" and stop[0]["signal"] == "SIGTERM" and int(stop[0]["moved"]) == moved
    assert int(stop[0]["chunks_left"]) == sum(1 for c in chunk_rows(site.db) if not c[1])
    # The same command again resumes where the stop left the job, and finishes it.
    proc = spawn_job(site, *MOVE)
    out, err = (s.decode() for s in proc.communicate(timeout=120))
    assert proc.returncode == 0, err
    assert f"this run {rows - moved:,} rows" in out
    check_every_row(site, rows, "psk-new:1")
    ends = [(a, d["outcome"]) for a, d in _audit(site) if a == "pins.reencrypt.finish"]
    assert ends == [("pins.reencrypt.finish", "stopped"), ("pins.reencrypt.finish", "completed")]


def test_sigkill_to_the_parent_stops_its_workers_after_their_chunk(site: Site) -> None:
    rows = _rows_for(site)
    generate_table(site, rows)
    proc, workers = _start(site)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 5
    while any(_running(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [w for w in workers if _running(w)], "workers went on without their parent"
    time.sleep(0.5)  # nothing moves any more
    before = done_chunks(site.db)
    moved = _each_row_whole(site, rows)
    assert 0 < moved < rows and done_chunks(site.db) == before


def test_ctrl_c_stops_the_job_without_a_traceback(tmp_path: Path) -> None:
    sqlite = Site(init_lmk(tmp_path / "lmk.sealed"), f"sqlite:///{tmp_path / 'k.db'}", f"sqlite:///{tmp_path / 'b.db'}")
    generate_table(sqlite, 40_000)
    proc, workers = _start(sqlite, new_session=True)
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C: the parent and both workers
    out, err = (s.decode() for s in proc.communicate(timeout=30))
    assert proc.returncode == 128 + signal.SIGINT, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert all(line.startswith("hsmsvc: ") for line in err.splitlines()), err
    assert "stopped by SIGINT" in err and "stopped  by SIGINT" in out
    assert not [w for w in workers if _running(w)]
    _each_row_whole(sqlite, 40_000)


def test_sigterm_to_a_single_process_run_lets_its_chunk_commit(tmp_path: Path) -> None:
    sqlite = Site(init_lmk(tmp_path / "lmk.sealed"), f"sqlite:///{tmp_path / 'k.db'}", f"sqlite:///{tmp_path / 'b.db'}")
    generate_table(sqlite, 40_000)
    proc = spawn_job(sqlite, *MOVE[:-2])  # --workers 1: the parent moves the chunks itself
    deadline = time.monotonic() + 60
    while done_chunks(sqlite.db) < 20 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    out, err = (s.decode() for s in proc.communicate(timeout=30))
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped  by SIGTERM: the chunk in flight finished" in out and "Traceback" not in err
    assert 0 < _each_row_whole(sqlite, 40_000) < 40_000
    assert [(a, d.get("outcome")) for a, d in _audit(sqlite)] == [("pins.reencrypt.start", None),
                                                                   ("pins.reencrypt.finish", "stopped")]
