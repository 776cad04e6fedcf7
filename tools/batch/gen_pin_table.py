"""A realistic customer table of stored PINs, for the re-encryption tests and benchmark.

    .venv/bin/python tools/batch/gen_pin_table.py --db URL --store URL --sealed LMK \\
        --passphrase-env VAR --rows 1000000 [--table customers] [--seed 7] [--psk-id psk-gen]

N customers, each with a 16-digit PAN (BIN 622202, a valid Luhn check digit)
and a random 4- to 6-digit PIN stored under a PSK as the service would store
it (ISO 9564-1 format 0 under a TDES PSK, format 4 under an AES PSK).

Everything comes from ``--seed``: the PANs, the PINs and the PSK itself,
which is formed in the key store from two components the seed gives. That
is what lets a test check every row afterwards, and why this tool is for
test data only: never give it a production store. The rows' key-version
column says ``<psk-id>:1``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from sqlalchemy import BigInteger, Column, MetaData, String, Table, insert
from sqlalchemy.engine import Engine

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hsmsvc.batch.table import connect  # noqa: E402
from hsmsvc.crypto import components, kcv, pinblock  # noqa: E402
from hsmsvc.errors import KeyNotFound  # noqa: E402
from hsmsvc.hsm.backend import Backend  # noqa: E402
from hsmsvc.hsm.model import KeySpec  # noqa: E402
from hsmsvc.keys.hierarchy import KeyManager  # noqa: E402
from hsmsvc.keys.model import StoredKey  # noqa: E402
from hsmsvc.keys.store import KeyStore  # noqa: E402
from hsmsvc.types import Algorithm, KeyType, KeyUsage, ModeOfUse, PinBlockFormat  # noqa: E402

BIN = "622202"


@dataclass(frozen=True)
class Customer:
    id: int
    pan: str
    pin: str


def luhn_digit(body: str) -> str:
    """The check digit ISO/IEC 7812-1 annex B appends to ``body``."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str(-total % 10)


def customers(seed: int, n: int) -> Iterator[Customer]:
    """The same N customers for the same seed: a test re-derives each PIN to check it."""
    rng = random.Random(seed)
    accounts = rng.sample(range(10**9), n) if n <= 10**8 else range(n)
    for i, acct in enumerate(accounts, 1):
        body = f"{BIN}{acct:09d}"
        length = rng.choice((4, 6, 6, 6, 5))
        yield Customer(i, body + luhn_digit(body), f"{rng.randrange(10 ** length):0{length}d}")


def psk_clear(seed: int, algorithm: Algorithm) -> bytes:
    """The test PSK, from the seed (never a production key)."""
    raw = hashlib.sha256(f"hsmsvc test psk {seed}".encode()).digest()[: algorithm.key_length]
    return components.adjust_odd_parity(raw) if algorithm.is_tdes else raw


def _cipher(algorithm: Algorithm, key: bytes) -> Cipher[modes.ECB]:
    # Two-key TDES as K1 K2 K1 (pyca wants the 24-byte form).
    prim = TripleDES(key + key[:8] if len(key) == 16 else key) if algorithm.is_tdes else algorithms.AES(key)
    return Cipher(prim, modes.ECB())


class _Ecb:
    """pyca's ECB as the ``EcbCipher`` that ``pinblock.encipher`` takes (format 4)."""

    def __init__(self, algorithm: Algorithm, key: bytes) -> None:
        self.algorithm = algorithm
        self._c = _cipher(algorithm, key)

    def encrypt(self, data: bytes) -> bytes:
        e = self._c.encryptor()
        return e.update(data) + e.finalize()

    def decrypt(self, data: bytes) -> bytes:
        d = self._c.decryptor()
        return d.update(data) + d.finalize()


def stored_values(people: list[Customer], algorithm: Algorithm, key: bytes) -> list[bytes]:
    """Each customer's PIN stored under ``key``: format 0 in one ECB pass, or format 4 one by one."""
    if algorithm.is_tdes:
        blob = _Ecb(algorithm, key).encrypt(b"".join([pinblock.encode_iso0(c.pin, c.pan) for c in people]))
        return [blob[i : i + 8] for i in range(0, len(blob), 8)]
    ecb = _Ecb(algorithm, key)
    return [pinblock.encipher(PinBlockFormat.ISO_4, ecb, c.pin, c.pan) for c in people]


