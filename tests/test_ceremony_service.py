"""Ceremony rules that need a clock or a race: expiry, and two custodians finishing at once."""

from __future__ import annotations

import secrets
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from hsmsvc.crypto import kcv, keytransport
from hsmsvc.errors import KeyStateError
from hsmsvc.hsm.commands import PublicKey
from hsmsvc.hsm.model import KeySpec
from hsmsvc.hsm.soft.backend import SoftBackend
from hsmsvc.keys.model import CeremonyState, KeyRef
from hsmsvc.keys.store import KeyStore
from hsmsvc.service import ceremony
from hsmsvc.service.authz import Policy
from hsmsvc.service.context import Caller, Services
from hsmsvc.types import Algorithm, KeyType, KeyUsage, ModeOfUse

ROLES = {"m1": "manager", "m2": "manager", "c1": "custodian", "c2": "custodian"}


@pytest.fixture
def services(tmp_path: Path) -> Services:
    backend = SoftBackend(secrets.token_bytes(32), anchor_path=tmp_path / "anchor")
    store = KeyStore(f"sqlite:///{tmp_path}/keys.db", backend)
    store.migrate()
    policy = Policy.from_dict({"principals": [{"name": n, "roles": [r], "keys": ["*"]} for n, r in ROLES.items()]})
    s = Services(store, backend, policy)
    s.manager(_who(s, "m1")).generate(KeySpec("ctk", 1, KeyType.CTK, Algorithm.SM2, KeyUsage.ASYMMETRIC_KEY_WRAPPING,
                                              ModeOfUse.DECRYPT_ONLY))
    return s


def _who(s: Services, name: str) -> Caller:
    return Caller(s.policy.principal(name), "CeremonyService.test", "r")


def _spec(key_id: str) -> KeySpec:
    return KeySpec(key_id, 1, KeyType.ZMK, Algorithm.TDES_2KEY, KeyUsage.KEK, ModeOfUse.ENCRYPT_DECRYPT)


def _wrap(s: Services, part: bytes) -> bytes:
    der = s.backend.execute(PublicKey(key=s.store.get("ctk").cryptogram))
    return keytransport.encrypt(Algorithm.SM2, der, part)


def test_an_expired_ceremony_takes_no_component_and_keeps_none(services: Services) -> None:
    s = services
    c = ceremony.start(s, _who(s, "m1"), spec=_spec("zmk-late"), alias=None, legacy_types=frozenset(),
                       ctk=KeyRef("ctk"), required=2, ttl=timedelta(seconds=-1))
    part = bytes(16)
    with pytest.raises(KeyStateError, match="expired"):
        ceremony.add_component(s, _who(s, "c1"), c.ceremony_id, _wrap(s, part), kcv.kcv(Algorithm.TDES_2KEY, part))
    assert s.store.ceremony(c.ceremony_id).state is CeremonyState.EXPIRED
    assert [r.action for r in s.store.audit_rows()][-1] == "ceremony.expire"


def test_two_custodians_finishing_together_form_the_key_once(services: Services) -> None:
    s = services
    c = ceremony.start(s, _who(s, "m1"), spec=_spec("zmk-race"), alias=None, legacy_types=frozenset(),
                       ctk=KeyRef("ctk"), required=2)
    ceremony.approve(s, _who(s, "m2"), c.ceremony_id)
    parts = [bytes.fromhex("0123456789ABCDEFFEDCBA9876543210"), bytes.fromhex("1C1C1C1C1C1C1C1C2A2A2A2A2A2A2A2A")]
    results: list[object] = []

    def give(who: str, part: bytes) -> None:
        results.append(ceremony.add_component(s, _who(s, who), c.ceremony_id, _wrap(s, part),
                                              kcv.kcv(Algorithm.TDES_2KEY, part)))

    threads = [threading.Thread(target=give, args=(w, p)) for w, p in zip(("c1", "c2"), parts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2
    key = s.store.get("zmk-race")
    # The combination crypto.components checks in its doctest.
    assert key.cryptogram.kcv == kcv.kcv(Algorithm.TDES_2KEY, bytes.fromhex("1C3E587A94B6D0F2D5F791B35D7F193B"))
    assert [r.action for r in s.store.audit_rows()].count("key.form") == 1
