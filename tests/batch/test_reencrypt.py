"""`hsmsvc reencrypt` over real SQLite and PostgreSQL tables, killed with SIGKILL and resumed.

The table comes from ``tools/batch/gen_pin_table.py``: every PAN and PIN
follows from its seed, so each row is checked afterwards by building the
customer's PIN block under a ZPK this test formed and asking the backend to
verify it against the stored value under the new key.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from hsmsvc import cli
from hsmsvc.batch.table import connect
from hsmsvc.hsm.commands import VerifyPinStored
from hsmsvc.hsm.model import LegacyForm, PinBlock, StoredPin, StoredPinMethod
from hsmsvc.hsm.policy import ECB_VARIANTS
from hsmsvc.keys.hierarchy import KeyManager
from hsmsvc.keys.store import KeyStore
from hsmsvc.types import Algorithm, KeyType, KeyUsage, ModeOfUse, PinBlockFormat
from tests.batch.sites import (
    Site,
    ZPK_CLEAR,
    check_every_row,
    chunk_rows,
    done_chunks,
    generate_table,
    init_lmk,
    open_transactions,
    table_rows,
    spawn_job,
    form_zpk,
)
from tests.reference import ecb, iso0, odd_parity
from tests.pg import throwaway_db
from tools.batch import gen_pin_table as gen

ROWS = 100_000
MOVE = ("--mode", "psk", "--from", "psk-gen:1", "--to", "psk-new:1", "--generate-to", "TDES_2KEY",
        "--chunk", "2000")


def test_sigkill_at_random_moments_then_resume_loses_and_repeats_nothing(site: Site) -> None:
    generate_table(site, ROWS)
    rng = random.Random()
    chunks = ROWS // 2000
    kill_after = sorted(rng.sample(range(1, chunks - 2), 4))
    inside = 0
    for target in kill_after:
        proc = spawn_job(site, *MOVE)
        deadline = time.monotonic() + 120
        while done_chunks(site.db) < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.03))
        if site.db.startswith("postgresql"):
            inside += open_transactions(site.db) > 0
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
        done = done_chunks(site.db)
        assert done < chunks, "killed too late to test a resume"
    if site.db.startswith("postgresql"):
        assert inside >= 1, "no kill landed inside a transaction"
    proc = spawn_job(site, *MOVE, "--verify-sample", "200")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    assert "0 mismatched" in out.decode()
    assert f"{ROWS:,} moved; 0 refused" in out.decode()
    table = chunk_rows(site.db)
    assert all(done for _, done, _, _, _ in table)
    assert sum(moved for _, _, moved, _, _ in table) == ROWS  # each row counted by exactly one chunk
    check_every_row(site, ROWS, "psk-new:1")


def test_two_workers_on_postgresql_share_the_table_without_overlap(tmp_path: Path) -> None:
    lmk = init_lmk(tmp_path / "lmk.sealed")
    with throwaway_db() as url:
        site = Site(lmk, url, url)
        generate_table(site, 40_000)
        # Two independent processes, as two machines would run the same job.
        procs = [spawn_job(site, *MOVE, "--job", "together") for _ in range(2)]
        outs = [p.communicate(timeout=300) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], [e.decode() for _, e in outs]
        table = chunk_rows(site.db)
        assert len(table) == 20 and all(done for _, done, _, _, _ in table)
        assert sum(moved for _, _, moved, _, _ in table) == 40_000
        workers = {w for *_, w in table}
        assert len(workers) == 2, workers  # both claimed chunks; each chunk has one worker
        check_every_row(site, 40_000, "psk-new:1")
        # And the in-process fan-out: --workers 2 on a fresh table.
        generate_table(site, 20_000, seed=8, psk_id="psk-gen8")
        assert cli.main(site.args("--mode", "psk", "--from", "psk-gen8:1", "--to", "psk-new:1", "--chunk", "2000",
                                  "--job", "forked", "--workers", "2")) == 0
        assert len({w for *_, w in chunk_rows(site.db) if w}) >= 2
        check_every_row(site, 20_000, "psk-new:1", seed=8)


def test_half_moved_table_is_readable_and_dry_run_writes_nothing(tmp_path: Path) -> None:
    site = Site(init_lmk(tmp_path / "lmk.sealed"), f"sqlite:///{tmp_path / 'k.db'}", f"sqlite:///{tmp_path / 'b.db'}")
    generate_table(site, 3000)
    before = table_rows(site.db)
    assert cli.main(site.args(*MOVE, "--dry-run")) == 0
    assert table_rows(site.db) == before
    assert cli.main(site.args(*MOVE, "--max-chunks", "1")) == 3  # stopped early: resume later
    table = table_rows(site.db)
    assert {u for _, _, u in table.values()} == {"psk-gen:1", "psk-new:1"}
    b = site.backend()
    store = KeyStore(site.store, b)
    try:
        keys = {lbl: store.get(*lbl.split(":")[:1], int(lbl.split(":")[1])).cryptogram  # type: ignore[misc]
                for lbl in ("psk-gen:1", "psk-new:1")}
        zpk = form_zpk(b, store)
        for c in gen.customers(7, 3000):
            account, value, under = table[c.id]
            b.execute(VerifyPinStored(pin=PinBlock(ecb(Algorithm.TDES_2KEY, ZPK_CLEAR, iso0(c.pin, c.pan)),
                                                   PinBlockFormat.ISO_0, c.pan),
                                      key=zpk, psk=keys[under], account=account,
                                      stored=StoredPin(StoredPinMethod.ENCRYPTED, bytes.fromhex(value))))
    finally:
        store.close()
        b.close()
    assert cli.main(site.args(*MOVE)) == 0
    check_every_row(site, 3000, "psk-new:1")


def test_bad_rows_are_refused_kept_and_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = Site(init_lmk(tmp_path / "lmk.sealed"), f"sqlite:///{tmp_path / 'k.db'}", f"sqlite:///{tmp_path / 'b.db'}")
    generate_table(site, 500)
    engine = connect(site.db)
    with engine.begin() as conn:
        conn.execute(text("UPDATE customers SET pin = '00112233445566XX' WHERE id = 10"))  # not hex
        conn.execute(text("UPDATE customers SET pin = '0011223344556677' WHERE id = 20"))  # not a PIN block
        conn.execute(text("UPDATE customers SET account = (SELECT account FROM customers WHERE id = 31) "
                          "WHERE id = 30"))  # another customer's account
    engine.dispose()
    assert cli.main(site.args(*MOVE)) == 1
    out = capsys.readouterr().out
    assert "497 moved; 3 refused" in out and "10, 20, 30" in out
    assert "left     3 rows still under psk-gen:1" in out
    table = table_rows(site.db)
    assert {i for i, (_, _, u) in table.items() if u == "psk-gen:1"} == {10, 20, 30}
    for secret in (c.pin for c in gen.customers(7, 500)):
        assert f"PIN {secret}" not in out


def test_digest_mode_keeps_only_keyed_digests(tmp_path: Path) -> None:
    site = Site(init_lmk(tmp_path / "lmk.sealed"), f"sqlite:///{tmp_path / 'k.db'}", f"sqlite:///{tmp_path / 'b.db'}")
    generate_table(site, 2000, algorithm=Algorithm.AES_128)
    assert cli.main(site.args("--mode", "digest", "--from", "psk-gen:1", "--to", "psk-digest:1",
                              "--generate-to", "AES_256", "--verify-sample", "50")) == 0
    assert {len(v) for _, v, _ in table_rows(site.db).values()} == {64}
    check_every_row(site, 2000, "psk-digest:1")


def test_psk_mode_refuses_a_digest_target_and_unknown_tables(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    site = Site(init_lmk(tmp_path / "lmk.sealed"), f"sqlite:///{tmp_path / 'k.db'}", f"sqlite:///{tmp_path / 'b.db'}")
    generate_table(site, 10)
    from hsmsvc.hsm.model import KeySpec

    b = site.backend()
    store = KeyStore(site.store, b)
    KeyManager(store, b, "test").generate(KeySpec("d", 1, KeyType.PSK, Algorithm.AES_256, KeyUsage.MAC_HMAC,
                                                  ModeOfUse.MAC_GENERATE_VERIFY))
    store.close()
    assert cli.main(site.args("--mode", "psk", "--from", "psk-gen:1", "--to", "d:1", "--job", "x")) == 2
    assert cli.main(site.args("--mode", "digest", "--from", "psk-gen:1", "--to", "d:1", "--table", "nope")) == 2
    err = capsys.readouterr().err
    assert "use --mode digest" in err or "PIN_STORE_ENCRYPT" in err
    assert "nope does not exist" in err


def test_lmk_mode_moves_pins_off_the_retiring_lmk(tmp_path: Path) -> None:
    """payShield BG's half of an LMK change: the source PSK is read under the old LMK."""
    old_lmk, new_lmk = init_lmk(tmp_path / "old.sealed"), init_lmk(tmp_path / "new.sealed")
    db = f"sqlite:///{tmp_path / 'b.db'}"
    old_store = f"sqlite:///{tmp_path / 'old-keys.db'}"
    old_site = Site(old_lmk, old_store, db)
    generate_table(old_site, 2000)
    site = Site(new_lmk, f"sqlite:///{tmp_path / 'new-keys.db'}", db)
    KeyStore(site.store, site.backend()).migrate()
    args = site.args("--mode", "lmk", "--from", "psk-gen:1", "--to", "psk-new:1", "--generate-to", "TDES_2KEY",
                     "--old-sealed", str(old_lmk), "--old-passphrase-env", "HSMSVC_TEST_LMK_PASS",
                     "--from-store", old_store, "--verify-sample", "20")
    without_old = [a for a in args if a not in ("--old-sealed", str(old_lmk))]
    assert cli.main(without_old) == 2  # lmk mode needs the old LMK in key change storage
    assert cli.main(args) == 0
    check_every_row(site, 2000, "psk-new:1", backend=site.backend())


