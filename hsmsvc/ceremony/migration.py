"""LMK migration (payShield BW): every stored key moves from the old LMK to a new one, resumably.

The audit chain is checked under the old LMK and re-MACed under the new one;
the old LMK is destroyed only after every key and the chain verify under the
new one.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hsmsvc.ceremony.console import Console
from hsmsvc.ceremony.lmk import SealedTarget
from hsmsvc.errors import (
    HsmsvcError, InvalidInput, InvalidKeyBlock, KeyUsageViolation, PermissionDenied, VerificationFailed,
)
from hsmsvc.hsm.commands import Kcv, TranslateLmk
from hsmsvc.hsm.model import KeyCryptogram
from hsmsvc.keys.model import AuditEvent, StoredKey
from hsmsvc.keys.store import KeyStore

__all__ = ["MigrationReport", "migrate"]

@dataclass
class MigrationReport:
    keys: int = 0
    moved: int = 0
    already: int = 0
    audit_rows: int = 0
    verified: bool = False
    old_destroyed: bool = False
    remaining: int = 0


def _chunks(store: KeyStore, batch: int) -> Iterator[list[StoredKey]]:
    """Every stored version that still has a cryptogram (destroyed ones have none), ``batch`` rows at a time."""
    after: tuple[str, int] | None = None
    while True:
        rows = store.all_keys(after, batch)
        if rows:
            after = (rows[-1].key_id, rows[-1].version)
        yield [k for k in rows if k.cryptogram.blob]
        if len(rows) < batch:
            return


def _destroy(path: Path) -> None:
    """Overwrite a sealed file with random bytes, flush it to disk, then unlink it."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    with open(path, "r+b") as f:
        f.write(secrets.token_bytes(size))
        f.flush()
        os.fsync(f.fileno())
    path.unlink()


def migrate(
    console: Console, *, old: SealedTarget, new: SealedTarget, store_url: str, officer: str,
    batch: int = 500, limit: int | None = None, delete_old: bool = False,
) -> MigrationReport:
    """Move every stored key from ``old``'s LMK to ``new``'s (payShield BW); run again to resume.

    Stop the servers first: a server holding only the old LMK cannot use a key
    once it has moved.
    """
    if not 1 <= batch <= 10_000:
        raise InvalidInput("batch", "1 to 10000")
    old_backend = old.open()
    new_backend = new.open(old=old)
    report = MigrationReport()
    old_store, new_store = KeyStore(store_url, old_backend), KeyStore(store_url, new_backend)
    try:
        old_kcv, new_kcv = old_backend.lmk_kcv().hex().upper(), new_backend.lmk_kcv().hex().upper()
        new_store.migrate()
        console.say(f"LMK migration: {old_kcv} -> {new_kcv}, store {new_store!r}")
        # Resuming after the chain moved: every row already verifies under the new LMK.
        now_new = new_store.verify_audit()
        chain_moved = now_new.rows > 0 and now_new.ok
        if not chain_moved:
            check = old_store.verify_audit()
            if not check.ok:
                raise PermissionDenied("audit", "the chain does not verify under the old LMK: "
                                                + "; ".join(check.problems[:3]))
        # 0. SM2 key exchanges started and not finished: their ephemeral keys are under the old LMK
        # and live 30 minutes; the partners start again rather than have them moved.
        dropped = new_store.agreements.purge()
        if dropped:
            console.say(f"  dropped {dropped} started SM2 key agreements: start them again")
        # 1. keys, in batches, each batch one transaction; a moved key verifies under the new LMK.
        for chunk in _chunks(new_store, batch):
            moves: list[tuple[StoredKey, KeyCryptogram]] = []
            for key in chunk:
                report.keys += 1
                try:
                    new_backend.execute(Kcv(key=key.cryptogram))
                    report.already += 1
                    continue
                except (InvalidKeyBlock, KeyUsageViolation):
                    pass
                if limit is not None and report.moved + len(moves) >= limit:
                    report.remaining += 1
                    continue
                try:
                    moves.append((key, new_backend.execute(TranslateLmk(key=key.cryptogram))))
                except HsmsvcError:
                    raise VerificationFailed(f"key {key.key_id} v{key.version}",
                                             "verifies under neither LMK; nothing more was moved") from None
            if moves:
                report.moved += new_store.replace_cryptograms(moves)
                console.say(f"  moved {report.moved} keys")
        if report.remaining:
            console.say(f"stopped at the limit: {report.moved} moved, {report.remaining} still under the old "
                        "LMK; run again to go on")
            return report
        # 2. the audit chain: checked under the old LMK, re-MACed under the new, in one transaction.
        if not chain_moved:
            report.audit_rows = new_store.remac_audit(old_backend, AuditEvent(officer, "lmk.migrate", None, None, (
                ("keys", str(report.keys)), ("new_lmk_kcv", new_kcv), ("old_lmk_kcv", old_kcv))))
            console.say(f"  audit chain: {report.audit_rows} rows re-MACed under the new LMK")
        # 3. verify everything under the new LMK alone.
        verifier = new.open()
        try:
            bad = 0
            for chunk in _chunks(new_store, batch):
                for key in chunk:
                    try:
                        verifier.execute(Kcv(key=key.cryptogram))
                    except HsmsvcError:
                        bad += 1
            chain = KeyStore(store_url, verifier)
            try:
                ok = chain.verify_audit().ok
            finally:
                chain.close()
        finally:
            verifier.close()
        report.verified = bad == 0 and ok
        if not report.verified:
            raise VerificationFailed("lmk", f"{bad} keys or the audit chain fail under the new LMK; old LMK kept")
        console.say(f"verified: {report.keys} keys and the audit chain under the new LMK {new_kcv}")
        if delete_old:
            _destroy(old.path)
            for anchor in old.path.parent.glob(old.path.name + ".anchor*"):  # the legacy one and each store's
                _destroy(anchor)
            report.old_destroyed = True
            new_store.audit(AuditEvent(officer, "lmk.destroy", None, None, (("lmk_kcv", old_kcv),)))
            console.say(f"old LMK {old_kcv} destroyed ({old.path} overwritten and removed)")
        else:
            console.say(f"old LMK kept at {old.path}; "
                        "destroy it with --delete-old once the service runs on the new one")
        return report
    finally:
        old_store.close()
        new_store.close()
        old_backend.close()
        new_backend.close()

