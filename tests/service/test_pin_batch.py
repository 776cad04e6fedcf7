"""VerifyPinBatch's attempt limits: a batch gives exactly the answers its items would one by one.

The batch hands runs of items to the backend at once; these tests pin down
that no item is checked, or answered, that the per-card or per-principal limit
would have refused had the items come as single calls. Real soft backend, real
store (SQLite and PostgreSQL); PIN blocks and stored PINs are enciphered here
by pyca from the keys' known components.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from hsmsvc.crypto.components import adjust_odd_parity
from hsmsvc.errors import AttemptsExceeded, HsmsvcError, InvalidInput, InvalidPinBlock
from hsmsvc.hsm.model import KeySpec, StoredPin, StoredPinMethod
from hsmsvc.hsm.soft.backend import SoftBackend
from hsmsvc.keys.hierarchy import KeyManager
from hsmsvc.keys.model import KeyRef
from hsmsvc.keys.store import KeyStore
from hsmsvc.service import pin as uc
from hsmsvc.service.attempts import principal_subject
from hsmsvc.service.authz import Policy, Principal, Role
from hsmsvc.service.context import AttemptLimits, Caller, Services
from hsmsvc.service.cards import luhn_valid
from hsmsvc.types import Algorithm, Exportability, KeyType, KeyUsage, ModeOfUse, PinBlockFormat
from tests import pg
from tests.hsm.components_env import LMK
from tests.reference import ecb, iso0

PIN = "2468"
WRONG = "1357"


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[SoftBackend]:
    b = SoftBackend(LMK, anchor_path=tmp_path / "lmk.anchor")
    yield b
    b.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path, backend: SoftBackend) -> Iterator[KeyStore]:
    def opened(url: str) -> KeyStore:
        st = KeyStore(url, backend)
        st.migrate()
        return st

    if request.param == "sqlite":
        st = opened(f"sqlite:///{tmp_path}/keys.db")
        yield st
        st.close()
    else:
        with pg.throwaway_db() as url:
            st = opened(url)
            yield st
            st.close()


class Bank:
    """A ZPK and a PSK formed from known components, and a caller with its own limits."""

    def __init__(self, store: KeyStore, backend: SoftBackend, per_pan: int, per_principal: int) -> None:
        self.keys: dict[str, bytes] = {}
        km = KeyManager(store, backend, "test")
        self.tag = secrets.token_hex(3)
        for key_id, kt in (("zpk", KeyType.ZPK), ("psk", KeyType.PSK)):
            clear = adjust_odd_parity(secrets.token_bytes(16))
            c1 = secrets.token_bytes(16)
            spec = KeySpec(f"{key_id}-{self.tag}", 1, kt, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION,
                           ModeOfUse.ENCRYPT_DECRYPT, Exportability.NON_EXPORTABLE, "z")
            km.form(spec, [c1, bytes(a ^ b for a, b in zip(clear, c1))])
            self.keys[key_id] = clear
        name = "core-" + secrets.token_hex(3)
        policy = Policy({name: Principal(name, frozenset({Role.OPERATOR}), ("*",))})
        self.s = Services(store, backend, policy,
                          AttemptLimits(per_pan, per_principal, timedelta(hours=1)))
        self.caller = Caller(policy.principal(name), "PinService.VerifyPinBatch", "rid-1")

    def ref(self, key_id: str) -> KeyRef:
        return KeyRef(f"{key_id}-{self.tag}")

    def block(self, pin: str, pan: str) -> bytes:
        return ecb(Algorithm.TDES_2KEY, self.keys["zpk"], iso0(pin, pan))

    def stored(self, pan: str) -> StoredPin:
        return StoredPin(StoredPinMethod.ENCRYPTED, ecb(Algorithm.TDES_2KEY, self.keys["psk"], iso0(PIN, pan)))

    def batch(self, items: list[tuple[str, str]]) -> list[object]:
        """(PIN sent, PAN) per item, each checked against ``PIN`` stored for that PAN."""
        pans = [pan for _, pan in items]
        got = uc.verify_pin_batch(self.s, self.caller, key=self.ref("zpk"), fmt=PinBlockFormat.ISO_0,
                                  pin_blocks=[self.block(p, pan) for p, pan in items], pans=pans, psk=self.ref("psk"),
                                  accounts=pans, stored=[self.stored(pan) for pan in pans])
        return [_answer(r) for r in got]

    def one_by_one(self, items: list[tuple[str, str]]) -> list[object]:
        out: list[object] = []
        for p, pan in items:
            check = uc.StoredPinCheck(self.ref("psk"), pan, self.stored(pan))
            try:
                out.append(uc.verify_pin(self.s, self.caller, key=self.ref("zpk"), fmt=PinBlockFormat.ISO_0,
                                         pin_block=self.block(p, pan), pan=pan, check=check))
            except HsmsvcError as e:
                out.append(_answer(e))
        return out

    def principal_failures(self) -> int:
        subject = principal_subject(self.caller.principal.name)
        return self.s.store.failures([subject], timedelta(hours=1)).get(subject, 0)


def _answer(r: object) -> object:
    if isinstance(r, AttemptsExceeded):
        return f"refused:{r.field}"
    return r if isinstance(r, bool) else type(r)


def _pan(i: int) -> str:
    body = f"40000012345{i:04d}"
    return body + next(d for d in "0123456789" if luhn_valid(body + d))


def test_a_card_repeated_in_a_batch_is_limited_as_in_single_calls(store: KeyStore, backend: SoftBackend) -> None:
    bank = Bank(store, backend, per_pan=3, per_principal=100)
    card, spare = _pan(1), _pan(2)
    # A success clears the card's counter, so its next three failures are allowed again.
    pins = [WRONG, WRONG, PIN, WRONG, WRONG, WRONG, PIN, PIN]
    want: list[object] = [False, False, True, False, False, False, "refused:pan", "refused:pan"]
    assert bank.batch([(p, card) for p in pins]) == want
    assert bank.one_by_one([(p, spare) for p in pins]) == want
    assert bank.principal_failures() == 10  # five failures per card; the refused items were never checked


def test_the_principal_limit_is_reached_mid_batch_as_in_single_calls(store: KeyStore, backend: SoftBackend) -> None:
    bank = Bank(store, backend, per_pan=3, per_principal=4)
    items = [(WRONG, _pan(1)), (WRONG, _pan(2)), (WRONG, _pan(3)), (PIN, _pan(4)), (WRONG, _pan(5)),
             (PIN, _pan(6)), (WRONG, _pan(7))]
    want: list[object] = [False, False, False, True, False, "refused:principal", "refused:principal"]
    assert bank.batch(items) == want
    assert bank.principal_failures() == 4
    # The same items one by one, from a principal with its own counter, answer alike.
    other = Bank(store, backend, per_pan=3, per_principal=4)
    assert other.one_by_one([(p, _pan(100 + i)) for i, (p, _) in enumerate(items)]) == want


def test_a_large_batch_of_distinct_cards_is_checked_whole(store: KeyStore, backend: SoftBackend) -> None:
    bank = Bank(store, backend, per_pan=3, per_principal=10_000)
    items = [(PIN if i % 7 else WRONG, _pan(i)) for i in range(1, 701)]
    got = bank.batch(items)
    assert got == [i % 7 != 0 for i in range(1, 701)]
    assert bank.principal_failures() == 100


def test_bad_items_are_answered_alone(store: KeyStore, backend: SoftBackend) -> None:
    bank = Bank(store, backend, per_pan=3, per_principal=100)
    pans = [_pan(1), "4000abc", _pan(3)]
    blocks = [bank.block(PIN, _pan(1)), bank.block(PIN, _pan(1)), secrets.token_bytes(8)]
    got = uc.verify_pin_batch(bank.s, bank.caller, key=bank.ref("zpk"), fmt=PinBlockFormat.ISO_0, pin_blocks=blocks,
                              pans=pans, psk=bank.ref("psk"), accounts=[_pan(1), _pan(1), _pan(3)],
                              stored=[bank.stored(_pan(1))] * 2 + [bank.stored(_pan(3))])
    assert [_answer(r) for r in got] == [True, InvalidInput, InvalidPinBlock]
    assert bank.principal_failures() == 1  # the undecodable block counts; the malformed PAN does not
