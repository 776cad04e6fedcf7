"""The PKCS#11 backend's running ECB operations (hsmsvc.hsm.pkcs11.running) on SoftHSM2.

A key in steady use enciphers through a C_EncryptUpdate on an operation kept
open; its outputs must be those of single-part operations under the same key,
whatever came before them, and the operation must end when its key does.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from hsmsvc.errors import BackendUnavailable, InvalidInput, InvalidPinBlock
from hsmsvc.hsm.commands import DecryptData, EncryptData, Forget, TranslatePin, TranslatePins
from hsmsvc.hsm.model import FieldParams, PinBlock
from hsmsvc.types import Algorithm, CipherMode, DataPadding, KeyType, KeyUsage, PinBlockFormat
from tests.hsm import softhsm
from tests.hsm.helpers import PAN, PIN, form
from tests.reference import ecb, iso0

ISO0 = PinBlockFormat.ISO_0
RAW_ECB = FieldParams(CipherMode.ECB, b"", DataPadding.NONE)


@pytest.fixture(scope="module")
def p11() -> Iterator:  # type: ignore[type-arg]
    b = softhsm.backend(None, "running")  # type: ignore[arg-type]
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def tight(p11):  # type: ignore[no-untyped-def]
    """The module's backend with room for two running operations, each started at a key's second use."""
    from hsmsvc.hsm.pkcs11.running import RunningOps

    kept = p11._running
    p11._running.close()
    p11._running = RunningOps(p11._token, limit=2, after=2)
    try:
        yield p11
    finally:
        p11._running.close()
        p11._running = kept


@pytest.mark.parametrize("alg", [Algorithm.TDES_2KEY, Algorithm.TDES_3KEY, Algorithm.AES_128, Algorithm.AES_256])
def test_running_operations_give_what_single_part_ones_do(p11, alg: Algorithm) -> None:  # type: ignore[no-untyped-def]
    dek, k = form(p11, KeyType.DEK, alg, KeyUsage.DATA)
    bs = alg.block_size
    # One block, a batch's worth, the largest a running operation takes, and one past it.
    sizes = [bs, 3 * bs, 1000 * bs // 2, 8 * 1024, 8 * 1024 + bs]
    for i in range(40):
        data = secrets.token_bytes(sizes[i % len(sizes)])
        ct = p11.execute(EncryptData(key=dek, params=RAW_ECB, data=data))
        assert ct == ecb(alg, k, data)
        assert p11.execute(DecryptData(key=dek, params=RAW_ECB, data=ct)) == data
    assert len(p11._running) >= 2


def test_a_partial_block_never_reaches_a_running_operation(p11) -> None:  # type: ignore[no-untyped-def]
    """The token would keep a partial block and shift every later output by it."""
    dek, k = form(p11, KeyType.DEK, Algorithm.TDES_2KEY, KeyUsage.DATA)
    block = secrets.token_bytes(8)
    for _ in range(10):
        assert p11.execute(EncryptData(key=dek, params=RAW_ECB,
                                       data=block)) == ecb(Algorithm.TDES_2KEY, k, block)
    loaded = p11._load(dek)
    with pytest.raises(InvalidInput):
        with p11._guard():
            loaded.encrypt(b"123")
    with pytest.raises(InvalidInput):
        p11.execute(EncryptData(key=dek, params=RAW_ECB, data=b"1234567"))
    assert p11.execute(EncryptData(key=dek, params=RAW_ECB, data=block)) == ecb(Algorithm.TDES_2KEY, k, block)


def test_pin_translation_on_running_operations(p11) -> None:  # type: ignore[no-untyped-def]
    tpk, tpk_clear = form(p11, KeyType.TPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    zpk, zpk_clear = form(p11, KeyType.ZPK, Algorithm.TDES_3KEY, KeyUsage.PIN_ENCRYPTION)
    route = p11.pin_translator(src=tpk, src_format=ISO0, dst=zpk, dst_format=ISO0)
    bad = ecb(Algorithm.TDES_2KEY, tpk_clear, bytes.fromhex("0C1234FFFFFFFFFF"))
    for i in range(30):
        pin = f"{i:04d}"
        block = ecb(Algorithm.TDES_2KEY, tpk_clear, iso0(pin, PAN))
        assert ecb(Algorithm.TDES_3KEY, zpk_clear, route(block, PAN), decrypt=True) == iso0(pin, PAN)
        with pytest.raises(InvalidPinBlock):
            route(bad, PAN)
    blocks = [ecb(Algorithm.TDES_2KEY, tpk_clear, iso0(f"{i:06d}", PAN)) for i in range(500)]
    out = p11.execute(TranslatePins(blocks=b"".join(blocks), src=tpk, src_format=ISO0, dst=zpk,
                                    dst_format=ISO0, pans=[PAN] * 500))
    assert not out.errors
    assert ecb(Algorithm.TDES_3KEY, zpk_clear, out.blocks, decrypt=True) == b"".join(
        iso0(f"{i:06d}", PAN) for i in range(500))


def test_a_forgotten_key_keeps_no_running_operation(p11) -> None:  # type: ignore[no-untyped-def]
    dek, k = form(p11, KeyType.DEK, Algorithm.AES_256, KeyUsage.DATA)
    data = secrets.token_bytes(32)
    for _ in range(10):
        p11.execute(DecryptData(key=dek, params=RAW_ECB,
                                data=p11.execute(EncryptData(key=dek, params=RAW_ECB, data=data))))
    ident = p11._load(dek).ident
    assert {(ident, True), (ident, False)} <= set(p11._running._ops)
    p11.execute(Forget(key_id=dek.spec.key_id))
    assert not {s for s in p11._running._ops if s[0] == ident}
    # Loaded again, it is a new object with a new CKA_ID, and starts from single-part.
    assert p11.execute(EncryptData(key=dek, params=RAW_ECB, data=data)) == ecb(Algorithm.AES_256, k, data)
    assert p11._load(dek).ident != ident


def test_running_operations_are_bounded_and_make_way(tight) -> None:  # type: ignore[no-untyped-def]
    keys = [form(tight, KeyType.DEK, Algorithm.TDES_2KEY, KeyUsage.DATA) for _ in range(3)]
    for i in range(60):
        dek, k = keys[i % 3] if i < 30 else keys[(i // 5) % 3]
        data = secrets.token_bytes(16)
        assert tight.execute(EncryptData(key=dek, params=RAW_ECB,
                                         data=data)) == ecb(Algorithm.TDES_2KEY, k, data)
        assert len(tight._running) <= 2


def test_a_failed_running_operation_is_replaced(tight) -> None:  # type: ignore[no-untyped-def]
    dek, k = form(tight, KeyType.DEK, Algorithm.AES_128, KeyUsage.DATA)
    data = secrets.token_bytes(16)
    for _ in range(3):
        assert tight.execute(EncryptData(key=dek, params=RAW_ECB,
                                         data=data)) == ecb(Algorithm.AES_128, k, data)
    (op,) = tight._running._ops.values()
    op._session.close()  # the token ends the operation under us
    with pytest.raises(BackendUnavailable):
        tight.execute(EncryptData(key=dek, params=RAW_ECB, data=data))
    assert len(tight._running) == 0
    for _ in range(3):
        assert tight.execute(EncryptData(key=dek, params=RAW_ECB,
                                         data=data)) == ecb(Algorithm.AES_128, k, data)
    assert len(tight._running) == 1


def test_pin_block_check_is_unchanged_by_a_running_operation(p11) -> None:  # type: ignore[no-untyped-def]
    """A rejected block leaves nothing behind in the operation for the next one."""
    tpk, tpk_clear = form(p11, KeyType.TPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    zpk, zpk_clear = form(p11, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    good = ecb(Algorithm.TDES_2KEY, tpk_clear, iso0(PIN, PAN))
    for _ in range(12):
        with pytest.raises(InvalidInput):
            p11.execute(TranslatePin(pin=PinBlock(good[:5], ISO0, PAN), src=tpk, dst=zpk, dst_format=ISO0))
        out = p11.execute(TranslatePin(pin=PinBlock(good, ISO0, PAN), src=tpk, dst=zpk, dst_format=ISO0))
        assert ecb(Algorithm.TDES_2KEY, zpk_clear, out, decrypt=True) == iso0(PIN, PAN)


def test_a_running_operation_uses_only_its_own_key_object(tight) -> None:  # type: ignore[no-untyped-def]
    """Searched for by CKA_ID on its own session, the object used is the loaded key's, by handle,
    not another with the same ID."""
    from pkcs11 import Attribute, KeyType as P11KeyType, Mechanism, ObjectClass

    dek, k = form(tight, KeyType.DEK, Algorithm.AES_128, KeyUsage.DATA)
    loaded = tight._load(dek)
    for _ in range(2):
        assert tight._running.get(loaded.ident, loaded.obj.handle + 1000, True, Mechanism.AES_ECB) is None
    assert len(tight._running) == 0
    decoy = tight._session.create_object({
        Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: P11KeyType.AES, Attribute.TOKEN: False,
        Attribute.VALUE: secrets.token_bytes(16), Attribute.ID: loaded.ident, Attribute.ENCRYPT: True,
    })
    try:
        data = secrets.token_bytes(16)
        for _ in range(6):
            assert tight.execute(EncryptData(key=dek, params=RAW_ECB,
                                             data=data)) == ecb(Algorithm.AES_128, k, data)
        assert len(tight._running) == 1
    finally:
        decoy.destroy()
