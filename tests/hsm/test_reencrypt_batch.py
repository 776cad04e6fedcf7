"""Stored PINs re-enciphered from one PSK to another as a batch (issue 7's crypto step).

Old and new stored blocks are computed independently with pyca's ciphers from
keys formed from known components; format 0 follows ISO 9564-1 clause 9.3.2.
"""

from __future__ import annotations

import secrets

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hsmsvc.crypto import pinblock
from hsmsvc.errors import InvalidInput, KeyUsageViolation, Unsupported
from hsmsvc.hsm.backend import Backend
from hsmsvc.hsm.model import PinBlock, Command, StoredPin, StoredPinMethod
from hsmsvc.types import Algorithm, KeyType, KeyUsage, ModeOfUse, PinBlockFormat
from tests.hsm.helpers import form, needs
from tests.reference import ecb, iso0, pin_digest
from hsmsvc.hsm.commands import CompareStoredPins, EncryptPinForStorage, ReencryptStoredPins, VerifyPinStored

PAN = "4012345678909"


def _account() -> str:
    return "62220270" + "".join(secrets.choice("0123456789") for _ in range(8))


def _pin() -> str:
    return "".join(secrets.choice("0123456789") for _ in range(secrets.choice(range(4, 13))))


def _psk(backend: Backend, alg: Algorithm) -> tuple[object, bytes]:
    return form(backend, KeyType.PSK, alg, KeyUsage.PIN_ENCRYPTION, ModeOfUse.ENCRYPT_DECRYPT)


def test_tdes_batch_matches_independent_encipherment(backend: Backend) -> None:
    needs(backend, Command.REENCRYPT_STORED_PIN, Algorithm.TDES_2KEY)
    (old, old_clear), (new, new_clear) = _psk(backend, Algorithm.TDES_2KEY), _psk(backend, Algorithm.TDES_3KEY)
    people = [(_pin(), _account()) for _ in range(500)]
    rows = [(ecb(Algorithm.TDES_2KEY, old_clear, iso0(pin, acct)), acct) for pin, acct in people]
    stranger = secrets.token_bytes(16)
    bad = [
        (rows[0][0][:7], rows[0][1]),                                   # short
        (rows[1][0], "62220270ABCDEFGH"),                               # not an account
        (rows[2][0], _account()),                                       # another account
        (ecb(Algorithm.TDES_2KEY, stranger, iso0("1234", rows[3][1])), rows[3][1]),  # another key
        (ecb(Algorithm.TDES_2KEY, old_clear, bytes(8)), rows[4][1]),    # not a PIN block
    ]
    out = backend.execute(ReencryptStoredPins(old_psk=old, new_psk=new,
                                              rows=rows + bad))  # type: ignore[arg-type]
    assert out[: len(rows)] == [ecb(Algorithm.TDES_3KEY, new_clear, iso0(pin, acct)) for pin, acct in people]
    assert out[len(rows):] == [None] * len(bad)


