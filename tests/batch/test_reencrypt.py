"""`hsmsvc reencrypt` over real SQLite and PostgreSQL tables, killed with SIGKILL and resumed.

The table comes from ``tools/batch/gen_pin_table.py``: every PAN and PIN
follows from its seed, so each row is checked afterwards by building the
customer's PIN block under a ZPK this test formed and asking the backend to
verify it against the stored value under the new key.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text

from hsmsvc import cli
from hsmsvc.batch.table import connect
from hsmsvc.hsm.backend import Backend
from hsmsvc.hsm.commands import VerifyPinStored
from hsmsvc.hsm.model import PinBlock, StoredPin, StoredPinMethod
from hsmsvc.hsm.policy import ECB_VARIANTS
from hsmsvc.hsm.soft.backend import SoftBackend
from hsmsvc.keys.hierarchy import KeyManager
from hsmsvc.keys.store import KeyStore
from hsmsvc.types import Algorithm, KeyType, KeyUsage, ModeOfUse, PinBlockFormat
from tests.reference import ecb, iso0, odd_parity
from tests.pg import throwaway_db
from tools.batch import gen_pin_table as gen

PASS = "reencrypt-test-passphrase"
ROOT = Path(__file__).resolve().parents[2]
ZPK_CLEAR = odd_parity(bytes.fromhex("0123456789ABCDEFFEDCBA9876543210"))


@pytest.fixture(autouse=True)
def _passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HSMSVC_TEST_LMK_PASS", PASS)


def _lmk(path: Path) -> Path:
    assert cli.main(["lmk", "init", "--sealed", str(path), "--passphrase-env", "HSMSVC_TEST_LMK_PASS",
                     "--scrypt-log2-n", "14"]) == 0
    return path


@dataclass
class Site:
    lmk: Path
    store: str
    db: str

    def backend(self, old: Path | None = None) -> SoftBackend:
        return SoftBackend.from_sealed(self.lmk, PASS.encode(), old=(old, PASS.encode()) if old else None)

    def args(self, *extra: str) -> list[str]:
        return ["reencrypt", "--sealed", str(self.lmk), "--passphrase-env", "HSMSVC_TEST_LMK_PASS",
                "--db", self.db, "--store", self.store, "--table", "customers", "--no-progress", *extra]


@pytest.fixture(params=["sqlite", "postgresql"])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    lmk = _lmk(tmp_path / "lmk.sealed")
    if request.param == "sqlite":
        yield Site(lmk, f"sqlite:///{tmp_path / 'keys.db'}", f"sqlite:///{tmp_path / 'bank.db'}")
    else:
        with throwaway_db() as url:
            # application_name lets the test see the job's open transactions in pg_stat_activity.
            yield Site(lmk, url, url + "?application_name=hsmsvc-reencrypt-test")


def _generate(site: Site, rows: int, seed: int = 7, algorithm: Algorithm = Algorithm.TDES_2KEY,
              backend: Backend | None = None, store_url: str | None = None, psk_id: str = "psk-gen") -> None:
    b = backend or site.backend()
    store = KeyStore(store_url or site.store, b)
    try:
        store.migrate()
        gen.generate(site.db, store, b, rows, seed=seed, psk_id=psk_id, algorithm=algorithm)
    finally:
        store.close()
        if backend is None:
            b.close()


def _zpk(backend: Backend, store: KeyStore) -> object:
    from hsmsvc.hsm.model import KeySpec

    c1 = bytes(16)
    spec = KeySpec("zpk-check", 1, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    try:
        return store.get("zpk-check", 1).cryptogram
    except Exception:
        return KeyManager(store, backend, "test").form(spec, [c1, ZPK_CLEAR])[0].cryptogram


def _rows(db: str) -> dict[int, tuple[str, str, str]]:
    engine = connect(db)
    try:
        with engine.connect() as conn:
            return {r[0]: (r[1], r[2], r[3])
                    for r in conn.execute(text("SELECT id, account, pin, pin_key FROM customers"))}
    finally:
        engine.dispose()


def _check_every_row(site: Site, rows: int, label: str, seed: int = 7, backend: Backend | None = None) -> None:
    """Each customer's PIN, rebuilt from the seed, verifies against the stored value under ``label``'s key."""
    b = backend or site.backend()
    store = KeyStore(site.store, b)
    try:
        key_id, version = label.split(":")
        psk = store.get(key_id, int(version)).cryptogram
        method = StoredPinMethod.ENCRYPTED if psk.spec.usage is KeyUsage.PIN_ENCRYPTION else StoredPinMethod.DIGEST
        zpk = _zpk(b, store)
        table = _rows(site.db)
        assert len(table) == rows
        for c in gen.customers(seed, rows):
            account, value, under = table[c.id]
            assert (account, under) == (c.pan, label)
            block = ecb(Algorithm.TDES_2KEY, ZPK_CLEAR, iso0(c.pin, c.pan))
            b.execute(VerifyPinStored(pin=PinBlock(block, PinBlockFormat.ISO_0, c.pan), key=zpk, psk=psk,
                                      account=account, stored=StoredPin(method, bytes.fromhex(value))))
    finally:
        store.close()
        if backend is None:
            b.close()


def _chunks(db: str) -> list[tuple[int, bool, int, int, str | None]]:
    engine = connect(db)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(  # type: ignore[misc]
                "SELECT seq, done, moved, rejected, worker FROM hsmsvc_reencrypt_customers_chunks ORDER BY seq"))]
    finally:
        engine.dispose()


def _open_transactions(db: str) -> int:
    import psycopg

    url = db.split("?")[0].replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as c:
        row = c.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'hsmsvc-reencrypt-test' "
                        "AND xact_start IS NOT NULL AND pid <> pg_backend_pid()").fetchone()
        return int(row[0]) if row else 0


def _spawn(site: Site, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HSMSVC_TEST_LMK_PASS": PASS, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "hsmsvc", *site.args(*extra)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _done_chunks(db: str) -> int:
    try:
        return sum(1 for c in _chunks(db) if c[1])
    except Exception:
        return 0  # not planned yet


ROWS = 100_000
MOVE = ("--mode", "psk", "--from", "psk-gen:1", "--to", "psk-new:1", "--generate-to", "TDES_2KEY",
        "--chunk", "2000")


def test_sigkill_at_random_moments_then_resume_loses_and_repeats_nothing(site: Site) -> None:
    _generate(site, ROWS)
    rng = random.Random()
    chunks = ROWS // 2000
    kill_after = sorted(rng.sample(range(1, chunks - 2), 4))
    inside = 0
    for target in kill_after:
        proc = _spawn(site, *MOVE)
        deadline = time.monotonic() + 120
        while _done_chunks(site.db) < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.03))
        if site.db.startswith("postgresql"):
            inside += _open_transactions(site.db) > 0
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
        done = _done_chunks(site.db)
        assert done < chunks, "killed too late to test a resume"
    if site.db.startswith("postgresql"):
        assert inside >= 1, "no kill landed inside a transaction"
    proc = _spawn(site, *MOVE, "--verify-sample", "200")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    assert "0 mismatched" in out.decode()
    assert f"{ROWS:,} moved; 0 refused" in out.decode()
    table = _chunks(site.db)
    assert all(done for _, done, _, _, _ in table)
    assert sum(moved for _, _, moved, _, _ in table) == ROWS  # each row counted by exactly one chunk
    _check_every_row(site, ROWS, "psk-new:1")


def test_two_workers_on_postgresql_share_the_table_without_overlap(tmp_path: Path) -> None:
    lmk = _lmk(tmp_path / "lmk.sealed")
    with throwaway_db() as url:
        site = Site(lmk, url, url)
        _generate(site, 40_000)
        # Two independent processes, as two machines would run the same job.
        procs = [_spawn(site, *MOVE, "--job", "together") for _ in range(2)]
        outs = [p.communicate(timeout=300) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], [e.decode() for _, e in outs]
        table = _chunks(site.db)
        assert len(table) == 20 and all(done for _, done, _, _, _ in table)
        assert sum(moved for _, _, moved, _, _ in table) == 40_000
        workers = {w for *_, w in table}
        assert len(workers) == 2, workers  # both claimed chunks; each chunk has one worker
        _check_every_row(site, 40_000, "psk-new:1")
        # And the in-process fan-out: --workers 2 on a fresh table.
        _generate(site, 20_000, seed=8, psk_id="psk-gen8")
        assert cli.main(site.args("--mode", "psk", "--from", "psk-gen8:1", "--to", "psk-new:1", "--chunk", "2000",
                                  "--job", "forked", "--workers", "2")) == 0
        assert len({w for *_, w in _chunks(site.db) if w}) >= 2
        _check_every_row(site, 20_000, "psk-new:1", seed=8)


def test_half_moved_table_is_readable_and_dry_run_writes_nothing(tmp_path: Path) -> None:
    site = Site(_lmk(tmp_path / "lmk.sealed"), f"sqlite:///{tmp_path / 'k.db'}", f"sqlite:///{tmp_path / 'b.db'}")
    _generate(site, 3000)
    before = _rows(site.db)
    assert cli.main(site.args(*MOVE, "--dry-run")) == 0
    assert _rows(site.db) == before
    assert cli.main(site.args(*MOVE, "--max-chunks", "1")) == 3  # stopped early: resume later
    table = _rows(site.db)
    assert {u for _, _, u in table.values()} == {"psk-gen:1", "psk-new:1"}
    b = site.backend()
    store = KeyStore(site.store, b)
    try:
        keys = {lbl: store.get(*lbl.split(":")[:1], int(lbl.split(":")[1])).cryptogram  # type: ignore[misc]
                for lbl in ("psk-gen:1", "psk-new:1")}
        zpk = _zpk(b, store)
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
    _check_every_row(site, 3000, "psk-new:1")


def test_bad_rows_are_refused_kept_and_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = Site(_lmk(tmp_path / "lmk.sealed"), f"sqlite:///{tmp_path / 'k.db'}", f"sqlite:///{tmp_path / 'b.db'}")
    _generate(site, 500)
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
    table = _rows(site.db)
    assert {i for i, (_, _, u) in table.items() if u == "psk-gen:1"} == {10, 20, 30}
    for secret in (c.pin for c in gen.customers(7, 500)):
        assert f"PIN {secret}" not in out


def test_digest_mode_keeps_only_keyed_digests(tmp_path: Path) -> None:
    site = Site(_lmk(tmp_path / "lmk.sealed"), f"sqlite:///{tmp_path / 'k.db'}", f"sqlite:///{tmp_path / 'b.db'}")
    _generate(site, 2000, algorithm=Algorithm.AES_128)
    assert cli.main(site.args("--mode", "digest", "--from", "psk-gen:1", "--to", "psk-digest:1",
                              "--generate-to", "AES_256", "--verify-sample", "50")) == 0
    assert {len(v) for _, v, _ in _rows(site.db).values()} == {64}
    _check_every_row(site, 2000, "psk-digest:1")


def test_psk_mode_refuses_a_digest_target_and_unknown_tables(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    site = Site(_lmk(tmp_path / "lmk.sealed"), f"sqlite:///{tmp_path / 'k.db'}", f"sqlite:///{tmp_path / 'b.db'}")
    _generate(site, 10)
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
    old_lmk, new_lmk = _lmk(tmp_path / "old.sealed"), _lmk(tmp_path / "new.sealed")
    db = f"sqlite:///{tmp_path / 'b.db'}"
    old_store = f"sqlite:///{tmp_path / 'old-keys.db'}"
    old_site = Site(old_lmk, old_store, db)
    _generate(old_site, 2000)
    site = Site(new_lmk, f"sqlite:///{tmp_path / 'new-keys.db'}", db)
    KeyStore(site.store, site.backend()).migrate()
    args = site.args("--mode", "lmk", "--from", "psk-gen:1", "--to", "psk-new:1", "--generate-to", "TDES_2KEY",
                     "--old-sealed", str(old_lmk), "--old-passphrase-env", "HSMSVC_TEST_LMK_PASS",
                     "--from-store", old_store, "--verify-sample", "20")
    without_old = [a for a in args if a not in ("--old-sealed", str(old_lmk))]
    assert cli.main(without_old) == 2  # lmk mode needs the old LMK in key change storage
    assert cli.main(args) == 0
    _check_every_row(site, 2000, "psk-new:1", backend=site.backend())


def test_legacy_mode_imports_the_old_systems_key_under_a_zmk(tmp_path: Path) -> None:
    """Bank design 004 clause 6.3.2: the retiring system's PIN key comes in under a ZMK, then every PIN moves."""
    site = Site(_lmk(tmp_path / "lmk.sealed"), f"sqlite:///{tmp_path / 'k.db'}", f"sqlite:///{tmp_path / 'b.db'}")
    # The "old system": its own key store; only its PSK's value and the table come across.
    legacy = Site(_lmk(tmp_path / "legacy.sealed"), f"sqlite:///{tmp_path / 'legacy-keys.db'}", site.db)
    _generate(legacy, 1000)
    # Our ZMK, legacy (K0, ECB) form opted in for PSKs, formed from components both sites know.
    from hsmsvc.hsm.model import KeySpec
    from hsmsvc.types import KeyState

    zmk_clear = odd_parity(bytes.fromhex("89ABCDEF0123456776543210FEDCBA98"))
    b = site.backend()
    store = KeyStore(site.store, b)
    store.migrate()
    KeyManager(store, b, "test").form(
        KeySpec("zmk-legacy", 1, KeyType.ZMK, Algorithm.TDES_2KEY, KeyUsage.KEK, ModeOfUse.ENCRYPT_DECRYPT),
        [bytes(16), zmk_clear], legacy_types=frozenset({KeyType.PSK}))
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
    _check_every_row(site, 1000, "psk-new:1")
    store = KeyStore(site.store, site.backend())
    assert store.get("legacy-psk", 1).state is KeyState.ACTIVE
    actions = [r.action for r in store.audit_rows()]
    assert {"key.import", "key.generate", "pins.reencrypt.start", "pins.reencrypt.finish"} <= set(actions)
    assert store.verify_audit().ok
