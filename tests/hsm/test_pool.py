"""The pool: failover under SIGKILL, restart, and refusal of a member with another LMK."""

from __future__ import annotations

import os
import secrets
import signal
from pathlib import Path

import pytest

from hsmsvc.errors import PermissionDenied
from hsmsvc.hsm.pool import Pool
from hsmsvc.types import Algorithm, KeyType, KeyUsage, PinBlockFormat
from tests.hsm import softhsm
from tests.hsm.test_conformance import PAN, ecb, form, iso0


def test_sigkill_one_member_mid_load_loses_nothing() -> None:
    pool = Pool([softhsm.config("kill-1"), softhsm.config("kill-2")], health_interval=0.2)
    try:
        tpk, tpk_clear = form(pool, KeyType.TPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
        zpk, zpk_clear = form(pool, KeyType.ZPK, Algorithm.TDES_3KEY, KeyUsage.PIN_ENCRYPTION)
        victim = pool.stats()[1]
        assert victim.pid is not None and victim.healthy
        for i in range(10_000):
            pin = f"{secrets.randbelow(10**6):06d}"
            block = ecb(Algorithm.TDES_2KEY, tpk_clear, iso0(pin, PAN))
            out = pool.translate_pin(block, tpk, PinBlockFormat.ISO_0, zpk, PinBlockFormat.ISO_0, PAN)
            # An independent check with pyca/cryptography, every time.
            assert ecb(Algorithm.TDES_3KEY, zpk_clear, out, decrypt=True) == iso0(pin, PAN)
            if i == 3_000:
                os.kill(victim.pid, signal.SIGKILL)
        pool.wait_healthy(timeout=60)
        before = pool.stats()[1]
        assert before.pid != victim.pid and before.restarts == 1
        for _ in range(50):
            pool.translate_pin(block, tpk, PinBlockFormat.ISO_0, zpk, PinBlockFormat.ISO_0, PAN)
        after = pool.stats()[1]
        assert after.pid == before.pid and after.ops > before.ops
    finally:
        pool.close()


def test_member_with_another_lmk_is_refused() -> None:
    with pytest.raises(PermissionDenied, match="member 1 holds LMK KCV"):
        Pool([softhsm.config("pool-1"), softhsm.config("other-lmk")])


def test_soft_members_pool(tmp_path: Path) -> None:
    pool = Pool([softhsm.soft_config(tmp_path), softhsm.soft_config(tmp_path)])
    try:
        assert len({s.pid for s in pool.stats()}) == 2
        tpk, clear = form(pool, KeyType.TPK, Algorithm.AES_128, KeyUsage.PIN_ENCRYPTION)
        zpk, zclear = form(pool, KeyType.ZPK, Algorithm.SM4, KeyUsage.PIN_ENCRYPTION)
        from hsmsvc.crypto import pinblock
        from hsmsvc.crypto._cipher import BlockCipher

        block = pinblock.encipher(PinBlockFormat.ISO_4, BlockCipher(Algorithm.AES_128, clear), "8642", PAN)
        out = pool.translate_pin(block, tpk, PinBlockFormat.ISO_4, zpk, PinBlockFormat.ISO_4, PAN)
        assert pinblock.decipher(PinBlockFormat.ISO_4, BlockCipher(Algorithm.SM4, zclear), out, PAN) == "8642"
    finally:
        pool.close()