def ensure_psk(store: KeyStore, backend: Backend, psk_id: str, seed: int, algorithm: Algorithm) -> StoredKey:
    """The seed's PSK in the key store, formed from two components if it is not there yet."""
    try:
        key = store.get(psk_id, 1)
        want = kcv.kcv(algorithm, psk_clear(seed, algorithm))
        if key.cryptogram.spec.algorithm is not algorithm or key.cryptogram.kcv != want:
            raise SystemExit(f"{psk_id}:1 is in the store but is not seed {seed}'s {algorithm.value} PSK")
    except KeyNotFound:
        clear = psk_clear(seed, algorithm)
        c1 = hashlib.sha256(f"hsmsvc test psk component {seed}".encode()).digest()[: algorithm.key_length]
        spec = KeySpec(psk_id, 1, KeyType.PSK, algorithm, KeyUsage.PIN_ENCRYPTION, ModeOfUse.ENCRYPT_DECRYPT)
        key, _ = KeyManager(store, backend, "gen_pin_table").form(
            spec, [c1, bytes(a ^ b for a, b in zip(c1, clear))], alias=f"test-data/{psk_id}")
    return key


def create_table(engine: Engine, name: str) -> Table:
    t = Table(
        name, MetaData(),
        Column("id", BigInteger, primary_key=True),
        Column("name", String(40), nullable=False),
        Column("account", String(19), nullable=False),
        Column("pin", String(64), nullable=False),
        Column("pin_key", String(80), nullable=False),
    )
    t.drop(engine, checkfirst=True)
    t.create(engine)
    return t


def fill(engine: Engine, table: Table, people: list[Customer], values: list[bytes], label: str) -> None:
    """Insert the rows: COPY on PostgreSQL, one executemany elsewhere; one transaction either way."""
    if engine.dialect.name == "postgresql":
        buf = io.StringIO()
        for c, v in zip(people, values):
            buf.write(f"{c.id}\tcustomer {c.id:07d}\t{c.pan}\t{v.hex().upper()}\t{label}\n")
        with engine.begin() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            with raw.cursor() as cur, cur.copy(
                f'COPY "{table.name}" (id, name, account, pin, pin_key) FROM STDIN'
            ) as copy:
                copy.write(buf.getvalue())
        with engine.connect() as conn:
            conn.exec_driver_sql(f'ANALYZE "{table.name}"')
        return
    with engine.begin() as conn:
        conn.execute(insert(table), [
            {"id": c.id, "name": f"customer {c.id:07d}", "account": c.pan, "pin": v.hex().upper(), "pin_key": label}
            for c, v in zip(people, values)
        ])


def generate(db: str, store: KeyStore, backend: Backend, rows: int, table: str = "customers", seed: int = 7,
             psk_id: str = "psk-gen", algorithm: Algorithm = Algorithm.TDES_2KEY) -> StoredKey:
    """Create (or replace) ``table`` with ``rows`` customers; the PSK it used."""
    key = ensure_psk(store, backend, psk_id, seed, algorithm)
    people = list(customers(seed, rows))
    values = stored_values(people, algorithm, psk_clear(seed, algorithm))
    engine = connect(db)
    try:
        fill(engine, create_table(engine, table), people, values, f"{psk_id}:1")
    finally:
        engine.dispose()
    return key


def main(argv: list[str] | None = None) -> int:
    from hsmsvc.cli import backend as backend_options

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", required=True, help="customer database URL")
    p.add_argument("--store", required=True, help="key store URL (the test PSK is formed there)")
    backend_options.add_arguments(p)
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--table", default="customers")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--psk-id", default="psk-gen")
    p.add_argument("--algorithm", default="TDES_2KEY", help="TDES_2KEY (format 0) or AES_128 (format 4)")
    args = p.parse_args(argv)
    backend = backend_options.open_backend(args)
    store = KeyStore(args.store, backend)
    try:
        store.migrate()
        key = generate(args.db, store, backend, args.rows, args.table, args.seed, args.psk_id,
                       Algorithm[args.algorithm])
    finally:
        store.close()
        backend.close()
    print(f"{args.rows:,} customers in {args.table}; "
          f"PINs under {key.key_id}:1 (KCV {key.cryptogram.kcv.hex().upper()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
