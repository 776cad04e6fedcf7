"""The backend conformance suite: every backend passes it, gated by capability.

Keys are formed from components the test knows, so every result is checked
against an independent computation with pyca/cryptography, not against our own
crypto package.
"""

from __future__ import annotations

import dataclasses
import secrets

import pytest
from cryptography.hazmat.primitives import cmac as pyca_cmac
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives import padding as sym_padding

from hsmsvc.errors import (
    HsmsvcError,
    InvalidInput,
    InvalidKeyBlock,
    InvalidPinBlock,
    KeyUsageViolation,
    Unsupported,
    VerificationFailed,
)
from hsmsvc.hsm.commands import (
    AuditMac, DecryptData, EncryptData, EncryptFields, EncryptPinForStorage, ExportKey, Forget, GenerateKey,
    GenerateMac, GenerateMacs, GeneratePinOffset, GeneratePvv, ImportKey, Kcv, KeySyncMac, PanHash, PanHashes, Random,
    ReadAuditAnchor, ReencryptData, ReencryptStoredPin, TranslatePin, TranslatePins, VerifyMac, VerifyMacs,
    VerifyPinIbm3624, VerifyPinPvv, VerifyPinStored, VerifyPinsStored, WriteAuditAnchor,
)
from hsmsvc.hsm.backend import Backend
from hsmsvc.hsm.model import (
    PinBlock, Command, FieldParams, KeyCryptogram, KeySpec, LegacyForm, StoredPin, StoredPinMethod,
)
from hsmsvc.types import (
    Algorithm,
    CipherMode,
    DataPadding,
    Exportability,
    KeyType,
    KeyUsage,
    MacAlgorithm,
    ModeOfUse,
    Padding,
    PinBlockFormat,
)
from tests.hsm.helpers import PAN, PIN, clear_key, form, needs
from tests.reference import (
    cbc_mac,
    cmac,
    ecb,
    iso0,
    iso4_pan_field,
    key_sync_mac,
    primitive,
    retail_mac,
    variant,
    xor,
)


# -- key formation and KCVs ---------------------------------------------------------


@pytest.mark.parametrize("alg", [Algorithm.TDES_2KEY, Algorithm.TDES_3KEY, Algorithm.AES_128, Algorithm.AES_256,
                                 Algorithm.SM4])
def test_formed_key_kcv_matches_independent_kcv(backend: Backend, alg: Algorithm) -> None:
    needs(backend, Command.FORM_KEY, alg)
    cg, clear = form(backend, KeyType.DEK, alg, KeyUsage.DATA)
    if not alg.is_aes:  # TDES and SM4: ECB of a zero block
        want = ecb(alg, clear, bytes(alg.block_size))[:3]
    else:
        c = pyca_cmac.CMAC(primitive(alg, clear))
        c.update(bytes(16))
        want = c.finalize()[:3]
    assert cg.kcv == want
    assert backend.execute(Kcv(key=cg)) == want


def test_lmk_kcv_is_the_components_kcv(backend: Backend) -> None:
    from tests.hsm.components_env import LMK

    c = pyca_cmac.CMAC(algorithms.AES(LMK))
    c.update(bytes(16))
    assert backend.lmk_kcv() == c.finalize()[:3]


