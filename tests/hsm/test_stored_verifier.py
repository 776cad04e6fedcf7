"""``Backend.pin_verifier``: VerifyPinStored prepared for one PIN key, format and PSK (issue 34).

The prepared verifier must give what the command gives, answer for answer and error for
error, on every backend (soft, PKCS#11, the pool), on its fast path (format 0 under TDES
against format 0 stored under a TDES PSK) and off it, and must load its keys again after
the backend drops them. PIN blocks and stored PINs are made here with pyca/cryptography
from the keys' known clear values (tests/reference.py, ISO 9564-1 clause 9.3.2 / 9.3.6).
"""

from __future__ import annotations

import secrets

import pytest

from hsmsvc.errors import HsmsvcError, InvalidInput, InvalidPinBlock, KeyUsageViolation, VerificationFailed
from hsmsvc.hsm.backend import Backend
from hsmsvc.hsm.commands import Forget, VerifyPinStored
from hsmsvc.hsm.model import Command, KeyCryptogram, PinBlock, StoredPin, StoredPinMethod
from hsmsvc.types import Algorithm, KeyType, KeyUsage, ModeOfUse, PinBlockFormat
from tests import reference as ind
from tests.hsm.helpers import form, needs

PIN, WRONG = "2468", "1357"
ISO0 = PinBlockFormat.ISO_0


def _outcome(fn: object) -> str:
    try:
        fn()  # type: ignore[operator]
    except VerificationFailed:
        return "mismatch"
    except HsmsvcError as e:
        return f"{type(e).__name__}:{e}"
    return "match"


def _both(b: Backend, key: KeyCryptogram, fmt: PinBlockFormat, psk: KeyCryptogram, block: bytes, pan: str | None,
          account: str, stored: StoredPin) -> tuple[str, str]:
    """(prepared, command) outcomes for one item."""
    prepared = b.pin_verifier(key=key, fmt=fmt, psk=psk)
    command = VerifyPinStored(pin=PinBlock(block, fmt, pan), key=key, psk=psk, account=account, stored=stored)
    return (_outcome(lambda: prepared(block, pan, account, stored)), _outcome(lambda: b.execute(command)))


@pytest.fixture
def tdes(backend: Backend) -> tuple[KeyCryptogram, bytes, KeyCryptogram, bytes]:
    needs(backend, Command.VERIFY_PIN_STORED, Algorithm.TDES_2KEY)
    zpk, zpk_clear = form(backend, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION,
                          ModeOfUse.ENCRYPT_DECRYPT)
    psk, psk_clear = form(backend, KeyType.PSK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION,
                          ModeOfUse.ENCRYPT_DECRYPT)
    return zpk, zpk_clear, psk, psk_clear


def _card() -> str:
    return ind.luhn_pan("4" + "".join(str(secrets.randbelow(10)) for _ in range(14)))


def test_the_fast_path_answers_as_the_command(backend: Backend, tdes: tuple[KeyCryptogram, bytes,
                                                                          KeyCryptogram, bytes]) -> None:
    zpk, zpk_clear, psk, psk_clear = tdes
    for _ in range(10):
        pan = _card()
        stored = StoredPin(StoredPinMethod.ENCRYPTED, ind.tdes_ecb(psk_clear, ind.iso0(PIN, pan)))
        right = ind.tdes_ecb(zpk_clear, ind.iso0(PIN, pan))
        wrong = ind.tdes_ecb(zpk_clear, ind.iso0(WRONG, pan))
        other_card = ind.tdes_ecb(zpk_clear, ind.iso0(PIN, _card()))
        garbage = secrets.token_bytes(8)  # deciphers to no well-formed field (1 in ~2^40 does)
        undecodable = StoredPin(StoredPinMethod.ENCRYPTED, secrets.token_bytes(8))
        cases = {
            "right": (right, pan, pan, stored, "match"),
            "wrong": (wrong, pan, pan, stored, "mismatch"),
            "another card's block": (other_card, pan, pan, stored, "InvalidPinBlock:pin_block: PIN block invalid"),
            "garbage": (garbage, pan, pan, stored, "InvalidPinBlock:pin_block: PIN block invalid"),
            "stored value that does not decode": (right, pan, pan, undecodable, "mismatch"),
            "stored under another account": (right, pan, _card(), stored, "mismatch"),
        }
        for name, (block, sent_pan, account, kept, want) in cases.items():
            got = _both(backend, zpk, ISO0, psk, block, sent_pan, account, kept)
            assert got == (want, want), (name, got)


