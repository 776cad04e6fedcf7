"""PIN blocks under a terminal's one-time key, wrapped under a KTK (bank design 004 clause 5.2.4(2)).

The terminal side is computed independently: RSA-OAEP with pyca/cryptography,
SM2 with the OpenSSL command line, PIN blocks with pyca's ciphers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from hsmsvc.crypto import pinblock, sm2
from hsmsvc.crypto._cipher import BlockCipher
from hsmsvc.errors import InvalidInput, InvalidPinBlock, KeyUsageViolation, Unsupported, VerificationFailed
from hsmsvc.hsm.backend import Backend
from hsmsvc.hsm.model import LegacyForm, PinBlock, Command, KeySpec, OneTimeKey, StoredPinMethod
from hsmsvc.types import Algorithm, Exportability, KeyType, KeyUsage, MacAlgorithm, ModeOfUse, Padding, PinBlockFormat
from tests.hsm.helpers import PAN, PIN, clear_key, form, ktk, terminal_wrap
from tests.reference import ecb, iso0
from hsmsvc.hsm.commands import (
    EncryptPinForStorage, ExportKey, FormKey, GenerateKey, GenerateMac, Kcv, PublicKey, TranslatePin, VerifyPinStored,
)


def test_public_key_and_fingerprint(backend: Backend) -> None:
    for alg in (Algorithm.RSA_2048, Algorithm.SM2):
        k = ktk(backend, alg)
        der = backend.execute(PublicKey(key=k))
        digest = sm2.sm3(der) if alg is Algorithm.SM2 else hashlib.sha256(der).digest()
        assert k.kcv == digest[:8] == backend.execute(Kcv(key=k))
        if alg is Algorithm.RSA_2048:
            assert serialization.load_der_public_key(der).key_size == 2048  # type: ignore[union-attr]
        else:
            sm2.public_key_from_der(der)
        assert b"PRIVATE" not in repr(k).encode() and der.hex() not in repr(k)


@pytest.mark.parametrize(
    "ktk_alg, ot_alg, fmt",
    [
        (Algorithm.RSA_2048, Algorithm.TDES_2KEY, PinBlockFormat.ISO_0),
        (Algorithm.RSA_3072, Algorithm.AES_128, PinBlockFormat.ISO_4),
        (Algorithm.SM2, Algorithm.SM4, PinBlockFormat.ISO_4),
        (Algorithm.SM2, Algorithm.TDES_3KEY, PinBlockFormat.ISO_0),
    ],
)
def test_one_time_key_pin_translates_to_a_zpk(
    backend: Backend, tmp_path: Path, ktk_alg: Algorithm, ot_alg: Algorithm, fmt: PinBlockFormat
) -> None:
    k = ktk(backend, ktk_alg)
    zpk, zpk_clear = form(backend, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    one = secrets.token_bytes(ot_alg.key_length)  # a terminal seldom sets DES parity
    pin = "".join(secrets.choice("0123456789") for _ in range(6))
    if fmt is PinBlockFormat.ISO_0:
        block = ecb(ot_alg, one, iso0(pin, PAN))
    else:
        block = pinblock.encipher(fmt, BlockCipher(ot_alg, one), pin, PAN)
    wrapped = terminal_wrap(ktk_alg, backend.execute(PublicKey(key=k)), one, tmp_path)
    out = backend.execute(TranslatePin(pin=PinBlock(block, fmt, PAN), src=OneTimeKey(k, ot_alg, wrapped),
                                       dst=zpk, dst_format=PinBlockFormat.ISO_0))
    assert ecb(Algorithm.TDES_2KEY, zpk_clear, out, decrypt=True) == iso0(pin, PAN)


def test_one_time_key_pin_verifies_against_a_stored_pin(backend: Backend) -> None:
    k = ktk(backend, Algorithm.RSA_2048)
    tpk, tpk_clear = form(backend, KeyType.TPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    psk, _ = form(backend, KeyType.PSK, Algorithm.AES_128, KeyUsage.PIN_ENCRYPTION, ModeOfUse.ENCRYPT_DECRYPT)
    account = PAN[:12]
    stored = backend.execute(EncryptPinForStorage(pin=PinBlock(ecb(Algorithm.TDES_2KEY, tpk_clear, iso0(PIN, PAN)),
                                                               PinBlockFormat.ISO_0, PAN),
                                                  key=tpk, psk=psk, account=account))
    assert stored.method is StoredPinMethod.ENCRYPTED
    one = clear_key(Algorithm.TDES_2KEY)
    wrapped = terminal_wrap(Algorithm.RSA_2048, backend.execute(PublicKey(key=k)), one, Path("."))
    src = OneTimeKey(k, Algorithm.TDES_2KEY, wrapped)
    backend.execute(VerifyPinStored(pin=PinBlock(ecb(Algorithm.TDES_2KEY, one, iso0(PIN, PAN)),
                                                 PinBlockFormat.ISO_0, PAN),
                                    key=src, psk=psk, account=account, stored=stored))
    with pytest.raises(VerificationFailed):
        backend.execute(VerifyPinStored(pin=PinBlock(ecb(Algorithm.TDES_2KEY, one, iso0("9999", PAN)),
                                                     PinBlockFormat.ISO_0, PAN),
                                        key=src, psk=psk, account=account, stored=stored))


def test_every_fault_after_the_ktk_is_the_one_pin_block_error(backend: Backend, tmp_path: Path) -> None:
    k = ktk(backend, Algorithm.RSA_2048)
    zpk, _ = form(backend, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    pub = backend.execute(PublicKey(key=k))
    one = clear_key(Algorithm.TDES_2KEY)
    good = terminal_wrap(Algorithm.RSA_2048, pub, one, tmp_path)
    block = ecb(Algorithm.TDES_2KEY, one, iso0(PIN, PAN))
    tampered = bytearray(good)
    tampered[10] ^= 0x40
    cases = [
        (bytes(tampered), block),                                                      # OAEP decoding fails
        (terminal_wrap(Algorithm.RSA_2048, pub, one[:15], tmp_path), block),           # wrong key length
        (terminal_wrap(Algorithm.RSA_2048, pub, one[:8] * 2, tmp_path), block),        # single-DES in disguise
        (good, ecb(Algorithm.TDES_2KEY, one, bytes.fromhex("0C1234FFFFFFFFFF"))),      # bad block, good key
        (b"\x00" * 256, block),
    ]
    messages = set()
    for wrapped, b in cases:
        with pytest.raises(InvalidPinBlock) as e:
            backend.execute(TranslatePin(pin=PinBlock(b, PinBlockFormat.ISO_0, PAN),
                                         src=OneTimeKey(k, Algorithm.TDES_2KEY, wrapped), dst=zpk,
                                         dst_format=PinBlockFormat.ISO_0))
        messages.add(str(e.value))
    assert messages == {"pin_block: PIN block invalid"}


def test_one_time_key_no_stronger_than_its_ktk(backend: Backend) -> None:
    k = ktk(backend, Algorithm.RSA_2048)  # 112 bits (SP 800-57): TDES only
    zpk, _ = form(backend, KeyType.ZPK, Algorithm.AES_128, KeyUsage.PIN_ENCRYPTION)
    for alg in (Algorithm.AES_128, Algorithm.AES_256):
        with pytest.raises(KeyUsageViolation, match="stronger than the KTK"):
            backend.execute(TranslatePin(pin=PinBlock(bytes(16), PinBlockFormat.ISO_4, PAN),
                                         src=OneTimeKey(k, alg, b"\x00" * 256), dst=zpk,
                                         dst_format=PinBlockFormat.ISO_4))
    with pytest.raises(InvalidInput, match="block cipher"):
        backend.execute(TranslatePin(pin=PinBlock(bytes(8), PinBlockFormat.ISO_0, PAN),
                                     src=OneTimeKey(k, Algorithm.SM2, b"\x00" * 256), dst=zpk,
                                     dst_format=PinBlockFormat.ISO_0))


def test_ktk_is_bound_to_key_transport(backend: Backend) -> None:
    k = ktk(backend, Algorithm.RSA_2048)
    tpk, _ = form(backend, KeyType.TPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    zpk, _ = form(backend, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    zmk, _ = form(backend, KeyType.ZMK, Algorithm.AES_256, KeyUsage.KEK)
    with pytest.raises(KeyUsageViolation):
        backend.execute(TranslatePin(pin=PinBlock(bytes(8), PinBlockFormat.ISO_0, PAN), src=k, dst=zpk,
                                     dst_format=PinBlockFormat.ISO_0))
    with pytest.raises(KeyUsageViolation):
        backend.execute(GenerateMac(key=k, data=b"x", algorithm=MacAlgorithm.CMAC, padding=Padding.METHOD_1))
    with pytest.raises(KeyUsageViolation):
        backend.execute(ExportKey(kek=zmk, key=k, form=LegacyForm.HSMSVC_VARIANT))
    with pytest.raises(KeyUsageViolation):  # a TPK is no KTK
        backend.execute(TranslatePin(pin=PinBlock(bytes(8), PinBlockFormat.ISO_0, PAN),
                                     src=OneTimeKey(tpk, Algorithm.TDES_2KEY, b"\x00" * 256), dst=zpk,
                                     dst_format=PinBlockFormat.ISO_0))
    with pytest.raises(KeyUsageViolation):
        backend.execute(PublicKey(key=tpk))
    with pytest.raises(KeyUsageViolation):  # claimed attributes that the key block does not carry
        backend.execute(PublicKey(key=dataclasses.replace(k, spec=dataclasses.replace(k.spec, key_id="other"))))
    with pytest.raises(InvalidInput, match="key pair"):
        backend.execute(FormKey(spec=dataclasses.replace(k.spec, key_id="formed"),
                                components=[b"\x01" * 32, b"\x02" * 32]))


@pytest.mark.parametrize(
    "key_type, alg, usage",
    [
        (KeyType.KTK, Algorithm.AES_256, KeyUsage.ASYMMETRIC_KEY_WRAPPING),
        (KeyType.DEK, Algorithm.RSA_2048, KeyUsage.DATA),
        (KeyType.KTK, Algorithm.SM2, KeyUsage.KEK),
    ],
)
def test_key_pair_algorithms_belong_to_ktks_only(key_type: KeyType, alg: Algorithm, usage: KeyUsage) -> None:
    with pytest.raises(InvalidInput):
        KeySpec("x", 1, key_type, alg, usage, ModeOfUse.DECRYPT_ONLY, Exportability.NON_EXPORTABLE)


def test_backend_without_key_pairs_says_so(backend: Backend) -> None:
    if Command.ONE_TIME_PIN_KEY in backend.capabilities.commands:
        pytest.skip("backend has key transport")
    spec = KeySpec("ktk-x", 1, KeyType.KTK, Algorithm.RSA_2048, KeyUsage.ASYMMETRIC_KEY_WRAPPING,
                   ModeOfUse.DECRYPT_ONLY)
    with pytest.raises(Unsupported, match="GENERATE_KEY with RSA_2048"):
        backend.execute(GenerateKey(spec=spec))
