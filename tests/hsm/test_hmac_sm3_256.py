"""HMAC_SM3_256 keys (issue 33) in the soft backend: 32-byte HMAC-SM3 keys formed, moved in TR-31
key blocks (algorithm byte H, TR-31:2018 table 1) and the X9.17 form, used only as HMAC-SM3.

Expected values by tests/reference.py (pyca's HMAC-SM3, held to GM/T 0042-2015 appendix D.3 in
tests/test_reference.py, and its TR-31 unwrap); the PKCS#11 backend has no SM3 and lists no
HMAC_SM3_256 (tests/hsm/test_conformance.py refuses missing algorithms by name).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hsmsvc.errors import InvalidInput, InvalidKeyBlock, KeyUsageViolation
from hsmsvc.hsm.backend import Backend
from hsmsvc.hsm.commands import EncryptData, ExportKey, GenerateMac, ImportKey
from hsmsvc.hsm.model import FieldParams, KeySpec, LegacyForm
from hsmsvc.types import (Algorithm, CipherMode, DataPadding, Exportability, KeyType, KeyUsage, MacAlgorithm,
                          ModeOfUse, Padding)
from tests import national_vectors as nv
from tests import reference as ref
from tests.hsm import components_env
from tests.hsm.helpers import form

C, E = ModeOfUse.MAC_GENERATE_VERIFY, Exportability.EXPORTABLE
DATA = b"0200 6222020000000012 HMAC-SM3 under a 32-byte key"


@pytest.fixture(scope="module")
def soft(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    b = components_env.make_backend("soft", tmp_path_factory)
    try:
        yield b
    finally:
        b.close()


def _hmac(b: Backend, key: object, data: bytes = DATA) -> bytes:
    return b.execute(GenerateMac(key=key, data=data, algorithm=MacAlgorithm.HMAC_SM3, padding=Padding.METHOD_1))


def test_a_formed_key_computes_hmac_sm3_and_has_the_hmac_kcv(soft: Backend) -> None:
    mak, clear = form(soft, KeyType.MAK, Algorithm.HMAC_SM3_256, KeyUsage.MAC_HMAC, C)
    assert len(clear) == 32 and _hmac(soft, mak) == ref.hmac_sm3(clear, DATA)
    assert mak.kcv == ref.hmac_sm3(clear, bytes(16))[:3]
    with pytest.raises(KeyUsageViolation, match="does not permit HMAC_SHA256"):
        soft.execute(GenerateMac(key=mak, data=DATA, algorithm=MacAlgorithm.HMAC_SHA256, padding=Padding.METHOD_1))


def test_a_tr31_block_carries_it_as_an_h_key(soft: Backend) -> None:
    """Out under an AES-256 KBPK (version D), opened by the reference; back in under a template."""
    kbpk, kb = form(soft, KeyType.ZMK, Algorithm.AES_256, KeyUsage.KBPK, ModeOfUse.ENCRYPT_DECRYPT)
    mak, clear = form(soft, KeyType.MAK, Algorithm.HMAC_SM3_256, KeyUsage.MAC_HMAC, C, E)
    block = soft.execute(ExportKey(kek=kbpk, key=mak)).decode("ascii")
    assert block[0] == "D" and block[5:9] == "M7HC"  # usage M7, algorithm H, mode C
    assert ref.tr31_unwrap(kb, block)[0] == clear
    spec = KeySpec("mak-in", 1, KeyType.MAK, Algorithm.HMAC_SM3_256, KeyUsage.MAC_HMAC, C)
    got = soft.execute(ImportKey(kek=kbpk, wrapped=block.encode("ascii"), spec=spec))
    assert got.kcv == mak.kcv and _hmac(soft, got) == ref.hmac_sm3(clear, DATA)
    # The header says H whatever the size: an SM4-sized template is held to the 32-byte key it carries.
    short = KeySpec("mak-in-16", 1, KeyType.MAK, Algorithm.SM4, KeyUsage.MAC_HMAC, C)
    with pytest.raises(KeyUsageViolation, match="256-bit key"):
        soft.execute(ImportKey(kek=kbpk, wrapped=block.encode("ascii"), spec=short))


def test_the_x917_form_under_an_aes_256_zmk_checks_the_hmac_kcv(soft: Backend) -> None:
    """GM/T 0042-2015 appendix D.3's first key (01..20), sent as UnionPay and most partners send keys;
    its tag over D.3's first message is the appendix's."""
    zmk, zk = form(soft, KeyType.ZMK, Algorithm.AES_256, KeyUsage.KEK, ModeOfUse.ENCRYPT_DECRYPT)
    key, d3, expected = nv.GMT_0042_D3[0]
    clear = bytes.fromhex(key)
    wrapped = ref.ecb("AES", zk, clear)
    spec = KeySpec("mak-x917", 1, KeyType.MAK, Algorithm.HMAC_SM3_256, KeyUsage.MAC_HMAC, C)
    got = soft.execute(ImportKey(kek=zmk, wrapped=wrapped, spec=spec, kcv=ref.hmac_sm3(clear, bytes(16))[:3],
                                 form=LegacyForm.X917_ECB))
    assert _hmac(soft, got, d3) == bytes.fromhex(expected)
    with pytest.raises(InvalidKeyBlock):
        soft.execute(ImportKey(kek=zmk, wrapped=wrapped, spec=spec,
                               kcv=ref.kcv("AES", clear), form=LegacyForm.X917_ECB))


def test_it_is_never_a_cipher_key(soft: Backend) -> None:
    """32 bytes, as an AES-256 key: no binding makes it one, and a loaded one enciphers nothing."""
    for key_type, usage in ((KeyType.DEK, KeyUsage.DATA), (KeyType.MAK, KeyUsage.MAC_CMAC),
                            (KeyType.ZMK, KeyUsage.KEK)):
        with pytest.raises(InvalidInput, match="HMAC_SM3_256 is for HMAC keys"):
            KeySpec("x", 1, key_type, Algorithm.HMAC_SM3_256, usage)
    mak, _ = form(soft, KeyType.MAK, Algorithm.HMAC_SM3_256, KeyUsage.MAC_HMAC, C)
    with pytest.raises(KeyUsageViolation):
        soft.execute(EncryptData(key=mak, data=bytes(32), params=FieldParams(CipherMode.ECB, b"", DataPadding.NONE)))
    from hsmsvc.hsm.soft.softkey import SoftKey

    loaded = SoftKey(KeySpec("y", 1, KeyType.MAK, Algorithm.HMAC_SM3_256, KeyUsage.MAC_HMAC, C), bytes(32), b"")
    with pytest.raises(KeyUsageViolation, match="not a block cipher key"):
        loaded.encrypt(bytes(16))
    assert loaded.mac(MacAlgorithm.HMAC_SM3, Padding.METHOD_1, DATA) == ref.hmac_sm3(bytes(32), DATA)