def test_off_the_fast_path_it_is_the_command(backend: Backend, tdes: tuple[KeyCryptogram, bytes,
                                                                         KeyCryptogram, bytes]) -> None:
    """Malformed items, a 12-digit account, a digest PSK, format 4 under AES: each as the command."""
    zpk, zpk_clear, psk, psk_clear = tdes
    pan = _card()
    block = ind.tdes_ecb(zpk_clear, ind.iso0(PIN, pan))
    stored = StoredPin(StoredPinMethod.ENCRYPTED, ind.tdes_ecb(psk_clear, ind.iso0(PIN, pan)))
    short = "401234567890"
    for args in [
        (block, "40123", pan, stored),  # malformed PAN: InvalidInput naming it
        (block, None, pan, stored),  # no PAN
        (block[:7], pan, pan, stored),  # short block
        (block, pan, "40x2345678901234", stored),  # account not digits
        (block, pan, pan, StoredPin(StoredPinMethod.DIGEST, bytes(32))),  # wrong method for this PSK
        (block, pan, pan, StoredPin(StoredPinMethod.ENCRYPTED, bytes(7))),  # wrong length
        (block, pan, short, stored),  # a 12-digit account: the command's own path
    ]:
        got = _both(backend, zpk, ISO0, psk, *args)
        assert got[0] == got[1], (args, got)
    assert _both(backend, zpk, ISO0, psk, block, "40123", pan, stored)[0].startswith("InvalidInput:pan")

    needs(backend, Command.VERIFY_PIN_STORED, Algorithm.AES_128)
    digest_psk, _ = form(backend, KeyType.PSK, Algorithm.AES_256, KeyUsage.MAC_HMAC, ModeOfUse.MAC_GENERATE_VERIFY)
    digest = StoredPin(StoredPinMethod.DIGEST, secrets.token_bytes(32))
    assert _both(backend, zpk, ISO0, digest_psk, block, pan, pan, digest) == ("mismatch", "mismatch")

    aes, aes_clear = form(backend, KeyType.ZPK, Algorithm.AES_128, KeyUsage.PIN_ENCRYPTION,
                          ModeOfUse.ENCRYPT_DECRYPT)
    aes_psk, aes_psk_clear = form(backend, KeyType.PSK, Algorithm.AES_128, KeyUsage.PIN_ENCRYPTION,
                                  ModeOfUse.ENCRYPT_DECRYPT)
    field = ind.iso4_pin_field(PIN, secrets.token_bytes(8))
    b4 = ind.iso4_encipher("AES_128", aes_clear, field, pan)
    s4 = StoredPin(StoredPinMethod.ENCRYPTED,
                   ind.iso4_encipher("AES_128", aes_psk_clear, ind.iso4_pin_field(PIN, secrets.token_bytes(8)), pan))
    assert _both(backend, aes, PinBlockFormat.ISO_4, aes_psk, b4, pan, pan, s4) == ("match", "match")


def test_a_key_of_the_wrong_usage_is_refused_as_by_the_command(backend: Backend, tdes: tuple[
        KeyCryptogram, bytes, KeyCryptogram, bytes]) -> None:
    zpk, zpk_clear, _, _ = tdes
    pan = _card()
    block = ind.tdes_ecb(zpk_clear, ind.iso0(PIN, pan))
    stored = StoredPin(StoredPinMethod.ENCRYPTED, secrets.token_bytes(8))
    # The ZPK as its own PSK: its usage is PIN encryption, but a ZPK is not a PSK.
    prepared, command = _both(backend, zpk, ISO0, zpk, block, pan, pan, stored)
    assert prepared == command and prepared.startswith(KeyUsageViolation.__name__), (prepared, command)


def test_keys_the_backend_dropped_are_loaded_and_checked_again(backend: Backend, tdes: tuple[
        KeyCryptogram, bytes, KeyCryptogram, bytes]) -> None:
    zpk, zpk_clear, psk, psk_clear = tdes
    pan = _card()
    verify = backend.pin_verifier(key=zpk, fmt=ISO0, psk=psk)
    block = ind.tdes_ecb(zpk_clear, ind.iso0(PIN, pan))
    stored = StoredPin(StoredPinMethod.ENCRYPTED, ind.tdes_ecb(psk_clear, ind.iso0(PIN, pan)))
    verify(block, pan, pan, stored)
    backend.execute(Forget(key_id=zpk.spec.key_id))
    verify(block, pan, pan, stored)
    with pytest.raises(VerificationFailed):
        verify(ind.tdes_ecb(zpk_clear, ind.iso0(WRONG, pan)), pan, pan, stored)
    with pytest.raises(InvalidPinBlock):
        verify(secrets.token_bytes(8), pan, pan, stored)
    with pytest.raises(InvalidInput):
        verify(block, "12", pan, stored)