def test_legacy_mode_imports_the_old_systems_key_under_a_zmk(tmp_path: Path) -> None:
    """Bank design 004 clause 6.3.2: the retiring system's PIN key comes in under a ZMK, then every PIN moves."""
    site = Site(init_lmk(tmp_path / "lmk.sealed"), f"sqlite:///{tmp_path / 'k.db'}", f"sqlite:///{tmp_path / 'b.db'}")
    # The "old system": its own key store; only its PSK's value and the table come across.
    legacy = Site(init_lmk(tmp_path / "legacy.sealed"), f"sqlite:///{tmp_path / 'legacy-keys.db'}", site.db)
    generate_table(legacy, 1000)
    # Our ZMK, legacy (K0, ECB) form opted in for PSKs, formed from components both sites know.
    from hsmsvc.hsm.model import KeySpec
    from hsmsvc.types import KeyState

    zmk_clear = odd_parity(bytes.fromhex("89ABCDEF0123456776543210FEDCBA98"))
    b = site.backend()
    store = KeyStore(site.store, b)
    store.migrate()
    KeyManager(store, b, "test").form(
        KeySpec("zmk-legacy", 1, KeyType.ZMK, Algorithm.TDES_2KEY, KeyUsage.KEK, ModeOfUse.ENCRYPT_DECRYPT),
        [bytes(16), zmk_clear], legacy_types=frozenset({KeyType.PSK}),
        legacy_form=LegacyForm.HSMSVC_VARIANT)
    store.close()
    b.close()
    psk = gen.psk_clear(7, Algorithm.TDES_2KEY)
    kek = bytes([zmk_clear[0] ^ ECB_VARIANTS[KeyType.PSK]]) + zmk_clear[1:]
    wrapped = ecb(Algorithm.TDES_2KEY, kek, psk)
    kcv = ecb(Algorithm.TDES_2KEY, psk, bytes(8))[:3]
    # The table's rows name the old system's key; relabel them as the imported key's id.
    engine = connect(site.db)
    with engine.begin() as conn:
        conn.execute(text("UPDATE customers SET pin_key = 'legacy-psk:1'"))
    engine.dispose()
    legacy_args = site.args("--mode", "legacy", "--from", "legacy-psk:1", "--to", "psk-new:1",
                            "--generate-to", "TDES_2KEY", "--legacy-key", wrapped.hex(),
                            "--legacy-kcv", kcv.hex(), "--zmk", "zmk-legacy", "--verify-sample", "30")
    assert cli.main([*legacy_args, "--dry-run"]) == 0  # says what it would import and generate, and does neither
    dry = KeyStore(site.store, site.backend())
    assert [r.action for r in dry.audit_rows()][-1] == "key.form" and not dry.versions("legacy-psk")
    dry.close()
    assert cli.main([*legacy_args, "--max-chunks", "0"]) == 3  # imported, then stopped before any chunk
    assert cli.main(legacy_args) == 0  # the resumed run finds the key it imported and does not import again
    check_every_row(site, 1000, "psk-new:1")
    store = KeyStore(site.store, site.backend())
    assert store.get("legacy-psk", 1).state is KeyState.ACTIVE
    actions = [r.action for r in store.audit_rows()]
    assert {"key.import", "key.generate", "pins.reencrypt.start", "pins.reencrypt.finish"} <= set(actions)
    assert store.verify_audit().ok