def test_aes_format4_and_tdes_to_aes_keep_every_pin(backend: Backend) -> None:
    needs(backend, Command.REENCRYPT_STORED_PIN, Algorithm.AES_128)
    (tdes, tdes_clear) = _psk(backend, Algorithm.TDES_2KEY)
    (aes1, _), (aes2, _) = _psk(backend, Algorithm.AES_128), _psk(backend, Algorithm.AES_256)
    zpk, zpk_clear = form(backend, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    people = [(_pin(), _account()) for _ in range(50)]
    stored = [backend.execute(EncryptPinForStorage(pin=PinBlock(ecb(Algorithm.TDES_2KEY, zpk_clear, iso0(pin, PAN)),
                                                                PinBlockFormat.ISO_0, PAN),
                                                   key=zpk, psk=aes1, account=acct)).value
              for pin, acct in people]
    moved = backend.execute(ReencryptStoredPins(old_psk=aes1, new_psk=aes2,
                                                rows=[(v, a) for v, (_, a) in zip(stored, people)]))
    from_tdes = backend.execute(ReencryptStoredPins(old_psk=tdes, new_psk=aes2,
                                                    rows=[(ecb(Algorithm.TDES_2KEY, tdes_clear, iso0(pin, a)), a)
                                                          for pin, a in people]))
    for (pin, acct), v, w in zip(people, moved, from_tdes):
        assert v is not None and w is not None and v != w  # format 4 draws fresh fill each time
        for value in (v, w):
            backend.execute(VerifyPinStored(pin=PinBlock(ecb(Algorithm.TDES_2KEY, zpk_clear, iso0(pin, PAN)),
                                                         PinBlockFormat.ISO_0, PAN),
                                            key=zpk, psk=aes2, account=acct,
                                            stored=StoredPin(StoredPinMethod.ENCRYPTED, value)))


def test_enciphered_pins_become_keyed_digests(backend: Backend) -> None:
    """Bank design 004 clause 6.2.4 / 6.3.2: decipher under the PSK, keep only a keyed one-way digest."""
    needs(backend, Command.REENCRYPT_STORED_PIN, Algorithm.AES_256, Algorithm.TDES_2KEY)
    old, old_clear = _psk(backend, Algorithm.TDES_2KEY)
    digest, digest_clear = form(backend, KeyType.PSK, Algorithm.AES_256, KeyUsage.MAC_HMAC,
                                ModeOfUse.MAC_GENERATE_VERIFY)
    people = [(_pin(), _account()) for _ in range(100)]
    rows = [(ecb(Algorithm.TDES_2KEY, old_clear, iso0(pin, a)), a) for pin, a in people]
    out = backend.execute(ReencryptStoredPins(old_psk=old, new_psk=digest,
                                              rows=rows + [(rows[0][0], _account())]))
    assert out[:-1] == [pin_digest(digest_clear, a, pin) for pin, a in people]
    assert out[-1] is None
    checked = backend.execute(CompareStoredPins(old_psk=old, new_psk=digest,
                                                rows=[(v, d, a) for (v, a), d in zip(rows, out)]
                                                + [(rows[0][0], out[1], rows[0][1])]))  # type: ignore[list-item]
    assert checked == [True] * len(people) + [False]


def test_compare_stored_pins_says_only_same_or_not(backend: Backend) -> None:
    needs(backend, Command.REENCRYPT_STORED_PIN, Algorithm.AES_128)
    (old, old_clear), (new, _) = _psk(backend, Algorithm.TDES_2KEY), _psk(backend, Algorithm.AES_128)
    people = [(_pin(), _account()) for _ in range(20)]
    rows = [(ecb(Algorithm.TDES_2KEY, old_clear, iso0(pin, a)), a) for pin, a in people]
    moved = backend.execute(ReencryptStoredPins(old_psk=old, new_psk=new, rows=rows))
    triples = [(v, m, a) for (v, a), m in zip(rows, moved)]
    assert backend.execute(CompareStoredPins(old_psk=old, new_psk=new,
                                             rows=triples)) == [True] * len(rows)  # type: ignore[arg-type]
    swapped = [(v, m, a) for (v, a), m in zip(rows, moved[1:] + moved[:1])]
    assert backend.execute(CompareStoredPins(old_psk=old, new_psk=new,
                                             rows=swapped + [(b"short", b"", PAN)])) == [False] * (len(rows) + 1)  # type: ignore[arg-type]


def test_old_lmk_psk_needs_key_change_storage(backend: Backend) -> None:
    needs(backend, Command.REENCRYPT_STORED_PIN, Algorithm.TDES_2KEY)
    old, _ = _psk(backend, Algorithm.TDES_2KEY)
    with pytest.raises((Unsupported, KeyUsageViolation)):
        backend.execute(ReencryptStoredPins(old_psk=old, new_psk=old, rows=[], old_lmk=True))


def test_digest_psk_and_wrong_keys_are_refused(backend: Backend) -> None:
    needs(backend, Command.REENCRYPT_STORED_PIN, Algorithm.AES_256)
    old, _ = _psk(backend, Algorithm.TDES_2KEY)
    digest, _ = form(backend, KeyType.PSK, Algorithm.AES_256, KeyUsage.MAC_HMAC, ModeOfUse.MAC_GENERATE_VERIFY)
    zpk, _ = form(backend, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    with pytest.raises(KeyUsageViolation):
        backend.execute(ReencryptStoredPins(old_psk=digest, new_psk=old, rows=[]))
    with pytest.raises(KeyUsageViolation):
        backend.execute(ReencryptStoredPins(old_psk=zpk, new_psk=old, rows=[]))
    with pytest.raises(InvalidInput):
        backend.execute(ReencryptStoredPins(old_psk=old, new_psk=old, rows=[(bytes(8), PAN)] * 100_001))


def test_check_iso0_blocks_published_vector() -> None:
    # ANSI X9.24-1:2009 annex A.4: PIN 1234, PAN 4012345678909 gives 041274EDCBA9876F.
    block = bytes.fromhex("041274EDCBA9876F")
    assert pinblock.check_iso0_blocks(block, [PAN]) == [True]
    assert pinblock.check_iso0_blocks(bytes.fromhex("141274EDCBA9876F"), [PAN]) == [False]  # control 1
    assert pinblock.check_iso0_blocks(bytes.fromhex("031274EDCBA9876F"), [PAN]) == [False]  # length 3
    with pytest.raises(InvalidInput):
        pinblock.check_iso0_blocks(block, [PAN, PAN])


@given(people=st.lists(st.tuples(st.from_regex(r"[0-9]{4,12}", fullmatch=True),
                                 st.from_regex(r"[0-9]{13,19}", fullmatch=True)), max_size=40),
       flip=st.integers(0, 63))
@settings(max_examples=80, deadline=None)
def test_check_iso0_blocks_agrees_with_decode(people: list[tuple[str, str]], flip: int) -> None:
    blocks = b"".join(pinblock.encode_iso0(pin, pan) for pin, pan in people)
    pans = [pan for _, pan in people]
    assert pinblock.check_iso0_blocks(blocks, pans) == [True] * len(people)
    if people:
        bad = bytearray(blocks)
        bad[flip // 8] ^= 1 << (flip % 8)
        got = pinblock.check_iso0_blocks(bytes(bad), pans)
        try:
            pinblock.decode_iso0(bytes(bad[:8]), pans[0])
            want = True
        except InvalidInput:
            want = False
        assert got[0] is want
