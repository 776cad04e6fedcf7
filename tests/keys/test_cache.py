"""The use path's key cache: served from memory, dropped on a change here at once, elsewhere within its refresh."""

from __future__ import annotations

import dataclasses
import secrets
from pathlib import Path

import pytest

from hsmsvc.errors import KeyStateError
from hsmsvc.hsm.model import KeySpec
from hsmsvc.hsm.policy import Operation
from hsmsvc.keys.cache import KeyCache
from hsmsvc.keys.hierarchy import KeyManager
from hsmsvc.keys.model import KeyRef
from hsmsvc.keys.store import KeyStore
from hsmsvc.types import Algorithm, Exportability, KeyState, KeyType, KeyUsage, ModeOfUse
from hsmsvc.hsm.soft.backend import SoftBackend
from tests.hsm.components_env import LMK


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


SPEC = KeySpec("zpk-c", 1, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION, ModeOfUse.ENCRYPT_DECRYPT,
               Exportability.NON_EXPORTABLE, "z")


def _form(km: KeyManager) -> None:
    first, second = secrets.token_bytes(16), secrets.token_bytes(16)
    km.form(SPEC, [first, second])


def test_cache_serves_from_memory_and_sees_changes(tmp_path: Path, store_url: str) -> None:
    soft_backend = SoftBackend(LMK, anchor_path=tmp_path / "lmk.anchor")
    url = store_url
    here, there = KeyStore(url, soft_backend), KeyStore(url, soft_backend)  # two servers, one database
    here.migrate()
    _form(KeyManager(here, soft_backend, "t"))
    clock = Clock()
    cache = KeyCache(here, refresh=0.2, clock=clock)
    ref = KeyRef("zpk-c")
    first = cache.lookup(ref)
    assert cache.lookup(ref) is first  # no second read

    # Revoked by another server: still cached until the refresh interval passes, then seen.
    KeyManager(there, soft_backend, "t").change_state("zpk-c", 1, KeyState.SUSPENDED)
    assert cache.lookup(ref) is first
    clock.now += 0.25
    assert cache.lookup(ref).state is KeyState.SUSPENDED
    with pytest.raises(KeyStateError):
        KeyManager.check_use(cache.lookup(ref), Operation.PIN_DECRYPT)

    # Changed through this store: seen at the next lookup, with no wait.
    KeyManager(here, soft_backend, "t").change_state("zpk-c", 1, KeyState.ACTIVE)
    assert cache.lookup(ref).state is KeyState.ACTIVE

    # A rotation made here names the new version at once.
    KeyManager(here, soft_backend, "t").rotate("zpk-c")
    assert cache.lookup(ref).version == 2 and cache.lookup(KeyRef("zpk-c", version=1)).version == 1


def test_reported_uses_reach_the_hard_stop(tmp_path: Path) -> None:
    soft_backend = SoftBackend(LMK, anchor_path=tmp_path / "lmk.anchor")
    store = KeyStore(f"sqlite:///{tmp_path / 'k.db'}", soft_backend)
    store.migrate()
    km = KeyManager(store, soft_backend, "t")
    first, second = secrets.token_bytes(16), secrets.token_bytes(16)
    km.form(SPEC, [first, second])
    cache = KeyCache(store, clock=Clock())
    key = cache.lookup(KeyRef("zpk-c"))
    limited = dataclasses.replace(key, max_uses=10)
    cache._entries[KeyRef("zpk-c")].key = limited  # the row as a key with a use limit
    cache.note_uses("zpk-c", 1, 20)
    with pytest.raises(KeyStateError, match="use limit"):
        KeyManager.check_use(cache.lookup(KeyRef("zpk-c")), Operation.PIN_DECRYPT)
