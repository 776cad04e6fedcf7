"""Use-count rotation of a zone key starts a key change by itself (service layer, two sites in process).

Two sites with their own soft backend (own LMK) and their own SQLite store share
a ZMK. The core's courier is the branch's real ApplyKeyChange use case, called
directly instead of over gRPC (the gRPC path is tests/api/test_key_sync.py).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from hsmsvc.hsm.model import KeySpec
from hsmsvc.hsm.soft.backend import SoftBackend
from hsmsvc.keys.hierarchy import KeyManager
from hsmsvc.keys.model import KeyRef
from hsmsvc.keys.store import KeyStore
from hsmsvc.service import keysync, mac
from hsmsvc.service.authz import Policy, Principal, Role
from hsmsvc.service.context import Caller, Services
from hsmsvc.service.usage import UseMeter
from hsmsvc.types import Algorithm, KeyState, KeyType, KeyUsage, MacAlgorithm, ModeOfUse, Padding

ZONE = "z9"
OFFICER = Principal("officer", frozenset({Role.MANAGER, Role.OPERATOR}), ("*",))
CALLER = Caller(OFFICER, "test", "-")
SETTINGS = keysync.SyncSettings(
    activate_after=timedelta(0), grace=timedelta(minutes=1),
    rotation={**keysync.DEFAULT_ROTATION, KeyType.MAK: keysync.Rotation(None, 3)},
)


class Branch:
    """The branch's ApplyKeyChange, as the core's courier."""

    def __init__(self, services: Services) -> None:
        self.s = services

    def deliver(self, notice: keysync.KeyChangeNotice) -> keysync.Confirmation:
        return keysync.apply_key_change(self.s, CALLER, SETTINGS, notice)

    def acknowledge(self, ack: keysync.Acknowledgement) -> None:
        keysync.acknowledge_key_change(self.s, CALLER, SETTINGS, ack)


def _site(tmp: Path, name: str, zmk: bytes) -> Services:
    backend = SoftBackend(secrets.token_bytes(32))
    store = KeyStore(f"sqlite:///{tmp / name}.db", backend)
    store.migrate()
    c1 = secrets.token_bytes(32)
    KeyManager(store, backend, "ceremony").form(
        KeySpec(f"zmk-{ZONE}", 1, KeyType.ZMK, Algorithm.AES_256, KeyUsage.KBPK, ModeOfUse.ENCRYPT_DECRYPT,
                zone=ZONE), [c1, bytes(a ^ b for a, b in zip(zmk, c1))])
    return Services(store, backend, Policy({"officer": OFFICER}))


@pytest.fixture()
def sites(tmp_path: Path) -> Iterator[tuple[Services, Services, UseMeter]]:
    zmk = secrets.token_bytes(32)
    core, branch = _site(tmp_path, "core", zmk), _site(tmp_path, "branch", zmk)
    meter = UseMeter(SETTINGS, Branch(branch), block=1)
    core.observer = meter
    meter.attach(core)
    yield core, branch, meter
    meter.close()
    for s in (core, branch):
        s.store.close()


def test_zone_mak_at_its_limit_changes_at_both_sites_unasked(sites: tuple[Services, Services, UseMeter]) -> None:
    core, branch, _ = sites
    notice, delivery = keysync.start_key_change(core, CALLER, settings=SETTINGS, zone=ZONE, courier=Branch(branch))
    assert delivery.confirmed and {k.version for k in notice.keys} == {1}
    for _ in range(4):
        tag, version, _ = mac.generate_mac(core, CALLER, key=KeyRef(f"{ZONE}.mak"), algorithm=MacAlgorithm.ISO9797_ALG3,
                                           padding=Padding.METHOD_1, data=b"message")
    deadline = time.monotonic() + 10
    while core.store.get(f"{ZONE}.mak").version < 2:
        assert time.monotonic() < deadline, "no key change at the use limit"
        time.sleep(0.05)
    new_core, new_branch = core.store.get(f"{ZONE}.mak"), branch.store.get(f"{ZONE}.mak")
    assert new_core.version == new_branch.version == 2 and new_core.state is KeyState.ACTIVE
    assert new_core.cryptogram.kcv == new_branch.cryptogram.kcv
    assert core.store.sync_state(ZONE, "core").sequence == 2  # type: ignore[union-attr]
    # Only the MAK changed; the ZPK and DEK are still at version 1.
    assert core.store.get(f"{ZONE}.zpk").version == 1
    # A MAC made at the core under the new version verifies at the branch.
    tag, version, _ = mac.generate_mac(core, CALLER, key=KeyRef(f"{ZONE}.mak"), algorithm=MacAlgorithm.ISO9797_ALG3,
                                       padding=Padding.METHOD_1, data=b"message")
    assert version == 2
    assert mac.verify_mac(branch, CALLER, key=KeyRef(f"{ZONE}.mak", version=2), algorithm=MacAlgorithm.ISO9797_ALG3,
                          padding=Padding.METHOD_1, data=b"message", mac=tag)


def test_the_meter_counts_each_use_once_and_the_metrics_report_its_counts(
        sites: tuple[Services, Services, UseMeter]) -> None:
    from prometheus_client import generate_latest

    from hsmsvc.api.metrics import Metrics

    core, branch, meter = sites
    keysync.start_key_change(core, CALLER, settings=SETTINGS, zone=ZONE, courier=Branch(branch))
    for _ in range(2):
        mac.generate_mac_batch(core, CALLER, key=KeyRef(f"{ZONE}.mak"), algorithm=MacAlgorithm.ISO9797_ALG3,
                               padding=Padding.METHOD_1, messages=[b"one", b"two"])
    # A failed check is no use: only MACs made or verified count.
    assert not mac.verify_mac(core, CALLER, key=KeyRef(f"{ZONE}.mak"), algorithm=MacAlgorithm.ISO9797_ALG3,
                              padding=Padding.METHOD_1, data=b"one", mac=bytes(8))
    assert meter.uses() == {(f"{ZONE}.mak", 1): 4}
    metrics = Metrics()
    metrics.count_key_uses(meter.uses)
    text = generate_latest(metrics.registry).decode()
    assert "hsmsvc_key_uses_total 4.0" in text
