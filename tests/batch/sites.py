"""What the stored-PIN re-encryption tests share: a site (sealed LMK, key store, customer table) and
ways to fill, run and check it. Expected PIN blocks come from tests.reference, not from hsmsvc."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text

from hsmsvc import cli
from hsmsvc.batch.table import connect
from hsmsvc.hsm.backend import Backend
from hsmsvc.hsm.commands import VerifyPinStored
from hsmsvc.hsm.model import PinBlock, StoredPin, StoredPinMethod
from hsmsvc.hsm.soft.backend import SoftBackend
from hsmsvc.keys.hierarchy import KeyManager
from hsmsvc.keys.store import KeyStore
from hsmsvc.types import Algorithm, KeyType, KeyUsage, PinBlockFormat
from tests.reference import ecb, iso0, odd_parity
from tools.batch import gen_pin_table as gen

PASS = "reencrypt-test-passphrase"
ROOT = Path(__file__).resolve().parents[2]
ZPK_CLEAR = odd_parity(bytes.fromhex("0123456789ABCDEFFEDCBA9876543210"))


def init_lmk(path: Path) -> Path:
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


def generate_table(site: Site, rows: int, seed: int = 7, algorithm: Algorithm = Algorithm.TDES_2KEY,
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


def form_zpk(backend: Backend, store: KeyStore) -> object:
    from hsmsvc.hsm.model import KeySpec

    c1 = bytes(16)
    spec = KeySpec("zpk-check", 1, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    try:
        return store.get("zpk-check", 1).cryptogram
    except Exception:
        return KeyManager(store, backend, "test").form(spec, [c1, ZPK_CLEAR])[0].cryptogram


def table_rows(db: str) -> dict[int, tuple[str, str, str]]:
    engine = connect(db)
    try:
        with engine.connect() as conn:
            return {r[0]: (r[1], r[2], r[3])
                    for r in conn.execute(text("SELECT id, account, pin, pin_key FROM customers"))}
    finally:
        engine.dispose()


def check_every_row(site: Site, rows: int, label: str, seed: int = 7, backend: Backend | None = None) -> None:
    """Each customer's PIN, rebuilt from the seed, verifies against the stored value under ``label``'s key."""
    b = backend or site.backend()
    store = KeyStore(site.store, b)
    try:
        key_id, version = label.split(":")
        psk = store.get(key_id, int(version)).cryptogram
        method = StoredPinMethod.ENCRYPTED if psk.spec.usage is KeyUsage.PIN_ENCRYPTION else StoredPinMethod.DIGEST
        zpk = form_zpk(b, store)
        table = table_rows(site.db)
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


def chunk_rows(db: str) -> list[tuple[int, bool, int, int, str | None]]:
    engine = connect(db)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(  # type: ignore[misc]
                "SELECT seq, done, moved, rejected, worker FROM hsmsvc_reencrypt_customers_chunks ORDER BY seq"))]
    finally:
        engine.dispose()


def open_transactions(db: str) -> int:
    import psycopg

    url = db.split("?")[0].replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as c:
        row = c.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'hsmsvc-reencrypt-test' "
                        "AND xact_start IS NOT NULL AND pid <> pg_backend_pid()").fetchone()
        return int(row[0]) if row else 0


def spawn_job(site: Site, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HSMSVC_TEST_LMK_PASS": PASS, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "hsmsvc", *site.args(*extra)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def done_chunks(db: str) -> int:
    try:
        return sum(1 for c in chunk_rows(db) if c[1])
    except Exception:
        return 0  # not planned yet
