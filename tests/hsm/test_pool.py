"""The pool: failover under SIGKILL and SIGSTOP, replacement, ids on every reply, another LMK refused.

Every answer the stall tests count is checked with pyca/cryptography
(``tests/reference.py``), never with hsmsvc's own crypto.
"""

from __future__ import annotations

import os
import secrets
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hsmsvc.errors import InvalidInput, PermissionDenied, VerificationFailed
from hsmsvc.hsm.commands import TranslatePin, VerifyPinPvv
from hsmsvc.hsm.model import KeyCryptogram, PinBlock
from hsmsvc.hsm.config import Pkcs11Config, SoftConfig
from hsmsvc.hsm.member import Failure, Member, MemberFailed
from hsmsvc.hsm.pool import Pool
from hsmsvc.types import Algorithm, KeyType, KeyUsage, PinBlockFormat
from tests.hsm import softhsm
from tests.hsm.helpers import PAN, form
from tests.reference import ecb, iso0, tdes_ecb, visa_pvv


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
            out = pool.execute(TranslatePin(pin=PinBlock(block, PinBlockFormat.ISO_0, PAN), src=tpk, dst=zpk,
                                            dst_format=PinBlockFormat.ISO_0))
            # An independent check with pyca/cryptography, every time.
            assert ecb(Algorithm.TDES_3KEY, zpk_clear, out, decrypt=True) == iso0(pin, PAN)
            if i == 3_000:
                os.kill(victim.pid, signal.SIGKILL)
        pool.wait_healthy(timeout=60)
        before = pool.stats()[1]
        assert before.pid != victim.pid and before.restarts == 1
        for _ in range(50):
            pool.execute(TranslatePin(pin=PinBlock(block, PinBlockFormat.ISO_0, PAN), src=tpk, dst=zpk,
                                      dst_format=PinBlockFormat.ISO_0))
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
        out = pool.execute(TranslatePin(pin=PinBlock(block, PinBlockFormat.ISO_4, PAN), src=tpk, dst=zpk,
                                        dst_format=PinBlockFormat.ISO_4))
        assert pinblock.decipher(PinBlockFormat.ISO_4, BlockCipher(Algorithm.SM4, zclear), out, PAN) == "8642"
    finally:
        pool.close()


# -- a stalled member: no reply ever answers another request (issue 26, item 1) ---------

TIMEOUT = 1.0


@dataclass(frozen=True)
class _Keys:
    tpk: KeyCryptogram
    tpk_clear: bytes
    zpk: KeyCryptogram
    zpk_clear: bytes
    pvk: KeyCryptogram
    pvk_clear: bytes


