"""What an operator sees from `hsmsvc reencrypt`: one-line errors, an honest dry run, progress off a terminal.

Real processes: each run is ``python -m hsmsvc`` with its stderr as the operator's
terminal or log would get it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from hsmsvc.batch.table import connect
from tests.batch.sites import PASS, ROOT, Site, chunk_rows, generate_table, init_lmk, table_rows
from tests.pg import PG_ADMIN, available

SECRET = "s3cret-in-the-url"
MOVE = ("--mode", "psk", "--from", "psk-gen:1", "--to", "psk-new:1")


@pytest.fixture
def site(tmp_path: Path) -> Site:
    s = Site(init_lmk(tmp_path / "lmk.sealed"), f"sqlite:///{tmp_path / 'keys.db'}",
             f"sqlite:///{tmp_path / 'bank.db'}")
    generate_table(s, 300)
    return s


def _run(*argv: str, timeout: float = 60) -> tuple[int, str, str]:
    env = {**os.environ, "HSMSVC_TEST_LMK_PASS": PASS, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "hsmsvc", *argv], env=env, capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def _with(args: list[str], option: str, value: str) -> list[str]:
    """``args`` with ``option``'s value replaced, or added."""
    if option not in args:
        return [*args, option, value]
    i = args.index(option)
    return [*args[:i + 1], value, *args[i + 2:]]


def _pg(database: str) -> str:
    """A PostgreSQL URL on the test server, with a password in it (trust auth ignores it)."""
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://postgres@", f"postgresql+psycopg://postgres:{SECRET}@")
    return f"{base}/{database}"


def test_each_error_is_one_line_naming_its_option(site: Site, tmp_path: Path) -> None:
    args = site.args(*MOVE)
    (tmp_path / "empty.db").touch()
    cases: list[tuple[list[str], str]] = [
        (_with(args, "--db", f"postgresql+psycopg://bank:{SECRET}@127.0.0.1:1/core"),
         "--db: cannot reach postgresql+psycopg://bank:***@127.0.0.1:1/core: connection refused"),
        (_with(args, "--db", f"sqlite:///{tmp_path / 'no-dir' / 'bank.db'}"), "--db: no directory"),
        (_with(args, "--db", f"sqlite:///{tmp_path / 'absent.db'}"), "--db: no SQLite database at"),
        (_with(args, "--table", "accounts"), "--table: accounts does not exist"),
        (_with(args, "--pin-column", "pin_block"), "--table: customers has no column pin_block (--pin-column)"),
        (_with(args, "--store", f"sqlite:///{tmp_path / 'empty.db'}"), "--store: no key tables in"),
        (_with(args, "--store", f"sqlite:///{tmp_path / 'no-dir' / 'keys.db'}"), "--store: no directory"),
        (_with(args, "--store", f"postgresql+psycopg://hsm:{SECRET}@127.0.0.1:1/keys"),
         "--store: cannot reach postgresql+psycopg://hsm:***@127.0.0.1:1/keys"),
        (_with(args, "--from", "psk-old:1"), "--from: no key psk-old:1 in the store"),
        (_with(args, "--to", "psk-next:1"), "--to: no key psk-next:1 in the store (--generate-to ALGORITHM"),
    ]
    if available():
        cases.append((_with(args, "--db", _pg("no_such_database")),
                      f'--db: database "no_such_database" does not exist at {_pg("no_such_database")}'
                      .replace(SECRET, "***")))
    for argv, expected in cases:
        rc, _, err = _run(*argv)
        assert rc == 2, (argv, err)
        assert err.count("\n") == 1 and err.startswith("hsmsvc: "), err
        assert expected in err, err
        assert SECRET not in err
    assert not (tmp_path / "absent.db").exists() and not (tmp_path / "no-dir").exists()  # nothing created


def _snapshot(site: Site, tmp_path: Path) -> dict[str, object]:
    """Every file's bytes, and the rows of the table, the key store and the audit."""
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(tmp_path.iterdir()) if p.is_file()}
    store = connect(site.store)
    try:
        with store.connect() as conn:
            keys = conn.execute(text("SELECT key_id, version, state, cryptogram, use_count FROM keys "
                                     "ORDER BY key_id, version")).all()
            audit = conn.execute(text("SELECT seq, action, hash FROM audit ORDER BY seq")).all()
    finally:
        store.dispose()
    bank = connect(site.db)
    try:
        with bank.connect() as conn:
            tables = conn.execute(text("SELECT name FROM sqlite_master ORDER BY name")).all()
    finally:
        bank.dispose()
    return {"files": files, "keys": keys, "audit": audit, "tables": tables, "rows": table_rows(site.db)}