def test_generated_keys_differ_and_repr_hides_them(backend: Backend) -> None:
    spec = KeySpec("gen", 1, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    a, b = backend.execute(GenerateKey(spec=spec)), backend.execute(GenerateKey(spec=spec))
    assert a.kcv != b.kcv
    assert repr(a) == f"KeyCryptogram(gen v1 ZPK kcv={a.kcv.hex().upper()})"


# -- PIN translation ----------------------------------------------------------------


@pytest.mark.parametrize(
    "src_alg,src_fmt,dst_alg,dst_fmt",
    [
        (Algorithm.TDES_2KEY, PinBlockFormat.ISO_0, Algorithm.TDES_2KEY, PinBlockFormat.ISO_0),
        (Algorithm.TDES_3KEY, PinBlockFormat.ISO_0, Algorithm.TDES_2KEY, PinBlockFormat.ISO_3),
        (Algorithm.TDES_2KEY, PinBlockFormat.ISO_1, Algorithm.TDES_2KEY, PinBlockFormat.ISO_0),
        (Algorithm.TDES_2KEY, PinBlockFormat.ISO_0, Algorithm.AES_128, PinBlockFormat.ISO_4),
        (Algorithm.AES_256, PinBlockFormat.ISO_4, Algorithm.AES_128, PinBlockFormat.ISO_4),
        (Algorithm.SM4, PinBlockFormat.SM4_0, Algorithm.SM4, PinBlockFormat.ISO_4),
    ],
)
def test_translate_pin_against_independent_decryption(
    backend: Backend, src_alg: Algorithm, src_fmt: PinBlockFormat, dst_alg: Algorithm, dst_fmt: PinBlockFormat
) -> None:
    needs(backend, Command.TRANSLATE_PIN, src_alg, dst_alg)
    tpk, tpk_clear = form(backend, KeyType.TPK, src_alg, KeyUsage.PIN_ENCRYPTION)
    zpk, zpk_clear = form(backend, KeyType.ZPK, dst_alg, KeyUsage.PIN_ENCRYPTION)
    from hsmsvc.crypto import pinblock
    from hsmsvc.crypto._cipher import BlockCipher

    pin = "".join(secrets.choice("0123456789") for _ in range(6))
    block = pinblock.encipher(src_fmt, BlockCipher(src_alg, tpk_clear), pin, PAN)
    out = backend.execute(TranslatePin(pin=PinBlock(block, src_fmt, PAN), src=tpk, dst=zpk,
                                       dst_format=dst_fmt))
    if dst_fmt is PinBlockFormat.ISO_0:
        assert ecb(dst_alg, zpk_clear, out, decrypt=True) == iso0(pin, PAN)
    else:
        assert pinblock.decipher(dst_fmt, BlockCipher(dst_alg, zpk_clear), out, PAN) == pin


def test_translate_refuses_losing_the_pan_binding(backend: Backend) -> None:
    tpk, clear = form(backend, KeyType.TPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    zpk, _ = form(backend, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    block = ecb(Algorithm.TDES_2KEY, clear, iso0(PIN, PAN))
    with pytest.raises(InvalidInput, match="PAN binding"):
        backend.execute(TranslatePin(pin=PinBlock(block, PinBlockFormat.ISO_0, PAN), src=tpk, dst=zpk,
                                     dst_format=PinBlockFormat.ISO_1))


def test_bad_pin_blocks_give_one_generic_error(backend: Backend) -> None:
    tpk, clear = form(backend, KeyType.TPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    zpk, _ = form(backend, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    bad_plain = [
        bytes.fromhex("0C1234FFFFFFFFFF"),  # length 12 but fill
        bytes.fromhex("1412AAFFFFFFFFFF"),  # format 1 nibble
        bytes.fromhex("04123AFFFFFFFFFF"),  # non-digit PIN
        bytes.fromhex("02FFFFFFFFFFFFFF"),  # too short
    ]
    messages = set()
    for plain in bad_plain:
        pan_field = bytes.fromhex("0000" + PAN[-13:-1])
        block = ecb(Algorithm.TDES_2KEY, clear, bytes(a ^ b for a, b in zip(plain, pan_field)))
        with pytest.raises(InvalidPinBlock) as e:
            backend.execute(TranslatePin(pin=PinBlock(block, PinBlockFormat.ISO_0, PAN), src=tpk, dst=zpk,
                                         dst_format=PinBlockFormat.ISO_0))
        messages.add(str(e.value))
    assert messages == {"pin_block: PIN block invalid"}


def test_format0_translation_single_and_batch_agree_with_independent_check(backend: Backend) -> None:
    """Format 0 to format 0 under TDES takes a shorter path; it must accept and refuse exactly
    what a full decode does, and name a malformed PAN as the general path does."""
    tpk, tpk_clear = form(backend, KeyType.TPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    zpk, zpk_clear = form(backend, KeyType.ZPK, Algorithm.TDES_3KEY, KeyUsage.PIN_ENCRYPTION)
    pans = ["4012345678909", "5413330089020011", "6011000990139424121"]
    blocks, pans_used, expect = [], [], []
    route = backend.pin_translator(src=tpk, src_format=PinBlockFormat.ISO_0, dst=zpk,
                                   dst_format=PinBlockFormat.ISO_0)
    for i in range(60):
        pan = pans[i % 3]
        if i % 4 == 0:  # random plain: almost always malformed, sometimes by one nibble only
            plain = bytes(a ^ b for a, b in zip(iso0(PIN, pan),
                                                bytes([0] * (i % 8) + [1 << (i % 8)] + [0] * (7 - i % 8))))
        else:
            plain = iso0("".join(secrets.choice("0123456789") for _ in range(4 + i % 9)), pan)
        block = ecb(Algorithm.TDES_2KEY, tpk_clear, plain)
        blocks.append(block)
        pans_used.append(pan)
        field = bytes.fromhex("0000" + pan[-13:-1])
        text = bytes(a ^ b for a, b in zip(plain, field)).hex().upper()
        n = int(text[1], 16)
        ok = text[0] == "0" and 4 <= n <= 12 and text[2:2 + n].isdigit() and set(text[2 + n:]) <= {"F"}
        expect.append(plain if ok else None)
        for translate in (lambda b, p: backend.execute(TranslatePin(
            pin=PinBlock(b, PinBlockFormat.ISO_0, p), src=tpk, dst=zpk,
            dst_format=PinBlockFormat.ISO_0)),
                          route):
            try:
                out = translate(block, pan)
                assert ok and ecb(Algorithm.TDES_3KEY, zpk_clear, out, decrypt=True) == plain
            except InvalidPinBlock:
                assert not ok
    batch = backend.execute(TranslatePins(blocks=b"".join(blocks), src=tpk, src_format=PinBlockFormat.ISO_0,
                                          dst=zpk, dst_format=PinBlockFormat.ISO_0, pans=pans_used))
    errors = dict(batch.errors)
    assert set(errors) == {i for i, w in enumerate(expect) if w is None}
    for i, want in enumerate(expect):
        got = batch.blocks[8 * i:8 * i + 8]
        if want is None:
            assert isinstance(errors[i], InvalidPinBlock) and got == bytes(8)
        else:
            assert ecb(Algorithm.TDES_3KEY, zpk_clear, got, decrypt=True) == want
    # The general path (a PAN it must name) agrees on the same run.
    mixed = backend.execute(TranslatePins(blocks=b"".join(blocks[1:4]), src=tpk,
                                          src_format=PinBlockFormat.ISO_0, dst=zpk,
                                          dst_format=PinBlockFormat.ISO_0,
                                          pans=[pans_used[1], "12X4567890123", pans_used[3]]))
    assert [i for i, _ in mixed.errors] == [1] and str(mixed.errors[0][1]).startswith("pan")
    assert mixed.blocks == batch.blocks[8:16] + bytes(8) + batch.blocks[24:32]
    with pytest.raises(InvalidInput, match="^pin_blocks"):
        backend.execute(TranslatePins(blocks=b"".join(blocks[:3]), src=tpk, src_format=PinBlockFormat.ISO_0,
                                      dst=zpk, dst_format=PinBlockFormat.ISO_0, pans=pans_used[:2]))
    with pytest.raises(InvalidInput, match="^pan"):
        backend.execute(TranslatePin(pin=PinBlock(blocks[1], PinBlockFormat.ISO_0, "40123456789X9"), src=tpk,
                                     dst=zpk, dst_format=PinBlockFormat.ISO_0))
    with pytest.raises(InvalidInput, match="^pan"):
        route(blocks[1], "40123456789X9")
    with pytest.raises(InvalidInput, match="^pin_block"):
        route(blocks[1][:7], pans_used[1])
    mak, _ = form(backend, KeyType.MAK, Algorithm.TDES_2KEY, KeyUsage.MAC_ISO9797_ALG1)
    with pytest.raises(KeyUsageViolation):
        backend.execute(TranslatePin(pin=PinBlock(blocks[1], PinBlockFormat.ISO_0, pans_used[1]), src=mak,
                                     dst=zpk, dst_format=PinBlockFormat.ISO_0))
    with pytest.raises(KeyUsageViolation):
        backend.execute(TranslatePin(pin=PinBlock(blocks[1], PinBlockFormat.ISO_0, pans_used[1]), src=tpk,
                                     dst=mak, dst_format=PinBlockFormat.ISO_0))
    for src, dst in ((mak, zpk), (tpk, mak)):
        with pytest.raises(KeyUsageViolation):
            backend.pin_translator(src=src, src_format=PinBlockFormat.ISO_0, dst=dst,
                                   dst_format=PinBlockFormat.ISO_0)(blocks[1], pans_used[1])


@pytest.mark.parametrize("pans", [
    ["4012345678909", "5413330089020011", "6011000990139424121", "1234567890"],
    ["5413330089020011"],
], ids=["mixed-lengths", "one-length"])
def test_format4_batch_agrees_with_independent_check_and_single_calls(backend: Backend, pans: list[str]) -> None:
    """Format 4 to format 4 between AES keys translates a run whole (clause 9.3.6.4 for each
    block): it must accept and refuse exactly what a full decode does, keep the PIN and give
    each block a fresh random half, as a single translation does."""
    needs(backend, Command.TRANSLATE_PIN, Algorithm.AES_256, Algorithm.AES_128)
    src, src_clear = form(backend, KeyType.ZPK, Algorithm.AES_256, KeyUsage.PIN_ENCRYPTION)
    dst, dst_clear = form(backend, KeyType.ZPK, Algorithm.AES_128, KeyUsage.PIN_ENCRYPTION)
    ISO4 = PinBlockFormat.ISO_4
    bad_first_halves = ["341234AAAAAAAAAA", "431234AAAAAAAAAA", "4D1234AAAAAAAAAA", "44123AAAAAAAAAAA",
                        "441234AAAAAAAAAF", "041234FFFFFFFFFF"]
    route = backend.pin_translator(src=src, src_format=ISO4, dst=dst, dst_format=ISO4)
    blocks, used, expect = [], [], []
    for i in range(48):
        pan = pans[i % len(pans)]
        if i % 4 == 0:
            first = bad_first_halves[(i // 4) % len(bad_first_halves)] if i % 8 else secrets.token_hex(8).upper()
        else:
            pin = "".join(secrets.choice("0123456789") for _ in range(4 + i % 9))
            first = f"4{len(pin):X}{pin}".ljust(16, "A")
        # Any second half is valid, all-ones included.
        plain = bytes.fromhex(first) + (b"\xff" * 8 if i % 5 == 1 else secrets.token_bytes(8))
        a = iso4_pan_field(pan)
        block = ecb(Algorithm.AES_256, src_clear, xor(ecb(Algorithm.AES_256, src_clear, plain), a))
        n = int(first[1], 16)
        ok = first[0] == "4" and 4 <= n <= 12 and first[2:2 + n].isdigit() and set(first[2 + n:]) <= {"A"}
        blocks.append(block)
        used.append(pan)
        expect.append(plain if ok else None)
        for translate in (lambda b, p: backend.execute(TranslatePin(
            pin=PinBlock(b, ISO4, p), src=src, dst=dst, dst_format=ISO4)), route):
            try:
                single = translate(block, pan)
                assert ok
                got = ecb(Algorithm.AES_128, dst_clear,
                          xor(ecb(Algorithm.AES_128, dst_clear, single, decrypt=True), a), decrypt=True)
                assert got[:8] == plain[:8] and got[8:] != plain[8:]
            except InvalidPinBlock:
                assert not ok
    assert any(w is None for w in expect) and any(w is not None for w in expect)
    batch = backend.execute(TranslatePins(blocks=b"".join(blocks), src=src, src_format=ISO4, dst=dst,
                                          dst_format=ISO4, pans=used))
    errors = dict(batch.errors)
    assert set(errors) == {i for i, w in enumerate(expect) if w is None}
    for i, want in enumerate(expect):
        got = batch.blocks[16 * i:16 * i + 16]
        if want is None:
            assert isinstance(errors[i], InvalidPinBlock) and got == bytes(16)
            continue
        a = iso4_pan_field(used[i])
        plain = ecb(Algorithm.AES_128, dst_clear, xor(ecb(Algorithm.AES_128, dst_clear, got, decrypt=True), a),
                    decrypt=True)
        # The same PIN field, with a new random half (a chance of 2**-64 that it repeats).
        assert plain[:8] == want[:8] and plain[8:] != want[8:]
    # A malformed PAN is named for its item only, as the general path names it.
    mixed = backend.execute(TranslatePins(blocks=b"".join(blocks[1:4]), src=src, src_format=ISO4, dst=dst,
                                          dst_format=ISO4, pans=[used[1], "12X4567890123", used[3]]))
    assert [i for i, _ in mixed.errors] == [1] and str(mixed.errors[0][1]).startswith("pan")
    assert mixed.blocks[16:32] == bytes(16)
    for translate in (lambda b, p: backend.execute(TranslatePin(
        pin=PinBlock(b, ISO4, p), src=src, dst=dst, dst_format=ISO4)), route):
        with pytest.raises(InvalidInput, match="^pan"):
            translate(blocks[1], "12X4567890123")
        with pytest.raises(InvalidInput, match="^pin_block"):
            translate(blocks[1][:15], used[1])
    # Keys bound to other uses are refused whole, as for one block.
    mak, _ = form(backend, KeyType.MAK, Algorithm.AES_128, KeyUsage.MAC_CMAC)
    for k1, k2 in ((mak, dst), (src, mak)):
        with pytest.raises(KeyUsageViolation):
            backend.execute(TranslatePins(blocks=b"".join(blocks[:2]), src=k1, src_format=ISO4, dst=k2,
                                          dst_format=ISO4, pans=used[:2]))
    # A TDES key cannot carry format 4, batch or not.
    tdes, _ = form(backend, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    with pytest.raises(InvalidInput):
        backend.execute(TranslatePin(pin=PinBlock(blocks[1], ISO4, used[1]), src=src, dst=tdes,
                                     dst_format=ISO4))
    out = backend.execute(TranslatePins(blocks=blocks[1], src=src, src_format=ISO4, dst=tdes, dst_format=ISO4,
                                        pans=used[1:2]))
    assert [type(e) for _, e in out.errors] == [InvalidInput]


def test_a_pin_translator_reloads_its_keys_after_the_backend_drops_them(backend: Backend) -> None:
    """A kept translator must not use a loaded key the backend has let go: a PKCS#11 session
    object is destroyed then, and its handle may be given to the next key loaded."""
    tpk, tpk_clear = form(backend, KeyType.TPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    zpk, zpk_clear = form(backend, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    route = backend.pin_translator(src=tpk, src_format=PinBlockFormat.ISO_0, dst=zpk,
                                   dst_format=PinBlockFormat.ISO_0)
    block = ecb(Algorithm.TDES_2KEY, tpk_clear, iso0(PIN, PAN))
    assert ecb(Algorithm.TDES_2KEY, zpk_clear, route(block, PAN), decrypt=True) == iso0(PIN, PAN)
    backend.execute(Forget(key_id=tpk.spec.key_id))
    backend.execute(Forget(key_id=zpk.spec.key_id))
    others = [form(backend, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)[0] for _ in range(3)]
    for other in others:  # loaded now, perhaps into the dropped keys' handles
        backend.execute(TranslatePin(pin=PinBlock(ecb(Algorithm.TDES_2KEY, tpk_clear, iso0(PIN, PAN)),
                                                  PinBlockFormat.ISO_0, PAN),
                                     src=tpk, dst=other, dst_format=PinBlockFormat.ISO_0))
    assert ecb(Algorithm.TDES_2KEY, zpk_clear, route(block, PAN), decrypt=True) == iso0(PIN, PAN)


# -- usage binding --------------------------------------------------------------------


def test_zpk_cannot_be_used_as_mak_or_dek(backend: Backend) -> None:
    zpk, _ = form(backend, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    with pytest.raises(KeyUsageViolation, match="MAC_GENERATE"):
        backend.execute(GenerateMac(key=zpk, data=b"data", algorithm=MacAlgorithm.ISO9797_ALG1,
                                    padding=Padding.METHOD_1))
    with pytest.raises(KeyUsageViolation, match="DATA_ENCRYPT"):
        backend.execute(EncryptData(key=zpk, params=FieldParams(CipherMode.CBC, bytes(8), DataPadding.NONE),
                                    data=bytes(16)))


def test_mak_bound_to_its_mac_algorithm_and_mode(backend: Backend) -> None:
    mak, _ = form(backend, KeyType.MAK, Algorithm.TDES_2KEY, KeyUsage.MAC_ISO9797_ALG1, ModeOfUse.MAC_VERIFY_ONLY)
    with pytest.raises(KeyUsageViolation):
        backend.execute(GenerateMac(key=mak, data=b"data", algorithm=MacAlgorithm.ISO9797_ALG1,
                                    padding=Padding.METHOD_1))
    with pytest.raises(KeyUsageViolation):
        backend.execute(VerifyMac(key=mak, data=b"data", mac=bytes(8), algorithm=MacAlgorithm.CMAC,
                                  padding=Padding.METHOD_1))


def test_edited_type_header_or_swapped_cryptogram_is_unusable(backend: Backend) -> None:
    a, _ = form(backend, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    b, _ = form(backend, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    backend.execute(Kcv(key=a))  # now cached: tampering must still be caught
    # 1. the type column says TPK
    retyped = dataclasses.replace(a, spec=dataclasses.replace(a.spec, key_type=KeyType.TPK))
    with pytest.raises(KeyUsageViolation):
        backend.execute(Kcv(key=retyped))
    # 2. a header byte of the cryptogram changed (mode of use B -> N, or the like)
    blob = bytearray(a.blob)
    blob[len(blob) // 3] ^= 0x01
    with pytest.raises((InvalidKeyBlock, KeyUsageViolation)):
        backend.execute(Kcv(key=dataclasses.replace(a, blob=bytes(blob))))
    # 3. two rows of the same type swap cryptograms (and KCVs)
    with pytest.raises((KeyUsageViolation, InvalidKeyBlock)):
        backend.execute(Kcv(key=dataclasses.replace(a, blob=b.blob, kcv=b.kcv)))
    with pytest.raises((KeyUsageViolation, InvalidKeyBlock)):
        backend.execute(Kcv(key=dataclasses.replace(a, blob=b.blob)))


# -- MACs -----------------------------------------------------------------------------


def _mak(backend: Backend, alg: Algorithm, usage: KeyUsage, mac_alg: MacAlgorithm) -> tuple[KeyCryptogram, bytes]:
    """A MAK formed for ``mac_alg``, and its clear key; skipped where the backend lacks them."""
    needs(backend, Command.GENERATE_MAC, alg)
    if mac_alg not in backend.capabilities.mac_algorithms:
        pytest.skip(f"backend lacks {mac_alg.value}")
    return form(backend, KeyType.MAK, alg, usage)


@pytest.mark.parametrize(
    "alg,usage,mac_alg",
    [
        (Algorithm.TDES_2KEY, KeyUsage.MAC_ISO9797_ALG1, MacAlgorithm.ISO9797_ALG1),
        (Algorithm.AES_128, KeyUsage.MAC_ISO9797_ALG1, MacAlgorithm.ISO9797_ALG1),
        (Algorithm.TDES_2KEY, KeyUsage.MAC_ISO9797_ALG3, MacAlgorithm.ISO9797_ALG3),
        (Algorithm.AES_256, KeyUsage.MAC_CMAC, MacAlgorithm.CMAC),
        (Algorithm.TDES_2KEY, KeyUsage.MAC_CMAC, MacAlgorithm.CMAC),
        (Algorithm.SM4, KeyUsage.MAC_CMAC, MacAlgorithm.CMAC),
        (Algorithm.AES_256, KeyUsage.MAC_HMAC, MacAlgorithm.HMAC_SHA256),
        (Algorithm.SM4, KeyUsage.MAC_HMAC, MacAlgorithm.HMAC_SM3),
    ],
)
def test_mac_against_independent_computation(
    backend: Backend, alg: Algorithm, usage: KeyUsage, mac_alg: MacAlgorithm
) -> None:
    mak, k = _mak(backend, alg, usage, mac_alg)
    data = secrets.token_bytes(37)
    tag = backend.execute(GenerateMac(key=mak, data=data, algorithm=mac_alg, padding=Padding.METHOD_1))
    if mac_alg is MacAlgorithm.ISO9797_ALG1:
        want = cbc_mac(alg, k, data)
    elif mac_alg is MacAlgorithm.ISO9797_ALG3:
        want = retail_mac(k, data)
    elif mac_alg is MacAlgorithm.CMAC:
        want = cmac(alg, k, data)
    else:
        hm = hmac.HMAC(k, hashes.SHA256() if mac_alg is MacAlgorithm.HMAC_SHA256 else hashes.SM3())
        hm.update(data)
        want = hm.finalize()
    assert tag == want
    n = 16 if usage is KeyUsage.MAC_HMAC else 8
    backend.execute(VerifyMac(key=mak, data=data, mac=tag[:n], algorithm=mac_alg, padding=Padding.METHOD_1))
    bad = bytes([tag[0] ^ 1]) + tag[1:n]
    with pytest.raises(VerificationFailed):
        backend.execute(VerifyMac(key=mak, data=data, mac=bad, algorithm=mac_alg, padding=Padding.METHOD_1))


@pytest.mark.parametrize(
    "alg,usage,mac_alg",
    [
        (Algorithm.TDES_2KEY, KeyUsage.MAC_ISO9797_ALG3, MacAlgorithm.ISO9797_ALG3),
        (Algorithm.AES_128, KeyUsage.MAC_ISO9797_ALG1, MacAlgorithm.ISO9797_ALG1),
        (Algorithm.AES_256, KeyUsage.MAC_HMAC, MacAlgorithm.HMAC_SHA256),
    ],
)
def test_mac_batches_give_what_single_macs_do_item_by_item(
    backend: Backend, alg: Algorithm, usage: KeyUsage, mac_alg: MacAlgorithm
) -> None:
    mak, _ = _mak(backend, alg, usage, mac_alg)
    too_long = bytes((1 << 20) + 1)
    messages = [secrets.token_bytes(n) for n in (0, 1, 8, 37, 64)] + [too_long, b"last"]
    out = backend.execute(GenerateMacs(key=mak, messages=messages, algorithm=mac_alg,
                                       padding=Padding.METHOD_2))
    assert len(out) == len(messages)
    for m, tag in zip(messages, out):
        if m is too_long:
            assert isinstance(tag, InvalidInput) and tag.field == "data"
        else:
            assert tag == backend.execute(GenerateMac(key=mak, data=m, algorithm=mac_alg,
                                                      padding=Padding.METHOD_2))
    tags = [t if isinstance(t, bytes) else bytes(8) for t in out]
    n = 16 if usage is KeyUsage.MAC_HMAC else 8
    presented = [t[:n] for t in tags]
    presented[1] = bytes([presented[1][0] ^ 1]) + presented[1][1:]  # a wrong tag
    presented[2] = presented[2][:3]  # too short to verify
    verified = backend.execute(VerifyMacs(key=mak, messages=messages, macs=presented, algorithm=mac_alg,
                                          padding=Padding.METHOD_2))
    assert verified[0] is True and verified[1] is False and verified[3:5] == [True, True] and verified[6] is True
    assert isinstance(verified[2], InvalidInput) and verified[2].field == "mac"
    assert isinstance(verified[5], InvalidInput) and verified[5].field == "data"
    with pytest.raises(InvalidInput):
        backend.execute(VerifyMacs(key=mak, messages=messages, macs=presented[:-1], algorithm=mac_alg,
                                   padding=Padding.METHOD_2))
    # The key's binding holds for the whole batch, as for one MAC.
    zpk, _ = form(backend, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    with pytest.raises(KeyUsageViolation):
        backend.execute(GenerateMacs(key=zpk, messages=[b"data"], algorithm=MacAlgorithm.ISO9797_ALG1,
                                     padding=Padding.METHOD_1))


# -- data -----------------------------------------------------------------------------


@pytest.mark.parametrize("alg", [Algorithm.TDES_2KEY, Algorithm.AES_256, Algorithm.SM4])
def test_data_encryption_against_independent_cbc(backend: Backend, alg: Algorithm) -> None:
    needs(backend, Command.ENCRYPT_DATA, alg)
    dek, k = form(backend, KeyType.DEK, alg, KeyUsage.DATA)
    iv, data = secrets.token_bytes(alg.block_size), secrets.token_bytes(4 * alg.block_size)
    cbc = FieldParams(CipherMode.CBC, iv, DataPadding.NONE)
    ct = backend.execute(EncryptData(key=dek, params=cbc, data=data))
    ctx = Cipher(primitive(alg, k), modes.CBC(iv)).encryptor()
    assert ct == ctx.update(data) + ctx.finalize()
    assert backend.execute(DecryptData(key=dek, params=cbc, data=ct)) == data
    with pytest.raises(InvalidInput):
        backend.execute(EncryptData(key=dek, params=cbc, data=data[:-1]))
    # Padded ECB of a short field, checked against pyca's PKCS#7 padder.
    ecb_p = FieldParams(CipherMode.ECB, b"", DataPadding.PKCS7)
    padder = sym_padding.PKCS7(alg.block_size * 8).padder()
    field = b"6222021234567890123"
    padded = padder.update(field) + padder.finalize()
    assert backend.execute(EncryptData(key=dek, params=ecb_p, data=field)) == ecb(alg, k, padded)
    assert backend.execute(DecryptData(key=dek, params=ecb_p, data=ecb(alg, k, padded))) == field


@pytest.mark.parametrize(("alg", "mode", "padding"), [
    (Algorithm.AES_256, CipherMode.GCM, DataPadding.NONE),
    (Algorithm.TDES_2KEY, CipherMode.CBC, DataPadding.PKCS7),
    (Algorithm.SM4, CipherMode.ECB, DataPadding.ISO9797_M2),
])
def test_field_batches_give_what_single_fields_do_item_by_item(
    backend: Backend, alg: Algorithm, mode: CipherMode, padding: DataPadding
) -> None:
    needs(backend, Command.ENCRYPT_DATA, alg)
    if mode not in backend.capabilities.data_modes:
        pytest.skip(f"backend lacks {mode.value}")
    dek, _ = form(backend, KeyType.DEK, alg, KeyUsage.DATA)
    aad = b"batch-7" if mode is CipherMode.GCM else b""
    size = 12 if mode is CipherMode.GCM else alg.block_size if mode is CipherMode.CBC else 0
    too_long = bytes((1 << 20) + 1)
    plaintexts = [b"6222021234567890123", b"", too_long, b"000000012345"]
    ivs = [secrets.token_bytes(size) for _ in plaintexts]
    params = FieldParams(mode, b"", padding, aad)
    out = backend.execute(EncryptFields(key=dek, params=params, ivs=ivs, plaintexts=plaintexts))
    assert len(out) == len(plaintexts)
    for iv, pt, ct in zip(ivs, plaintexts, out):
        if pt is too_long:
            assert isinstance(ct, InvalidInput) and ct.field == "data"
        else:
            assert isinstance(ct, bytes)
            one = FieldParams(mode, iv, padding, aad)
            assert ct == backend.execute(EncryptData(key=dek, params=one, data=pt))
            assert backend.execute(DecryptData(key=dek, params=one, data=ct)) == pt
    with pytest.raises(InvalidInput):
        backend.execute(EncryptFields(key=dek, params=params, ivs=ivs[:-1], plaintexts=plaintexts))
    # The key's binding holds for the whole batch, as for one field.
    zpk, _ = form(backend, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    with pytest.raises(KeyUsageViolation):
        backend.execute(EncryptFields(key=zpk, params=FieldParams(CipherMode.ECB, b"", DataPadding.PKCS7),
                                      ivs=[b""], plaintexts=[b"x"]))


@pytest.mark.parametrize("alg", [Algorithm.AES_128, Algorithm.SM4])
def test_gcm_field_against_independent_gcm(backend: Backend, alg: Algorithm) -> None:
    needs(backend, Command.ENCRYPT_DATA, alg)
    if CipherMode.GCM not in backend.capabilities.data_modes:
        pytest.skip("backend lacks GCM")
    dek, k = form(backend, KeyType.DEK, alg, KeyUsage.DATA)
    iv, aad, field = secrets.token_bytes(12), b"txn-42", b"amount=000000012345"
    gcm = FieldParams(CipherMode.GCM, iv, DataPadding.NONE, aad)
    ct = backend.execute(EncryptData(key=dek, params=gcm, data=field))
    enc = Cipher(primitive(alg, k), modes.GCM(iv)).encryptor()
    enc.authenticate_additional_data(aad)
    assert ct == enc.update(field) + enc.finalize() + enc.tag
    assert backend.execute(DecryptData(key=dek, params=gcm, data=ct)) == field
    with pytest.raises(InvalidInput, match="ciphertext invalid"):
        backend.execute(DecryptData(key=dek, params=gcm, data=ct[:-1] + bytes([ct[-1] ^ 1])))
    tdes, _ = form(backend, KeyType.DEK, Algorithm.TDES_2KEY, KeyUsage.DATA)
    with pytest.raises(InvalidInput, match="GCM"):
        backend.execute(EncryptData(key=tdes, params=FieldParams(CipherMode.GCM, iv, DataPadding.NONE),
                                    data=field))


def test_reencrypt_field_between_deks(backend: Backend) -> None:
    needs(backend, Command.REENCRYPT_DATA, Algorithm.TDES_2KEY, Algorithm.AES_128)
    a, ka = form(backend, KeyType.DEK, Algorithm.TDES_2KEY, KeyUsage.DATA)
    b, kb = form(backend, KeyType.DEK, Algorithm.AES_128, KeyUsage.DATA)
    field = secrets.token_bytes(16)
    src = FieldParams(CipherMode.ECB, b"", DataPadding.NONE)
    iv = secrets.token_bytes(16)
    dst = FieldParams(CipherMode.CBC, iv, DataPadding.PKCS7)
    out = backend.execute(ReencryptData(src=a, src_params=src, dst=b, dst_params=dst,
                                        data=ecb(Algorithm.TDES_2KEY, ka, field)))
    dec = Cipher(primitive(Algorithm.AES_128, kb), modes.CBC(iv)).decryptor()
    assert (dec.update(out) + dec.finalize())[:16] == field
    with pytest.raises(InvalidInput, match="source_padding"):
        backend.execute(ReencryptData(src=a, src_params=FieldParams(CipherMode.ECB, b"", DataPadding.PKCS7),
                                      dst=b, dst_params=dst, data=bytes(16)))


def test_encrypt_only_dek_cannot_decrypt(backend: Backend) -> None:
    dek, _ = form(backend, KeyType.DEK, Algorithm.AES_128, KeyUsage.DATA, ModeOfUse.ENCRYPT_ONLY)
    with pytest.raises(KeyUsageViolation):
        backend.execute(DecryptData(key=dek, params=FieldParams(CipherMode.CBC, bytes(16), DataPadding.NONE),
                                    data=bytes(16)))


def test_pan_hash_is_keyed_and_stable(backend: Backend) -> None:
    from hsmsvc.hsm.domains import PAN_DOMAIN
    from tests.hsm.components_env import LMK

    a = backend.execute(PanHash(pan=PAN))
    assert a == backend.execute(PanHash(pan=PAN)) and a != backend.execute(PanHash(pan=PAN[:-1] + "0"))
    # AES-CMAC under the LMK (SP 800-38B), computed here by pyca, call after call.
    for pan in (PAN, "5413330089020011", PAN):
        c = pyca_cmac.CMAC(algorithms.AES(LMK))
        c.update(PAN_DOMAIN + pan.encode())
        assert backend.execute(PanHash(pan=pan)) == c.finalize()
    assert PAN.encode() not in a and len(a) == 16
    with pytest.raises(InvalidInput, match="pan"):
        backend.execute(PanHash(pan="12ab"))
    other = "5413330089020011"
    assert backend.execute(PanHashes(pans=[PAN, other, PAN])) == [a, backend.execute(PanHash(pan=other)), a]
    assert backend.execute(PanHashes(pans=[])) == []
    for bad in ("12ab", "1" * 10, "1" * 20, "٣" * 13):  # 11 digits: a PVV's
        with pytest.raises(InvalidInput, match="pan"):
            backend.execute(PanHashes(pans=[PAN, bad]))


# -- stored PINs and PIN verification -------------------------------------------------


@pytest.mark.parametrize(
    "alg,usage",
    [(Algorithm.AES_256, KeyUsage.PIN_ENCRYPTION), (Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION),
     (Algorithm.AES_256, KeyUsage.MAC_HMAC)],
)
def test_stored_pin_round_trip(backend: Backend, alg: Algorithm, usage: KeyUsage) -> None:
    needs(backend, Command.ENCRYPT_PIN_FOR_STORAGE, alg)
    tpk, k = form(backend, KeyType.TPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    psk, _ = form(backend, KeyType.PSK, alg, usage)
    block = ecb(Algorithm.TDES_2KEY, k, iso0(PIN, PAN))
    wrong = ecb(Algorithm.TDES_2KEY, k, iso0("9999", PAN))
    account = PAN
    stored = backend.execute(EncryptPinForStorage(pin=PinBlock(block, PinBlockFormat.ISO_0, PAN), key=tpk,
                                                  psk=psk, account=account))
    assert PIN.encode() not in stored.value and repr(stored) == f"StoredPin({stored.method.value})"
    backend.execute(VerifyPinStored(pin=PinBlock(block, PinBlockFormat.ISO_0, PAN), key=tpk, psk=psk,
                                    account=account, stored=stored))
    with pytest.raises(VerificationFailed):
        backend.execute(VerifyPinStored(pin=PinBlock(wrong, PinBlockFormat.ISO_0, PAN), key=tpk, psk=psk,
                                        account=account, stored=stored))
    if stored.method is StoredPinMethod.ENCRYPTED:
        psk2, _ = form(backend, KeyType.PSK, alg, usage)
        moved = backend.execute(ReencryptStoredPin(stored=stored, old_psk=psk, new_psk=psk2, account=account))
        backend.execute(VerifyPinStored(pin=PinBlock(block, PinBlockFormat.ISO_0, PAN), key=tpk, psk=psk2,
                                        account=account, stored=moved))
        with pytest.raises(VerificationFailed):
            backend.execute(VerifyPinStored(pin=PinBlock(block, PinBlockFormat.ISO_0, PAN), key=tpk, psk=psk,
                                            account=account, stored=moved))
    else:
        with pytest.raises(KeyUsageViolation):
            backend.execute(ReencryptStoredPin(stored=stored, old_psk=psk, new_psk=psk, account=account))


def _one_by_one(backend: Backend, blocks: list[bytes], key: KeyCryptogram, pans: list[str],
                psk: KeyCryptogram, accounts: list[str], stored: list[StoredPin]) -> list[object]:
    out: list[object] = []
    for b, pan, account, st in zip(blocks, pans, accounts, stored):
        try:
            backend.execute(VerifyPinStored(pin=PinBlock(b, PinBlockFormat.ISO_0, pan), key=key, psk=psk,
                                            account=account, stored=st))
        except VerificationFailed:
            out.append(False)
        except (InvalidPinBlock, InvalidInput) as e:
            out.append(type(e))
        else:
            out.append(True)
    return out


def test_verify_pins_stored_answers_as_one_by_one(backend: Backend) -> None:
    """The batch (vectorised for TDES format 0 PSKs) gives each item what a single check gives,
    against blocks and stored PINs enciphered here by pyca."""
    needs(backend, Command.VERIFY_PIN_STORED, Algorithm.TDES_2KEY)
    zpk, k = form(backend, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    psk, pk = form(backend, KeyType.PSK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    other = "4000001234567899"
    rows = [  # (PIN sent, PAN, account, PIN stored for the account, expected)
        (PIN, PAN, PAN, PIN, True),
        ("9999", PAN, PAN, PIN, False),
        (None, PAN, PAN, PIN, InvalidPinBlock),  # a random block
        ("123456789012", other, "6222020200000000011", "123456789012", True),  # account is not the PAN
        (PIN, other, other, None, False),  # a stored value that does not decode
        (PIN, PAN, other, PIN, False),  # stored for another account than the one given
        ("12345", other, other, "1234", False),
    ]
    blocks = [ecb(Algorithm.TDES_2KEY, k, iso0(pin, pan)) if pin else secrets.token_bytes(8)
              for pin, pan, _, _, _ in rows]
    values = [ecb(Algorithm.TDES_2KEY, pk, iso0(kept, acct if i != 5 else PAN)) if kept else secrets.token_bytes(8)
              for i, (_, _, acct, kept, _) in enumerate(rows)]
    pans, accounts = [r[1] for r in rows], [r[2] for r in rows]
    stored = [StoredPin(StoredPinMethod.ENCRYPTED, v) for v in values]
    want = [r[4] for r in rows]
    got = backend.execute(VerifyPinsStored(blocks=b"".join(blocks), key=zpk, format=PinBlockFormat.ISO_0,
                                           pans=pans, psk=psk, accounts=accounts, stored=stored))
    assert [r if isinstance(r, bool) else type(r) for r in got] == want
    assert _one_by_one(backend, blocks, zpk, pans, psk, accounts, stored) == want
    # All good: the whole run in one comparison.
    assert backend.execute(VerifyPinsStored(blocks=blocks[0] * 300, key=zpk, format=PinBlockFormat.ISO_0,
                                            pans=[PAN] * 300, psk=psk, accounts=[PAN] * 300,
                                            stored=[stored[0]] * 300)) == [True] * 300
    # A malformed PAN is that item's error alone; the rest are still checked.
    bad_pans = [*pans[:1], "40123456789ab", *pans[2:]]
    got = backend.execute(VerifyPinsStored(blocks=b"".join(blocks), key=zpk, format=PinBlockFormat.ISO_0,
                                           pans=bad_pans, psk=psk, accounts=accounts, stored=stored))
    assert [r if isinstance(r, bool) else type(r) for r in got] == [True, InvalidInput, *want[2:]]
    assert backend.execute(VerifyPinsStored(blocks=b"", key=zpk, format=PinBlockFormat.ISO_0, pans=[],
                                            psk=psk, accounts=[], stored=[])) == []
    # Key errors refuse the batch: a PSK is no PIN-block key, and a digest is not what this PSK holds.
    with pytest.raises(KeyUsageViolation):
        backend.execute(VerifyPinsStored(blocks=b"".join(blocks), key=psk, format=PinBlockFormat.ISO_0,
                                         pans=pans, psk=psk, accounts=accounts, stored=stored))
    with pytest.raises(KeyUsageViolation):
        backend.execute(VerifyPinsStored(blocks=blocks[0], key=zpk, format=PinBlockFormat.ISO_0, pans=[PAN],
                                         psk=psk, accounts=[PAN],
                                         stored=[StoredPin(StoredPinMethod.DIGEST, bytes(32))]))
    with pytest.raises(InvalidInput, match="pin_blocks"):
        backend.execute(VerifyPinsStored(blocks=blocks[0], key=zpk, format=PinBlockFormat.ISO_0,
                                         pans=[PAN, PAN], psk=psk, accounts=[PAN, PAN], stored=stored[:2]))


@pytest.mark.parametrize("alg,usage", [(Algorithm.AES_256, KeyUsage.PIN_ENCRYPTION),
                                       (Algorithm.AES_256, KeyUsage.MAC_HMAC)])
def test_verify_pins_stored_item_by_item_for_other_psks(backend: Backend, alg: Algorithm, usage: KeyUsage) -> None:
    """Format 4 storage and keyed digests take the item-by-item path, with the same answers."""
    needs(backend, Command.VERIFY_PIN_STORED, Algorithm.TDES_2KEY, alg)
    zpk, k = form(backend, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    psk, _ = form(backend, KeyType.PSK, alg, usage)
    right = ecb(Algorithm.TDES_2KEY, k, iso0(PIN, PAN))
    kept = backend.execute(EncryptPinForStorage(pin=PinBlock(right, PinBlockFormat.ISO_0, PAN), key=zpk,
                                                psk=psk, account=PAN))
    blocks = [right, ecb(Algorithm.TDES_2KEY, k, iso0("4322", PAN)), secrets.token_bytes(8)]
    args = (zpk, [PAN] * 3, psk, [PAN] * 3, [kept] * 3)
    got = backend.execute(VerifyPinsStored(blocks=b"".join(blocks), key=zpk, format=PinBlockFormat.ISO_0,
                                           pans=[PAN] * 3, psk=psk, accounts=[PAN] * 3, stored=[kept] * 3))
    assert [r if isinstance(r, bool) else type(r) for r in got] == [True, False, InvalidPinBlock]
    assert _one_by_one(backend, blocks, *args) == [True, False, InvalidPinBlock]


def test_ibm3624_and_pvv_verification(backend: Backend) -> None:
    needs(backend, Command.VERIFY_PIN_IBM3624, Algorithm.TDES_2KEY)
    from hsmsvc.crypto import ibm3624, pvv
    from hsmsvc.crypto._cipher import BlockCipher

    table, vdata = "0123456789012345", "1234567890123445"
    tpk, k = form(backend, KeyType.TPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    ibm, ibm_k = form(backend, KeyType.PVK, Algorithm.TDES_2KEY, KeyUsage.PIN_VERIFICATION_IBM3624,
                      decimalization_table=table)
    visa, visa_k = form(backend, KeyType.PVK, Algorithm.TDES_2KEY, KeyUsage.PIN_VERIFICATION_VISA_PVV)
    block = ecb(Algorithm.TDES_2KEY, k, iso0(PIN, PAN))
    wrong = ecb(Algorithm.TDES_2KEY, k, iso0("4321", PAN))
    offset = ibm3624.generate_offset(BlockCipher(Algorithm.TDES_2KEY, ibm_k), validation_data=vdata, table=table,
                                     pin=PIN)
    assert backend.execute(GeneratePinOffset(pin=PinBlock(block, PinBlockFormat.ISO_0, PAN), key=tpk, pvk=ibm,
                                             validation_data=vdata)) == offset
    backend.execute(VerifyPinIbm3624(pin=PinBlock(block, PinBlockFormat.ISO_0, PAN), key=tpk, pvk=ibm,
                                     validation_data=vdata, offset=offset))
    with pytest.raises(VerificationFailed):
        backend.execute(VerifyPinIbm3624(pin=PinBlock(wrong, PinBlockFormat.ISO_0, PAN), key=tpk, pvk=ibm,
                                         validation_data=vdata, offset=offset))
    with pytest.raises(KeyUsageViolation):  # a PVV key is not an IBM key
        backend.execute(VerifyPinIbm3624(pin=PinBlock(block, PinBlockFormat.ISO_0, PAN), key=tpk, pvk=visa,
                                         validation_data=vdata, offset=offset))
    v = pvv.generate_pvv(BlockCipher(Algorithm.TDES_2KEY, visa_k), PAN, 1, PIN)
    assert backend.execute(GeneratePvv(pin=PinBlock(block, PinBlockFormat.ISO_0, PAN), key=tpk, pvk=visa,
                                       pvki=1)) == v
    backend.execute(VerifyPinPvv(pin=PinBlock(block, PinBlockFormat.ISO_0, PAN), key=tpk, pvk=visa, pvki=1,
                                 pvv=v))
    with pytest.raises(VerificationFailed):
        backend.execute(VerifyPinPvv(pin=PinBlock(wrong, PinBlockFormat.ISO_0, PAN), key=tpk, pvk=visa,
                                     pvki=1, pvv=v))
    verify_only, _ = form(backend, KeyType.PVK, Algorithm.TDES_2KEY, KeyUsage.PIN_VERIFICATION_VISA_PVV,
                          ModeOfUse.MAC_VERIFY_ONLY)
    with pytest.raises(KeyUsageViolation):
        backend.execute(GeneratePvv(pin=PinBlock(block, PinBlockFormat.ISO_0, PAN), key=tpk, pvk=verify_only,
                                    pvki=1))


@pytest.mark.parametrize("table", ["0000000000000000", "0123456789", "012345678901234A", ""])
def test_ibm_pvk_needs_a_full_decimalization_table(table: str) -> None:
    with pytest.raises(InvalidInput, match="decimalization_table"):
        KeySpec("p", 1, KeyType.PVK, Algorithm.TDES_2KEY, KeyUsage.PIN_VERIFICATION_IBM3624,
                decimalization_table=table)
    with pytest.raises(InvalidInput, match="decimalization_table"):
        KeySpec("p", 1, KeyType.PVK, Algorithm.TDES_2KEY, KeyUsage.PIN_VERIFICATION_VISA_PVV,
                decimalization_table="0123456789012345")


# -- keys across a ZMK / TMK ------------------------------------------------------------


V = LegacyForm.HSMSVC_VARIANT


def test_export_import_ecb_under_zmk(backend: Backend) -> None:
    needs(backend, Command.EXPORT_KEY, Algorithm.TDES_3KEY)
    zmk, zmk_clear = form(backend, KeyType.ZMK, Algorithm.TDES_3KEY, KeyUsage.KEK)
    zpk, zpk_clear = form(backend, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION,
                          exportability=Exportability.EXPORTABLE)
    wrapped = backend.execute(ExportKey(kek=zmk, key=zpk, form=V))
    assert wrapped == ecb(Algorithm.TDES_3KEY, variant(zmk_clear, 0x6A), zpk_clear)
    spec = KeySpec("imported", 1, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    back = backend.execute(ImportKey(kek=zmk, wrapped=wrapped, spec=spec, kcv=zpk.kcv, form=V))
    assert back.kcv == zpk.kcv
    with pytest.raises(InvalidKeyBlock, match="^key_block: key block invalid$"):
        backend.execute(ImportKey(kek=zmk, wrapped=wrapped, spec=spec, kcv=bytes(3), form=V))
    # A K0 KEK works only in the form chosen for it; a K1 in none.
    with pytest.raises(KeyUsageViolation, match="no legacy form"):
        backend.execute(ImportKey(kek=zmk, wrapped=wrapped, spec=spec, kcv=zpk.kcv))


def test_import_ecb_under_zmk_from_independent_wrap(backend: Backend) -> None:
    needs(backend, Command.IMPORT_KEY, Algorithm.TDES_3KEY)
    zmk, zmk_clear = form(backend, KeyType.ZMK, Algorithm.TDES_3KEY, KeyUsage.KEK)
    zpk_clear = clear_key(Algorithm.TDES_2KEY)
    wrapped = ecb(Algorithm.TDES_3KEY, variant(zmk_clear, 0x6A), zpk_clear)
    spec = KeySpec("zpk-from-peer", 1, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    want_kcv = ecb(Algorithm.TDES_2KEY, zpk_clear, bytes(8))[:3]
    zpk = backend.execute(ImportKey(kek=zmk, wrapped=wrapped, spec=spec, kcv=want_kcv, form=V))
    assert zpk.kcv == want_kcv
    tpk, tpk_clear = form(backend, KeyType.TPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    out = backend.execute(TranslatePin(pin=PinBlock(ecb(Algorithm.TDES_2KEY, tpk_clear, iso0(PIN, PAN)),
                                                    PinBlockFormat.ISO_0, PAN),
                                       src=tpk, dst=zpk, dst_format=PinBlockFormat.ISO_0))
    assert ecb(Algorithm.TDES_2KEY, zpk_clear, out, decrypt=True) == iso0(PIN, PAN)
    with pytest.raises(InvalidKeyBlock):
        backend.execute(ImportKey(kek=zmk, wrapped=wrapped, spec=spec, kcv=bytes(3), form=V))
    mak_spec = KeySpec("mak-from-peer", 1, KeyType.TAK, Algorithm.TDES_2KEY, KeyUsage.MAC_ISO9797_ALG1)
    with pytest.raises(KeyUsageViolation, match="may not carry"):
        backend.execute(ImportKey(kek=zmk, wrapped=wrapped, spec=mak_spec, form=V))


def test_ecb_form_variants_keep_a_zpk_from_becoming_a_dek(backend: Backend) -> None:
    needs(backend, Command.EXPORT_KEY, Algorithm.AES_256)
    zmk, zmk_clear = form(backend, KeyType.ZMK, Algorithm.AES_256, KeyUsage.KEK)
    zpk, zpk_clear = form(backend, KeyType.ZPK, Algorithm.AES_128, KeyUsage.PIN_ENCRYPTION,
                          exportability=Exportability.EXPORTABLE)
    wrapped = backend.execute(ExportKey(kek=zmk, key=zpk, form=V))
    assert ecb(Algorithm.AES_256, variant(zmk_clear, 0x6A), wrapped, decrypt=True) == zpk_clear
    dek = KeySpec("dek-in", 1, KeyType.DEK, Algorithm.AES_128, KeyUsage.DATA)
    with pytest.raises(InvalidKeyBlock):
        backend.execute(ImportKey(kek=zmk, wrapped=wrapped, spec=dek, kcv=zpk.kcv, form=V))
    assert backend.execute(ImportKey(kek=zmk, wrapped=wrapped,
                                     spec=dek, form=V)).kcv != zpk.kcv  # a different, useless key


def test_key_sync_mac_is_cmac_under_the_derived_key(backend: Backend) -> None:
    needs(backend, Command.KEY_SYNC_MAC)
    for alg in (Algorithm.AES_256, Algorithm.TDES_2KEY):
        zmk, clear = form(backend, KeyType.ZMK, alg, KeyUsage.KBPK if alg.is_aes else KeyUsage.KEK)
        assert backend.execute(KeySyncMac(kek=zmk, data=b"notice")) == key_sync_mac(alg, clear, b"notice")
    zpk, _ = form(backend, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    with pytest.raises(KeyUsageViolation):
        backend.execute(KeySyncMac(kek=zpk, data=b"notice"))


def test_export_refuses_non_exportable_and_weaker_kek(backend: Backend) -> None:
    needs(backend, Command.EXPORT_KEY)
    zmk, _ = form(backend, KeyType.ZMK, Algorithm.TDES_2KEY, KeyUsage.KEK)
    zpk, _ = form(backend, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    with pytest.raises(KeyUsageViolation, match="not exportable"):
        backend.execute(ExportKey(kek=zmk, key=zpk, form=V))
    strong, _ = form(backend, KeyType.ZPK, Algorithm.TDES_3KEY, KeyUsage.PIN_ENCRYPTION,
                     exportability=Exportability.EXPORTABLE)
    with pytest.raises(KeyUsageViolation, match="weaker"):
        backend.execute(ExportKey(kek=zmk, key=strong, form=V))
    tpk, _ = form(backend, KeyType.TPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION,
                  exportability=Exportability.EXPORTABLE)
    with pytest.raises(KeyUsageViolation, match="may not carry"):
        backend.execute(ExportKey(kek=zmk, key=tpk, form=V))


def test_tr31_export_import_under_kbpk(backend: Backend) -> None:
    needs(backend, Command.EXPORT_KEY, Algorithm.AES_256)
    from hsmsvc.crypto import tr31

    kbpk, kbpk_clear = form(backend, KeyType.ZMK, Algorithm.AES_256, KeyUsage.KBPK)
    mak, mak_clear = form(backend, KeyType.MAK, Algorithm.AES_128, KeyUsage.MAC_CMAC,
                          exportability=Exportability.EXPORTABLE)
    block = backend.execute(ExportKey(kek=kbpk, key=mak))
    header, clear = tr31.unwrap(kbpk_clear, block.decode())
    assert clear == mak_clear and header.usage is KeyUsage.MAC_CMAC
    spec = KeySpec("mak-in", 1, KeyType.MAK, Algorithm.AES_128, KeyUsage.MAC_CMAC)
    assert backend.execute(ImportKey(kek=kbpk, wrapped=block, spec=spec)).kcv == mak.kcv
    wrong = KeySpec("zpk-in", 1, KeyType.ZPK, Algorithm.AES_128, KeyUsage.PIN_ENCRYPTION)
    with pytest.raises(KeyUsageViolation):
        backend.execute(ImportKey(kek=kbpk, wrapped=block, spec=wrong))


# -- the rest -------------------------------------------------------------------------


def test_random_audit_mac_and_anchor(backend: Backend) -> None:
    assert (len(backend.execute(Random(length=32))) == 32
            and backend.execute(Random(length=16)) != backend.execute(Random(length=16)))
    with pytest.raises(InvalidInput):
        backend.execute(Random(length=0))
    assert (backend.execute(AuditMac(data=b"x")) == backend.execute(AuditMac(data=b"x"))
            != backend.execute(AuditMac(data=b"y")))
    backend.execute(WriteAuditAnchor(seq=7, head=b"\x01" * 32))
    backend.execute(WriteAuditAnchor(seq=5, head=b"\x02" * 32))  # never moves back
    assert backend.execute(ReadAuditAnchor()) == (7, b"\x01" * 32)
    a, b = "ab" * 16, "cd" * 16  # one LMK, two stores: an anchor each
    backend.execute(WriteAuditAnchor(seq=3, head=b"\x03" * 32, store=a))
    assert backend.execute(ReadAuditAnchor(store=a)) == (3, b"\x03" * 32)
    assert backend.execute(ReadAuditAnchor(store=b)) is None
    with pytest.raises(InvalidInput):
        backend.execute(ReadAuditAnchor(store="../../etc/x"))


def test_unsupported_commands_are_refused_by_name(backend: Backend) -> None:
    if Command.EXPORT_KEY not in backend.capabilities.commands:
        zmk, _ = form(backend, KeyType.ZMK, Algorithm.TDES_3KEY, KeyUsage.KEK)
        with pytest.raises(Unsupported, match="EXPORT_KEY is not supported"):
            backend.execute(ExportKey(kek=zmk, key=zmk, form=V))
    missing = [a for a in Algorithm if a not in backend.capabilities.algorithms]
    if not missing:
        pytest.skip("backend supports every algorithm")
    spec = KeySpec("x", 1, KeyType.DEK, missing[0], KeyUsage.DATA)
    with pytest.raises(Unsupported, match=f"GENERATE_KEY with {missing[0].value}"):
        backend.execute(GenerateKey(spec=spec))


def test_errors_carry_no_secret(backend: Backend) -> None:
    tpk, k = form(backend, KeyType.TPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    zpk, _ = form(backend, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    block = ecb(Algorithm.TDES_2KEY, k, iso0(PIN, PAN))
    calls = [
        lambda: backend.execute(TranslatePin(pin=PinBlock(block, PinBlockFormat.ISO_0, "4012345678817"),
                                             src=tpk, dst=zpk, dst_format=PinBlockFormat.ISO_0)),
        lambda: backend.execute(TranslatePin(pin=PinBlock(block[:7], PinBlockFormat.ISO_0, PAN), src=tpk,
                                             dst=zpk, dst_format=PinBlockFormat.ISO_0)),
        lambda: backend.execute(GenerateMac(key=zpk, data=block, algorithm=MacAlgorithm.CMAC,
                                            padding=Padding.METHOD_1)),
        lambda: backend.execute(Kcv(key=dataclasses.replace(zpk, blob=zpk.blob[:-2]))),
    ]
    for call in calls:
        with pytest.raises(HsmsvcError) as e:
            call()
        text = f"{e.value} {e.value!r} {e.value.args}"
        for secret in (PIN, k.hex(), k.hex().upper(), PAN):
            assert secret not in text
