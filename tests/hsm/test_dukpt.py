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
from hsmsvc.hsm.model import Command, DukptKey, KeyCryptogram, KeySpec, PinBlock
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


def _translate(backend: Backend, src: DukptKey, block: bytes, pan: str, fmt: PinBlockFormat,
               dst: KeyCryptogram) -> bytes:
    return backend.execute(TranslatePin(pin=PinBlock(block, fmt, pan), src=src, dst=dst, dst_format=fmt))


def test_dukpt_pin_blocks_translate_to_a_zpk(backend: Backend) -> None:
    tdes = _bdk(backend, Algorithm.TDES_2KEY, TDES_BDK)
    zpk, zpk_clear = form(backend, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    src = DukptKey(tdes, TDES_KSN)
    if Command.DUKPT not in backend.capabilities.commands:
        with pytest.raises(Unsupported, match="DUKPT"):
            _translate(backend, src, TDES_BLOCK, TDES_PAN, PinBlockFormat.ISO_0, zpk)
        return
    out = _translate(backend, src, TDES_BLOCK, TDES_PAN, PinBlockFormat.ISO_0, zpk)
    assert decode_iso0(ecb(Algorithm.TDES_2KEY, zpk_clear, out, decrypt=True), TDES_PAN) == "1234"
    aes = _bdk(backend, Algorithm.AES_128, AES_BDK)
    azpk, azpk_clear = form(backend, KeyType.ZPK, Algorithm.AES_128, KeyUsage.PIN_ENCRYPTION)
    out = _translate(backend, DukptKey(aes, AES_KSN, Algorithm.AES_128), AES_BLOCK, AES_PAN,
                     PinBlockFormat.ISO_4, azpk)
    # The PIN field's first half (control, length, PIN, fill A); the second, random, is renewed.
    assert iso4_decipher(Algorithm.AES_128, azpk_clear, out, AES_PAN)[:8] == H("441234AAAAAAAAAA")
    # A flipped bit, or the next KSN, is the one generic error; a forbidden KSN names the field.
    with pytest.raises(InvalidPinBlock):
        _translate(backend, src, bytes([TDES_BLOCK[0] ^ 1]) + TDES_BLOCK[1:], TDES_PAN, PinBlockFormat.ISO_0, zpk)
    with pytest.raises(InvalidPinBlock):
        _translate(backend, DukptKey(tdes, H("FFFF9876543210E00002")), TDES_BLOCK, TDES_PAN,
                   PinBlockFormat.ISO_0, zpk)
    with pytest.raises(InvalidInput, match="^ksn"):
        _translate(backend, DukptKey(tdes, H("FFFF9876543210E00000")), TDES_BLOCK, TDES_PAN,
                   PinBlockFormat.ISO_0, zpk)
    with pytest.raises(InvalidInput, match="^pin_key_algorithm"):
        _translate(backend, DukptKey(aes, AES_KSN), AES_BLOCK, AES_PAN, PinBlockFormat.ISO_4, azpk)


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
    bdk_ops = {Operation.DUKPT_PIN_DECRYPT, Operation.DUKPT_MAC_GENERATE, Operation.DUKPT_MAC_VERIFY,
               Operation.DUKPT_DATA_ENCRYPT, Operation.DUKPT_DATA_DECRYPT, Operation.DUKPT_INITIAL_KEY_EXPORT}
    for op in Operation:
        if op not in bdk_ops:
            with pytest.raises(KeyUsageViolation):
                require(KeyType.BDK, KeyUsage.BDK, ModeOfUse.DERIVE, op, Exportability.EXPORTABLE)


def test_no_legacy_ecb_form_carries_a_bdk() -> None:
    from hsmsvc.hsm.model import LegacyForm
    from hsmsvc.keys.hierarchy import check_legacy_types

    zmk = KeySpec("zmk", 1, KeyType.ZMK, Algorithm.TDES_2KEY, KeyUsage.KEK, ModeOfUse.ENCRYPT_DECRYPT)
    for legacy in (LegacyForm.X917_ECB, LegacyForm.PAYSHIELD_VARIANT, LegacyForm.HSMSVC_VARIANT):
        with pytest.raises(InvalidInput, match="TR-31"):
            check_legacy_types(zmk, frozenset({KeyType.BDK, KeyType.DEK}), legacy)


# --- The host functions (issue 35): MACs, data and initial keys ----------------------------------

# X9.24-1:2009 A.4 (openemv/dukpt test/dukpt_tdes_test.c): for KSN FFFF9876543210E00001 the message
# "4012345678909D987", its request and response MACs (X9.19 retail MAC, zero padded, leftmost 4 bytes)
# and the request enciphered under the request data key (TDES-CBC, zero IV, zero padded to 24 bytes).
A4_MESSAGE = b"4012345678909D987"
A4_MAC_REQUEST, A4_MAC_RESPONSE = H("9CCC7817"), H("20364223")
A4_ENCIPHERED = H("FC0D53B7EA1FDA9EE68AAF2E70D9B9506229BE2AA993F04F")
# X9.24-3:2017 supplement (openemv/dukpt test/dukpt_aes128_test.c), first transaction: the AES-128
# MAC generation and data encryption keys.
AES_MAC_KEY, AES_DATA_KEY = H("A2DC23DE6FDE0824A2BC321E08E4B8B7"), H("A35C412EFD41FDB98B69797C02DCD08F")
IPEK_TDES = H("6AC292FAA1315B4D858AB3A3D7D5933A")  # A.4, initial KSN FFFF9876543210E00000
IK_AES = H("1273671EA26AC29AFA4D1084127652A1")  # supplement, initial key ID 1234567890123456


def test_dukpt_macs_and_data_by_the_published_data(backend: Backend) -> None:
    from hsmsvc.hsm.commands import DecryptDukptData, DukptDirection, EncryptDukptData, GenerateDukptMac, VerifyDukptMac
    from hsmsvc.types import Padding
    from tests.reference import aes_cmac

    tdes = _bdk(backend, Algorithm.TDES_2KEY, TDES_BDK)
    if Command.DUKPT not in backend.capabilities.commands:
        return
    src = DukptKey(tdes, TDES_KSN)
    req, resp, m1 = DukptDirection.REQUEST, DukptDirection.RESPONSE, Padding.METHOD_1
    assert backend.execute(VerifyDukptMac(key=src, direction=req, data=A4_MESSAGE, mac=A4_MAC_REQUEST, padding=m1))
    assert not backend.execute(VerifyDukptMac(key=src, direction=req, data=A4_MESSAGE + b"0", mac=A4_MAC_REQUEST,
                                              padding=m1))
    assert backend.execute(GenerateDukptMac(key=src, direction=resp, data=A4_MESSAGE, padding=m1))[:4] == \
        A4_MAC_RESPONSE
    clear = backend.execute(DecryptDukptData(key=src, direction=req, iv=bytes(8), data=A4_ENCIPHERED))
    assert clear == A4_MESSAGE.ljust(24, b"\0")
    # The host never makes what the terminal makes, nor reads what it sends back.
    with pytest.raises(KeyUsageViolation):
        backend.execute(GenerateDukptMac(key=src, direction=req, data=A4_MESSAGE, padding=m1))
    with pytest.raises(KeyUsageViolation):
        backend.execute(VerifyDukptMac(key=src, direction=resp, data=A4_MESSAGE, mac=A4_MAC_RESPONSE, padding=m1))
    with pytest.raises(KeyUsageViolation):
        backend.execute(EncryptDukptData(key=src, direction=req, iv=bytes(8), data=bytes(8)))
    # Under a TDES BDK "both" is the request key: checked and deciphered with, never made with (an
    # adversarial review forged the A.4 request MAC through it).
    both = DukptDirection.BOTH
    assert backend.execute(VerifyDukptMac(key=src, direction=both, data=A4_MESSAGE, mac=A4_MAC_REQUEST, padding=m1))
    with pytest.raises(KeyUsageViolation, match="^direction"):
        backend.execute(GenerateDukptMac(key=src, direction=both, data=A4_MESSAGE, padding=m1))
    with pytest.raises(KeyUsageViolation, match="^direction"):
        backend.execute(EncryptDukptData(key=src, direction=both, iv=bytes(8), data=bytes(8)))
    with pytest.raises(InvalidInput, match="^data"):
        backend.execute(DecryptDukptData(key=src, direction=req, iv=bytes(8), data=A4_ENCIPHERED[:20]))
    # AES: the supplement's working keys, checked with the reference's CMAC and CBC.
    aes = _bdk(backend, Algorithm.AES_128, AES_BDK)
    asrc = DukptKey(aes, AES_KSN, Algorithm.AES_128)
    msg = secrets.token_bytes(37)
    assert backend.execute(VerifyDukptMac(key=asrc, direction=req, data=msg, mac=aes_cmac(AES_MAC_KEY, msg)[:8]))
    iv = secrets.token_bytes(16)
    plain = secrets.token_bytes(32)
    ct = _cbc_ref(AES_DATA_KEY, iv, plain)
    assert backend.execute(DecryptDukptData(key=asrc, direction=req, iv=iv, data=ct)) == plain
    out = backend.execute(EncryptDukptData(key=asrc, direction=resp, iv=iv, data=plain))
    assert out != ct and backend.execute(EncryptDukptData(key=asrc, direction=DukptDirection.BOTH, iv=iv,
                                                           data=plain)) != out


def _cbc_ref(key: bytes, iv: bytes, data: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    e = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return e.update(data) + e.finalize()


def test_an_initial_key_leaves_only_as_a_tr31_b1_block(backend: Backend) -> None:
    from hsmsvc.hsm.commands import ExportInitialKey
    from tests.hsm.helpers import form as form_key
    from tests.reference import odd_parity, tdes_kcv, tr31_unwrap

    tdes = _bdk(backend, Algorithm.TDES_2KEY, TDES_BDK)
    kbpk, kbpk_clear = form_key(backend, KeyType.TMK, Algorithm.AES_256, KeyUsage.KBPK, ModeOfUse.ENCRYPT_DECRYPT)
    if not {Command.DUKPT, Command.EXPORT_KEY} <= backend.capabilities.commands:
        return
    raw, check = backend.execute(ExportInitialKey(bdk=tdes, kek=kbpk, initial=H("FFFF9876543210E00000")))
    block = raw.decode()
    assert check == tdes_kcv(IPEK_TDES)
    assert block[0] == "D" and block[5:8] == "B1T" and block[8] == "X"
    # With odd parity, as every TDES key hsmsvc gives out (A.4 prints it without; DES ignores the bit).
    assert tr31_unwrap(kbpk_clear, block)[0] == odd_parity(IPEK_TDES)
    aes = _bdk(backend, Algorithm.AES_128, AES_BDK)
    block = backend.execute(ExportInitialKey(bdk=aes, kek=kbpk, initial=H("1234567890123456")))[0].decode()
    assert block[5:8] == "B1A" and tr31_unwrap(kbpk_clear, block)[0] == IK_AES
    with pytest.raises(InvalidInput, match="^initial_key_id"):
        backend.execute(ExportInitialKey(bdk=tdes, kek=kbpk, initial=H("FFFF9876543210E00001")))
    k0, _ = form_key(backend, KeyType.TMK, Algorithm.AES_256, KeyUsage.KEK, ModeOfUse.ENCRYPT_DECRYPT)
    with pytest.raises(KeyUsageViolation, match="TR-31"):
        backend.execute(ExportInitialKey(bdk=tdes, kek=k0, initial=H("FFFF9876543210E00000")))
    weak, _ = form_key(backend, KeyType.TMK, Algorithm.TDES_2KEY, KeyUsage.KBPK, ModeOfUse.ENCRYPT_DECRYPT)
    with pytest.raises(KeyUsageViolation, match="weaker"):
        backend.execute(ExportInitialKey(bdk=aes, kek=weak, initial=H("1234567890123456")))
