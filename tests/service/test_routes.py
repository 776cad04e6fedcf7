"""When a kept TranslatePin route stops being used: the hot path's two caches (issue 28).

``hsmsvc.service.routes`` keeps each caller's checked route; the backend keeps the
keys it has loaded. Each case below changes one thing a route depends on, and the
next translation must see it at once: a revocation, a new version, an expiry,
another caller's request with the same words, the backend dropping its keys.
Real soft backend and SQLite store; blocks made by pyca (tests/reference.py).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from hsmsvc.errors import KeyNotFound, KeyStateError
from hsmsvc.hsm.commands import Forget
from hsmsvc.hsm.model import KeySpec
from hsmsvc.hsm.soft.backend import SoftBackend
from hsmsvc.keys.hierarchy import KeyManager
from hsmsvc.keys.model import KeyRef
from hsmsvc.keys.store import KeyStore
from hsmsvc.service import pin as uc
from hsmsvc.service.authz import Policy, Principal, Role
from hsmsvc.service.context import Caller, Services
from hsmsvc.types import Algorithm, KeyType, KeyUsage, ModeOfUse, PinBlockFormat
from tests import reference as ind
from tests.hsm.helpers import clear_key
from tests.hsm.components_env import LMK

PIN, PAN = "2468", ind.luhn_pan("401234567890123")
ISO0 = PinBlockFormat.ISO_0


def _zpk(key_id: str) -> KeySpec:
    return KeySpec(key_id, 1, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION, ModeOfUse.ENCRYPT_DECRYPT)


class Site:
    def __init__(self, tmp: Path) -> None:
        self.backend = SoftBackend(LMK, anchor_path=tmp / "lmk.anchor")
        self.store = KeyStore(f"sqlite:///{tmp}/keys.db", self.backend)
        self.store.migrate()
        self.km = KeyManager(self.store, self.backend, "officer")
        self.src = clear_key(Algorithm.TDES_2KEY)
        c1 = secrets.token_bytes(16)
        self.km.form(_zpk("src"), [c1, bytes(a ^ b for a, b in zip(self.src, c1))])
        self.km.generate(_zpk("dst"))
        self.km.generate(_zpk("brief"), lifetime=timedelta(seconds=1))
        policy = Policy({"core": Principal("core", frozenset({Role.OPERATOR}), ("*",)),
                         "branch": Principal("branch", frozenset({Role.OPERATOR}), ("branch-*",))})
        self.s = Services(self.store, self.backend, policy)
        self.core = Caller(policy.principal("core"), "PinService.TranslatePin", "r1")
        self.branch = Caller(policy.principal("branch"), "PinService.TranslatePin", "r2")

    def translate(self, caller: Caller, dst: str = "dst") -> int:
        """One TranslatePin as the servicer makes it; returns the destination key's version."""
        words = ("src", "", 0, dst, "", 0, ISO0, ISO0)
        route = self.s.routes.route(self.s, caller, words, lambda: (KeyRef("src"), ISO0, KeyRef(dst), ISO0))
        block = ind.tdes_ecb(self.src, ind.iso0(PIN, PAN))
        _, version, _ = uc.translate_routed(self.s, caller, route=route, pin_block=block, pan=PAN)
        return version


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    s = Site(tmp_path)
    yield s
    s.store.close()
    s.backend.close()


def test_a_route_is_kept_per_caller_and_words(site: Site) -> None:
    assert site.translate(site.core) == 1  # the key cache's first look at the audit head re-checks it once
    assert site.translate(site.core) == 1
    first = dict(site.s.routes._routes)
    assert site.translate(site.core) == 1
    assert site.s.routes._routes == first and len(site.s.routes) == 1  # the same route, not checked again
    # Another caller saying the same words has its own access checked: "src" is outside its patterns.
    with pytest.raises(KeyNotFound):
        site.translate(site.branch)


def test_a_revocation_stops_the_next_translation(site: Site) -> None:
    assert site.translate(site.core) == 1
    site.km.revoke("dst", 1, "compromise drill")
    with pytest.raises(KeyStateError):
        site.translate(site.core)


def test_a_new_version_is_used_from_the_next_translation(site: Site) -> None:
    assert site.translate(site.core) == 1
    site.km.rotate("dst")
    assert site.translate(site.core) == 2


def test_an_expiry_stops_the_route_when_its_date_passes(site: Site) -> None:
    assert site.translate(site.core, "brief") == 1
    time.sleep(1.2)
    with pytest.raises(KeyStateError):
        site.translate(site.core, "brief")


def test_a_key_the_backend_dropped_is_loaded_and_checked_again(site: Site) -> None:
    assert site.translate(site.core) == 1
    site.backend.execute(Forget(key_id="src"))
    site.backend.execute(Forget(key_id="dst"))
    assert site.translate(site.core) == 1
