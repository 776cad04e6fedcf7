"""Crypto-only rate of stored-PIN re-encipherment, against OpenSSL's own TDES ECB rate, in one run.

    .venv/bin/python tools/bench/reencrypt_crypto.py [--rows 1000000] [--chunk 10000]

Measures ``Backend.reencrypt_stored_pins`` on the soft backend (TDES PSK to
TDES PSK, format 0: one ECB decipherment, one check, one encipherment per
chunk) and ``openssl speed -evp des-ede3-ecb`` on this machine right after.
Each PIN costs one decryption and one encryption of a block, so the ceiling
is OpenSSL's blocks/s divided by two; issue 7's target is 40 % of that.
Also reports the generic per-row path (AES PSK, format 4) with no target.
"""

from __future__ import annotations

import argparse
import gc
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hsmsvc.crypto import components  # noqa: E402
from hsmsvc.hsm.commands import FormKey, ReencryptStoredPins
from hsmsvc.hsm.model import KeySpec  # noqa: E402
from hsmsvc.hsm.soft.backend import SoftBackend  # noqa: E402
from hsmsvc.types import Algorithm, KeyType, KeyUsage, ModeOfUse  # noqa: E402
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES  # noqa: E402
from cryptography.hazmat.primitives.ciphers import Cipher, modes  # noqa: E402


def _psk(b: SoftBackend, alg: Algorithm, name: str) -> tuple[object, bytes]:
    while True:
        clear = secrets.token_bytes(alg.key_length)
        if alg.is_tdes:
            clear = components.adjust_odd_parity(clear)
        try:
            c1 = secrets.token_bytes(alg.key_length)
            spec = KeySpec(name, 1, KeyType.PSK, alg, KeyUsage.PIN_ENCRYPTION, ModeOfUse.ENCRYPT_DECRYPT)
            cg, _ = b.execute(FormKey(spec=spec, components=[c1, bytes(x ^ y for x, y in zip(c1, clear))]))
            return cg, clear
        except Exception:
            continue


def _table(n: int, key: bytes) -> list[tuple[bytes, str]]:
    """Stored format 0 PINs under ``key``, made with pyca (not the code under test)."""
    accounts = [f"6222{i:012d}" for i in range(n)]
    plain = bytearray()
    for i, a in enumerate(accounts):
        pin = f"{(i * 7919) % 10000:04d}"
        field = bytes.fromhex(f"04{pin}".ljust(16, "F"))
        pan = bytes.fromhex("0000" + a[-13:-1])
        plain += bytes(x ^ y for x, y in zip(field, pan))
    k = key + key[:8] if len(key) == 16 else key
    enc = Cipher(TripleDES(k), modes.ECB()).encryptor()
    blocks = enc.update(bytes(plain)) + enc.finalize()
    return [(blocks[8 * i : 8 * i + 8], a) for i, a in enumerate(accounts)]


def openssl_blocks_per_second() -> float:
    out = subprocess.run(["openssl", "speed", "-evp", "des-ede3-ecb", "-seconds", "2", "-bytes", "16384"],
                         capture_output=True, text=True, check=True).stdout
    kbytes = float(re.search(r"DES-EDE3-ECB\s+([\d.]+)k", out, re.I).group(1))  # type: ignore[union-attr]
    return kbytes * 1000 / 8


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--chunk", type=int, default=10_000)
    args = ap.parse_args()
    b = SoftBackend(secrets.token_bytes(32))
    (old, old_clear), (new, _) = _psk(b, Algorithm.TDES_2KEY, "psk-old"), _psk(b, Algorithm.TDES_2KEY, "psk-new")
    rows = _table(args.rows, old_clear)
    # The million-row table is the bench's, not the job's (which holds one chunk): keep the
    # cyclic collector from re-scanning it in the middle of the timed loop.
    gc.collect()
    gc.freeze()
    t = time.perf_counter()
    bad = 0
    for i in range(0, len(rows), args.chunk):
        bad += b.execute(ReencryptStoredPins(old_psk=old, new_psk=new,
                                             rows=rows[i : i + args.chunk])).count(None)  # type: ignore[arg-type]
    tdes = len(rows) / (time.perf_counter() - t)
    assert bad == 0
    aes_old, _ = _psk(b, Algorithm.AES_128, "psk-aes-old")
    aes_rows = b.execute(ReencryptStoredPins(old_psk=old, new_psk=aes_old,
                                             rows=rows[:20_000]))  # type: ignore[arg-type]
    aes_new, _ = _psk(b, Algorithm.AES_128, "psk-aes-new")
    t = time.perf_counter()
    b.execute(ReencryptStoredPins(old_psk=aes_old, new_psk=aes_new,
                                  rows=[(v, a) for v, (_, a) in zip(aes_rows, rows)]))  # type: ignore[arg-type, misc]
    aes = 20_000 / (time.perf_counter() - t)
    ceiling = openssl_blocks_per_second() / 2
    print(f"rows {args.rows:,} in chunks of {args.chunk:,}")
    print(f"TDES format 0 -> TDES, vectorised : {tdes:12,.0f} PINs/s")
    print(f"openssl des-ede3-ecb blocks/s / 2 : {ceiling:12,.0f} PINs/s (same run)")
    print(f"ratio                              : {tdes / ceiling:12.0%}  (target >= 40%)")
    print(f"AES format 4 -> AES, per row      : {aes:12,.0f} PINs/s (no target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
