"""End-to-end rate of `hsmsvc reencrypt` on a million-row PostgreSQL table, with its crypto-only rate
and OpenSSL's TDES ceiling measured in the same run.

    .venv/bin/python tools/bench/reencrypt_table.py [--rows 1000000] [--pg postgresql://postgres@127.0.0.1:5432/test]
                                                    [--json out.json]

Makes a throw-away database, a sealed LMK and a customer table from
``tools/batch/gen_pin_table.py``, then runs, in order:

1. crypto only: every row's stored PIN through ``Backend.reencrypt_stored_pins`` in 10,000-row chunks,
   read from the table beforehand (no database in the timing);
2. ``hsmsvc reencrypt --mode psk`` with one worker (TDES PSK to TDES PSK);
3. ``hsmsvc reencrypt --mode psk --workers 2`` (the next rotation, over the whole table again);
4. ``hsmsvc reencrypt --mode digest`` (no target);
5. ``openssl speed -evp des-ede3-ecb``: blocks/s ÷ 2 is the ceiling for a decipherment and an encipherment per PIN.

Issue 7's targets: step 1 at least 40 % of step 5; step 2 at least 50,000 rows/s.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import re
import secrets
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools" / "bench"))

import psycopg  # noqa: E402
from sqlalchemy import text  # noqa: E402

from hsmsvc import cli  # noqa: E402
from hsmsvc.batch.table import connect  # noqa: E402
from hsmsvc.hsm.commands import ReencryptStoredPins  # noqa: E402
from hsmsvc.hsm.soft.backend import SoftBackend  # noqa: E402
from hsmsvc.keys.store import KeyStore  # noqa: E402
from reencrypt_crypto import openssl_blocks_per_second  # noqa: E402
from tools.batch import gen_pin_table as gen  # noqa: E402

PASS_ENV = "HSMSVC_BENCH_LMK_PASS"


def _run(common: list[str], *extra: str) -> tuple[float, float, str]:
    """One `hsmsvc reencrypt`: (wall seconds, rows/s of the work phase as it reports, its report)."""
    buf = io.StringIO()
    started = time.perf_counter()
    with redirect_stdout(buf):
        rc = cli.main(["reencrypt", *common, *extra])
    wall = time.perf_counter() - started
    out = buf.getvalue()
    if rc != 0:
        raise SystemExit(f"reencrypt failed ({rc}):\n{out}")
    rate = float(re.search(r"s: ([\d,]+) rows/s end to end", out).group(1).replace(",", ""))  # type: ignore[union-attr]
    return wall, rate, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test", help="an admin connection")
    ap.add_argument("--json", help="write the figures here too")
    args = ap.parse_args()
    name = f"hsmsvc_bench_{secrets.token_hex(4)}"
    with psycopg.connect(args.pg, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    url = args.pg.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    os.environ[PASS_ENV] = secrets.token_hex(16)
    figures: dict[str, float] = {"rows": args.rows}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            lmk = Path(tmp) / "lmk.sealed"
            with redirect_stdout(io.StringIO()):
                cli.main(["lmk", "init", "--sealed", str(lmk), "--passphrase-env", PASS_ENV, "--scrypt-log2-n", "14"])
            backend = SoftBackend.from_sealed(lmk, os.environ[PASS_ENV].encode())
            store = KeyStore(url, backend)
            store.migrate()
            t = time.perf_counter()
            gen.generate(url, store, backend, args.rows)
            figures["generate_seconds"] = time.perf_counter() - t

            # 1. crypto only, on the table's own rows.
            engine = connect(url)
            with engine.connect() as conn:
                rows = [(bytes.fromhex(p), a) for a, p in conn.execute(text("SELECT account, pin FROM customers"))]
            engine.dispose()
            from hsmsvc.hsm.model import KeySpec
            from hsmsvc.keys.hierarchy import KeyManager
            from hsmsvc.types import Algorithm, KeyType, KeyUsage, ModeOfUse

            KeyManager(store, backend, "bench").generate(KeySpec(
                "psk-crypto", 1, KeyType.PSK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION, ModeOfUse.ENCRYPT_DECRYPT))
            old, new = store.get("psk-gen", 1).cryptogram, store.get("psk-crypto", 1).cryptogram
            gc.collect()
            gc.freeze()  # the bench's million rows, not the job's chunk: keep the collector off them
            t = time.perf_counter()
            refused = 0
            for i in range(0, len(rows), 10_000):
                refused += backend.execute(ReencryptStoredPins(
                    old_psk=old, new_psk=new, rows=rows[i : i + 10_000])).count(None)
            figures["crypto_rows_per_s"] = len(rows) / (time.perf_counter() - t)
            assert refused == 0
            del rows
            gc.unfreeze()
            gc.collect()
            store.close()
            backend.close()

            common = ["--sealed", str(lmk), "--passphrase-env", PASS_ENV, "--db", url, "--store", url,
                      "--table", "customers", "--no-progress"]
            # 2.-4. end to end.
            for key, extra in (
                ("psk_1_worker", ("--mode", "psk", "--from", "psk-gen:1", "--to", "psk-a:1", "--generate-to",
                                  "TDES_2KEY")),
                ("psk_2_workers", ("--mode", "psk", "--from", "psk-a:1", "--to", "psk-b:1", "--generate-to",
                                   "TDES_2KEY", "--workers", "2")),
                ("digest_1_worker", ("--mode", "digest", "--from", "psk-b:1", "--to", "psk-digest:1",
                                     "--generate-to", "AES_256", "--verify-sample", "1000")),
            ):
                wall, rate, report = _run(common, *extra)
                figures[f"{key}_rows_per_s"] = rate
                figures[f"{key}_wall_seconds"] = wall
                print(report.rstrip().replace("\n", "\n    "), file=sys.stderr)
            figures["openssl_ceiling_pins_per_s"] = openssl_blocks_per_second() / 2
    finally:
        with psycopg.connect(args.pg, autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    ceiling = figures["openssl_ceiling_pins_per_s"]
    print(f"| {args.rows:,} rows, PostgreSQL, soft backend | rows/s | against |")
    print("|---|---:|---|")
    print(f"| crypto only, TDES to TDES (format 0, 10,000-row chunks) | {figures['crypto_rows_per_s']:,.0f} | "
          f"{figures['crypto_rows_per_s'] / ceiling:.0%} of openssl's ceiling (target 40 %) |")
    print(f"| openssl des-ede3-ecb blocks/s ÷ 2 (same run) | {ceiling:,.0f} | |")
    print(f"| end to end, psk mode, 1 worker | {figures['psk_1_worker_rows_per_s']:,.0f} | target 50,000; "
          f"whole command {figures['psk_1_worker_wall_seconds']:.1f} s |")
    print(f"| end to end, psk mode, 2 workers | {figures['psk_2_workers_rows_per_s']:,.0f} | "
          f"whole command {figures['psk_2_workers_wall_seconds']:.1f} s |")
    print(f"| end to end, digest mode, 1 worker | {figures['digest_1_worker_rows_per_s']:,.0f} | no target; "
          f"whole command {figures['digest_1_worker_wall_seconds']:.1f} s |")
    print(f"| (generating the table) | {args.rows / figures['generate_seconds']:,.0f} | |")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
