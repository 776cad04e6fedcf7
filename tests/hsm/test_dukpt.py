"""DUKPT PIN keys inside each backend (ANSI X9.24-1:2009 annex A, X9.24-3:2017 clause 6).

The BDKs and blocks are the standards' published ones, as openemv/dukpt's tests reproduce
them; the answers are read with tests/reference.py. A backend without DUKPT (PKCS#11 on
SoftHSM2) refuses by name.
"""

from __future__ import annotations

import secrets

import pytest

from hsmsvc.errors import InvalidInput, InvalidPinBlock, KeyUsageViolation, Unsupported
from hsmsvc.hsm.backend import Backend
from hsmsvc.hsm.commands import FormKey, TranslatePin
from hsmsvc.hsm.model import Command, DukptPinKey, KeyCryptogram, KeySpec, PinBlock
from hsmsvc.hsm.policy import Operation, check_binding, require
from hsmsvc.types import Algorithm, Exportability, KeyType, KeyUsage, ModeOfUse, PinBlockFormat
from tests.hsm.helpers import form
from tests.reference import decode_iso0, ecb, iso4_decipher

H = bytes.fromhex
# X9.24-1:2009 A.4 (openemv/dukpt test/dukpt_tdes_test.c): BDK; KSN and the PIN block of
# PIN 1234, PAN 4012345678909.
TDES_BDK, TDES_KSN, TDES_BLOCK, TDES_PAN = (H("0123456789ABCDEFFEDCBA9876543210"), H("FFFF9876543210E00001"),
                                            H("1B9C1845EB993A7A"), "4012345678909")
# X9.24-3:2017 supplement (openemv/dukpt test/dukpt_aes128_test.c): AES-128 BDK; KSN and the ISO
# format 4 block of PIN 1234, PAN 4111111111111111 under the AES-128 PIN key.
AES_BDK, AES_KSN, AES_BLOCK, AES_PAN = (H("FEDCBA9876543210F1F1F1F1F1F1F1F1"), H("123456789012345600000001"),
                                        H("A912150391AB65A67E52883D81CE2D15"), "4111111111111111")


def _bdk(backend: Backend, alg: Algorithm, clear: bytes) -> KeyCryptogram:
    c1 = secrets.token_bytes(len(clear))
    spec = KeySpec(f"bdk-{secrets.token_hex(4)}", 1, KeyType.BDK, alg, KeyUsage.BDK, ModeOfUse.DERIVE)
    cg, _ = backend.execute(FormKey(spec=spec, components=[c1, bytes(a ^ b for a, b in zip(clear, c1))]))
    return cg


def _translate(backend: Backend, src: DukptPinKey, block: bytes, pan: str, fmt: PinBlockFormat,
               dst: KeyCryptogram) -> bytes:
    return backend.execute(TranslatePin(pin=PinBlock(block, fmt, pan), src=src, dst=dst, dst_format=fmt))


def test_dukpt_pin_blocks_translate_to_a_zpk(backend: Backend) -> None:
    tdes = _bdk(backend, Algorithm.TDES_2KEY, TDES_BDK)
    zpk, zpk_clear = form(backend, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    src = DukptPinKey(tdes, TDES_KSN)
    if Command.DUKPT not in backend.capabilities.commands:
        with pytest.raises(Unsupported, match="DUKPT"):
            _translate(backend, src, TDES_BLOCK, TDES_PAN, PinBlockFormat.ISO_0, zpk)
        return
    out = _translate(backend, src, TDES_BLOCK, TDES_PAN, PinBlockFormat.ISO_0, zpk)
    assert decode_iso0(ecb(Algorithm.TDES_2KEY, zpk_clear, out, decrypt=True), TDES_PAN) == "1234"
    aes = _bdk(backend, Algorithm.AES_128, AES_BDK)
    azpk, azpk_clear = form(backend, KeyType.ZPK, Algorithm.AES_128, KeyUsage.PIN_ENCRYPTION)
    out = _translate(backend, DukptPinKey(aes, AES_KSN, Algorithm.AES_128), AES_BLOCK, AES_PAN,
                     PinBlockFormat.ISO_4, azpk)
    # The PIN field's first half (control, length, PIN, fill A); the second, random, is renewed.
    assert iso4_decipher(Algorithm.AES_128, azpk_clear, out, AES_PAN)[:8] == H("441234AAAAAAAAAA")
    # A flipped bit, or the next KSN, is the one generic error; a forbidden KSN names the field.
    with pytest.raises(InvalidPinBlock):
        _translate(backend, src, bytes([TDES_BLOCK[0] ^ 1]) + TDES_BLOCK[1:], TDES_PAN, PinBlockFormat.ISO_0, zpk)
    with pytest.raises(InvalidPinBlock):
        _translate(backend, DukptPinKey(tdes, H("FFFF9876543210E00002")), TDES_BLOCK, TDES_PAN,
                   PinBlockFormat.ISO_0, zpk)
    with pytest.raises(InvalidInput, match="^ksn"):
        _translate(backend, DukptPinKey(tdes, H("FFFF9876543210E00000")), TDES_BLOCK, TDES_PAN,
                   PinBlockFormat.ISO_0, zpk)
    with pytest.raises(InvalidInput, match="^pin_key_algorithm"):
        _translate(backend, DukptPinKey(aes, AES_KSN), AES_BLOCK, AES_PAN, PinBlockFormat.ISO_4, azpk)


def test_a_bdk_binds_derive_and_nothing_else() -> None:
    check_binding(KeyType.BDK, KeyUsage.BDK, Algorithm.TDES_2KEY, ModeOfUse.DERIVE)
    for alg, mode in ((Algorithm.TDES_2KEY, ModeOfUse.ENCRYPT_DECRYPT), (Algorithm.TDES_3KEY, ModeOfUse.DERIVE),
                      (Algorithm.SM4, ModeOfUse.DERIVE)):
        with pytest.raises(InvalidInput):
            check_binding(KeyType.BDK, KeyUsage.BDK, alg, mode)
    with pytest.raises(InvalidInput):
        check_binding(KeyType.ZPK, KeyUsage.PIN_ENCRYPTION, Algorithm.TDES_2KEY, ModeOfUse.DERIVE)
    # Never exported, even if made exportable: TR-34 would load it into a device (X9.24-1 forbids).
    with pytest.raises(KeyUsageViolation):
        require(KeyType.BDK, KeyUsage.BDK, ModeOfUse.DERIVE, Operation.KEY_EXPORT, Exportability.EXPORTABLE)
    for op in Operation:
        if op is not Operation.DUKPT_PIN_DECRYPT:
            with pytest.raises(KeyUsageViolation):
                require(KeyType.BDK, KeyUsage.BDK, ModeOfUse.DERIVE, op, Exportability.EXPORTABLE)


def test_no_legacy_ecb_form_carries_a_bdk() -> None:
    from hsmsvc.hsm.model import LegacyForm
    from hsmsvc.keys.hierarchy import check_legacy_types

    zmk = KeySpec("zmk", 1, KeyType.ZMK, Algorithm.TDES_2KEY, KeyUsage.KEK, ModeOfUse.ENCRYPT_DECRYPT)
    for legacy in (LegacyForm.X917_ECB, LegacyForm.PAYSHIELD_VARIANT, LegacyForm.HSMSVC_VARIANT):
        with pytest.raises(InvalidInput, match="TR-31"):
            check_legacy_types(zmk, frozenset({KeyType.BDK, KeyType.DEK}), legacy)