@dataclass
class _Tally:
    """What the load saw; every answer was checked independently before it was counted."""

    right: int = 0
    verified: int = 0
    refused: int = 0
    wrong: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _keys(pool: Pool) -> _Keys:
    tpk, tpk_clear = form(pool, KeyType.TPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    zpk, zpk_clear = form(pool, KeyType.ZPK, Algorithm.TDES_3KEY, KeyUsage.PIN_ENCRYPTION)
    pvk, pvk_clear = form(pool, KeyType.PVK, Algorithm.TDES_2KEY, KeyUsage.PIN_VERIFICATION_VISA_PVV)
    return _Keys(tpk, tpk_clear, zpk, zpk_clear, pvk, pvk_clear)


def _pan() -> str:
    return "4" + "".join(str(secrets.randbelow(10)) for _ in range(15))


def _one_call(pool: Pool, k: _Keys, tally: _Tally, verify: bool) -> None:
    """A TranslatePin or a PVV verification for a fresh random PAN and PIN, checked with pyca."""
    pan, pin = _pan(), f"{secrets.randbelow(10**4):04d}"
    block = tdes_ecb(k.tpk_clear, iso0(pin, pan))
    start = time.monotonic()
    try:
        if verify:
            # Half the time the card's PIN is another one: a right PIN must pass, a wrong one fail.
            card_pin = pin if secrets.randbelow(2) else f"{(int(pin) + 1 + secrets.randbelow(9998)) % 10**4:04d}"
            pvv = visa_pvv(k.pvk_clear, pan, 1, card_pin)
            expected = visa_pvv(k.pvk_clear, pan, 1, pin) == pvv
            try:
                got: object = pool.execute(VerifyPinPvv(pin=PinBlock(block, PinBlockFormat.ISO_0, pan),
                                                        key=k.tpk, pvk=k.pvk, pvki=1, pvv=pvv))
                passed = got is None
            except VerificationFailed:
                passed = False
            ok = passed == expected
        else:
            out = pool.execute(TranslatePin(pin=PinBlock(block, PinBlockFormat.ISO_0, pan), src=k.tpk,
                                            dst=k.zpk, dst_format=PinBlockFormat.ISO_0))
            ok = isinstance(out, bytes) and tdes_ecb(k.zpk_clear, out, decrypt=True) == iso0(pin, pan)
    except Exception as e:  # noqa: BLE001 - every error is a finding here
        with tally.lock:
            tally.errors.append(f"{type(e).__name__}: {e}")
        return
    with tally.lock:
        tally.latencies.append(time.monotonic() - start)
        if not ok:
            tally.wrong.append("verify" if verify else "translate")
        elif verify:
            tally.verified += passed
            tally.refused += not passed
        else:
            tally.right += 1


def _load(pool: Pool, k: _Keys, tally: _Tally, stop: threading.Event) -> None:
    verify = False
    while not stop.is_set():
        _one_call(pool, k, tally, verify)
        verify = not verify


def _until(what: str, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


def _signal(pidfd: int, sig: signal.Signals) -> bool:
    """Signal the very process the pidfd names (never a recycled pid); False once it is reaped."""
    try:
        signal.pidfd_send_signal(pidfd, sig)
        return True
    except ProcessLookupError:
        return False


def _state(pid: int | None) -> str:
    """The process state letter from /proc (T: stopped)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


def _members(kind: str, tmp_path: Path) -> list[SoftConfig | Pkcs11Config]:
    if kind == "soft":
        return [softhsm.soft_config(tmp_path), softhsm.soft_config(tmp_path)]
    return [softhsm.config("kill-1"), softhsm.config("kill-2")]


@pytest.mark.parametrize("kind", ["soft", "softhsm"])
def test_stalled_member_under_load_fails_over_and_is_replaced(kind: str, tmp_path: Path) -> None:
    pool = Pool(_members(kind, tmp_path), call_timeout=TIMEOUT, health_interval=0.2)
    tally, stop = _Tally(), threading.Event()
    threads = [threading.Thread(target=_load, args=(pool, _keys(pool), tally, stop)) for _ in range(2)]
    try:
        for t in threads:
            t.start()
        _until("both members serve", lambda: all(s.ops > 50 for s in pool.stats()))
        victim = pool.stats()[0]
        assert victim.pid is not None
        pidfd = os.pidfd_open(victim.pid)
        try:
            assert _signal(pidfd, signal.SIGSTOP)
            stopped = time.monotonic()
            # Replaced only after a call or probe on it went unanswered for the whole timeout.
            _until("the stopped member is replaced", lambda: pool.stats()[0].pid != victim.pid)
            assert time.monotonic() - stopped >= TIMEOUT
            assert not _signal(pidfd, signal.SIGCONT), "the stalled worker was killed and reaped"
        finally:
            os.close(pidfd)
        replaced = pool.stats()[0]
        _until("the fresh worker serves", lambda: pool.stats()[0].ops > replaced.ops + 200)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        stats = pool.stats()
        pool.close()
    assert tally.wrong == [] and tally.errors == []
    assert tally.right > 500 and tally.verified > 100 and tally.refused > 100
    assert stats[0].restarts == 1 and stats[0].failures == 1 and stats[0].healthy
    assert stats[1].restarts == 0 and stats[1].failures == 0
    # The call caught on the stopped member waited out its timeout, then was answered by the other.
    assert TIMEOUT <= max(tally.latencies) < 2 * TIMEOUT + 1.0


def test_late_reply_is_discarded_not_given_to_the_next_request(tmp_path: Path) -> None:
    """Straight on a member: stopped mid-call, timed out, continued; its late reply must not answer."""
    pool = Pool([softhsm.soft_config(tmp_path)])
    try:
        k = _keys(pool)
    finally:
        pool.close()
    m = Member(0, softhsm.soft_config(tmp_path))
    m.start(1, 30.0)
    try:
        assert m.pid is not None
        pidfd = os.pidfd_open(m.pid)
        pan_1, pan_2 = _pan(), _pan()
        block_1 = tdes_ecb(k.tpk_clear, iso0("1111", pan_1))
        block_2 = tdes_ecb(k.tpk_clear, iso0("2222", pan_2))
        args_1 = TranslatePin(pin=PinBlock(block_1, PinBlockFormat.ISO_0, pan_1), src=k.tpk, dst=k.zpk,
                              dst_format=PinBlockFormat.ISO_0)
        args_2 = TranslatePin(pin=PinBlock(block_2, PinBlockFormat.ISO_0, pan_2), src=k.tpk, dst=k.zpk,
                              dst_format=PinBlockFormat.ISO_0)
        assert _signal(pidfd, signal.SIGSTOP)
        _until("the worker is stopped", lambda: _state(m.pid) == "T")
        with pytest.raises(MemberFailed) as caught:
            m.call(2, args_1, time.monotonic() + 0.3)
        assert caught.value.failure is Failure.TIMEOUT
        assert _signal(pidfd, signal.SIGCONT)
        # The worker now answers request 2 late, then request 3: request 3 gets its own answer.
        out = m.call(3, args_2, time.monotonic() + 10)
        assert tdes_ecb(k.zpk_clear, out, decrypt=True) == iso0("2222", pan_2)
        assert m.stale == 1
        os.close(pidfd)
    finally:
        m.stop(2.0)


def test_calls_go_on_while_a_member_is_stalled_and_stats_answer(tmp_path: Path) -> None:
    timeout = 3.0
    pool = Pool([softhsm.soft_config(tmp_path), softhsm.soft_config(tmp_path)], call_timeout=timeout,
                health_interval=60.0)  # no probe: a caller meets the stall
    tally, stuck = _Tally(), _Tally()
    stop = threading.Event()
    try:
        k = _keys(pool)
        victim = pool.stats()[0]
        assert victim.pid is not None
        pidfd = os.pidfd_open(victim.pid)
        try:
            assert _signal(pidfd, signal.SIGSTOP)
            # Another thread calls until one of its calls is caught on the stopped member.
            caller = threading.Thread(target=_load, args=(pool, k, stuck, stop))
            caller.start()
            _until("a call is caught on the stopped member", lambda: pool.stats()[0].busy, timeout=5.0)
            stop.set()
            # Meanwhile this thread's calls go to the other member without waiting for it.
            for i in range(40):
                _one_call(pool, k, tally, verify=bool(i % 2))
                before = time.monotonic()
                stats = pool.stats()
                assert time.monotonic() - before < 0.05
            assert len(stats) == 2 and stats[1].healthy
            assert tally.errors == [] and tally.wrong == [] and len(tally.latencies) == 40
            assert max(tally.latencies) < timeout / 10
            caller.join(2 * timeout + 5)
            assert not _signal(pidfd, signal.SIGCONT), "the stalled worker was killed and reaped"
        finally:
            os.close(pidfd)
        # The caught call failed over within its timeout and was answered right.
        assert stuck.errors == [] and stuck.wrong == []
        assert timeout <= max(stuck.latencies) < timeout + 2.0
        pool.wait_healthy(30)
        after = pool.stats()[0]
        assert after.pid != victim.pid and after.restarts == 1 and after.failures == 1
        for i in range(40):  # both members again, the fresh one included, every answer its own
            _one_call(pool, k, tally, verify=bool(i % 2))
        assert tally.errors == [] and tally.wrong == [] and pool.stats()[0].ops > after.ops
    finally:
        stop.set()
        pool.close()



def test_member_stalled_while_idle_is_found_by_the_probe_and_replaced(tmp_path: Path) -> None:
    pool = Pool([softhsm.soft_config(tmp_path), softhsm.soft_config(tmp_path)], call_timeout=TIMEOUT,
                health_interval=0.2)
    try:
        k = _keys(pool)
        victim = pool.stats()[0]
        assert victim.pid is not None
        pidfd = os.pidfd_open(victim.pid)
        try:
            assert _signal(pidfd, signal.SIGSTOP)
            # No call is made: the health thread's probe meets the stall and times out.
            _until("the probe replaces the stopped member", lambda: pool.stats()[0].pid != victim.pid)
            assert not _signal(pidfd, signal.SIGCONT)
        finally:
            os.close(pidfd)
        pool.wait_healthy(30)
        stats = pool.stats()
        assert stats[0].failures == 1 and stats[0].restarts == 1 and stats[1].failures == 0
        tally = _Tally()
        for i in range(20):
            _one_call(pool, k, tally, verify=bool(i % 2))
        assert tally.errors == [] and tally.wrong == [] and max(tally.latencies) < TIMEOUT / 2
    finally:
        pool.close()

def test_call_timeout_comes_from_the_server_config(tmp_path: Path) -> None:
    from hsmsvc.api import config as api_config
    from hsmsvc.api.server import open_backend

    soft = softhsm.soft_config(tmp_path)
    f = tmp_path / "c.toml"
    f.write_text(f'store = "sqlite:///x.db"\ninsecure_dev = true\n[backend]\nkind = "pool"\ncall_timeout = 2.5\n'
                 f'[[backend.members]]\nsealed_lmk = "{soft.sealed_lmk}"\npassphrase_env = "{soft.passphrase.env}"\n')
    cfg = api_config.load(str(f), environ={})
    assert cfg.backend.call_timeout == 2.5
    pool = open_backend(cfg)
    try:
        assert isinstance(pool, Pool) and pool.call_timeout == 2.5
    finally:
        pool.close()
    f.write_text(f.read_text().replace("2.5", "0"))
    with pytest.raises(InvalidInput, match="call_timeout"):
        api_config.load(str(f), environ={})