def test_dry_run_with_generate_to_writes_nothing_anywhere(site: Site, tmp_path: Path) -> None:
    before = _snapshot(site, tmp_path)
    rc, out, err = _run(*site.args(*MOVE, "--generate-to", "AES_128", "--dry-run", "--chunk", "100"))
    assert rc == 0, err
    assert _snapshot(site, tmp_path) == before
    assert "dry run  would generate psk-new:1 (AES_128) as the target" in out
    assert "300 rows under psk-gen:1 would move to psk-new:1 (not deciphered" in out
    assert "would plan job customers:psk-gen:1->psk-new:1: 3 chunks of up to 100 rows" in out
    assert "nothing written" in out and err == ""
    # With the target there, the dry run does the crypto: still nothing written.
    assert _run(*site.args(*MOVE, "--generate-to", "TDES_2KEY", "--max-chunks", "1", "--chunk", "100"))[0] == 3
    before = _snapshot(site, tmp_path)
    rc, out, err = _run(*site.args(*MOVE, "--generate-to", "TDES_2KEY", "--dry-run", "--chunk", "100"))
    assert rc == 0, err
    assert _snapshot(site, tmp_path) == before
    assert "200 rows under psk-gen:1: 200 would move to psk-new:1, 0 would be refused" in out
    assert "would resume job customers:psk-gen:1->psk-new:1: 2 of 3 chunks left" in out


def test_progress_off_a_terminal_is_a_plain_line_every_n_seconds(tmp_path: Path) -> None:
    site = Site(init_lmk(tmp_path / "lmk.sealed"), f"sqlite:///{tmp_path / 'k.db'}", f"sqlite:///{tmp_path / 'b.db'}")
    generate_table(site, 50_000)
    # Every 0.2 s: the run of 50,000 rows took under a second on a fast machine, one line at 0.5 s.
    args = [a for a in site.args(*MOVE, "--generate-to", "TDES_2KEY", "--chunk", "100", "--progress-every", "0.2")
            if a != "--no-progress"]
    env = {**os.environ, "HSMSVC_TEST_LMK_PASS": PASS, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "hsmsvc", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stderr is not None
    lines: list[tuple[float, bytes]] = []
    reader = threading.Thread(target=lambda: lines.extend((time.monotonic(), ln) for ln in proc.stderr or ()))
    reader.start()
    started = time.monotonic()
    assert proc.stdout is not None
    out = proc.stdout.read()  # not communicate(): it would read stderr too, beside the reader
    proc.wait(timeout=120)
    reader.join()
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, b"".join(ln for _, ln in lines)
    assert "50,000 moved" in out.decode()
    assert lines and all(ln.startswith(b"progress ") and b"\r" not in ln for _, ln in lines), lines
    assert 2 <= len(lines) <= elapsed / 0.2 + 1
    gaps = [b - a for (a, _), (b, _) in zip(lines, lines[1:])]
    assert all(g > 0.15 for g in gaps), gaps  # one each 0.2 s, less the reader's own jitter
    assert all(done for _, done, *_ in chunk_rows(site.db))


def _screen(output: str) -> list[str]:
    """The lines a terminal shows for ``output``: a carriage return goes back over the line, not erasing it."""
    lines: list[list[str]] = [[]]
    col = 0
    for ch in output:
        if ch == "\r":
            col = 0
        elif ch == "\n":
            lines.append([])
            col = 0
        else:
            line = lines[-1]
            line[col:col + 1] = [ch]
            col += 1
    return ["".join(line) for line in lines]


def test_progress_on_a_terminal_is_one_line_redrawn_clean(tmp_path: Path) -> None:
    import pexpect

    site = Site(init_lmk(tmp_path / "lmk.sealed"), f"sqlite:///{tmp_path / 'k.db'}", f"sqlite:///{tmp_path / 'b.db'}")
    generate_table(site, 30_000)
    args = [a for a in site.args(*MOVE, "--generate-to", "TDES_2KEY", "--chunk", "100", "--workers", "2")
            if a != "--no-progress"]
    env = {**os.environ, "HSMSVC_TEST_LMK_PASS": PASS, "PYTHONPATH": str(ROOT)}
    child = pexpect.spawn(sys.executable, ["-m", "hsmsvc", *args], env=env, dimensions=(24, 100),
                          encoding="utf-8", timeout=120)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    output = child.before
    assert output.count("\r") > 3 and "\x1b" not in output  # it redrew, with no escape sequences
    bars = [ln for ln in _screen(output) if "rows/s" in ln and "|" in ln]
    assert len(bars) == 1, _screen(output)  # one line, redrawn in place
    assert bars[0].startswith("100%|") and bars[0].rstrip().endswith("chunks 300/300]"), bars[0]
