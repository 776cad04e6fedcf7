"""SM4 key blocks: hsmsvc's bilateral convention (TR-31 version D with SM4 for AES), issue 33.

No GM/T or JR/T standard defines an SM4 key block, and TR-31/X9.143 assign SM4 no algorithm
byte, so there is no published vector: the expected blocks come from the independent
reference (tests/reference.py, pyca/cryptography's SM4 only), which follows TR-31:2018 clause
5.3.2.3 with SM4 in place of AES. SM4 itself is pinned by the GB/T 32907-2016 appendix A example.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hsmsvc.crypto import tr31
from hsmsvc.crypto.tr31 import Header, KeyBlockAlgorithm, KeyBlockVersion
from hsmsvc.errors import InvalidInput, InvalidKeyBlock
from hsmsvc.types import Algorithm, Exportability, KeyUsage, ModeOfUse
from tests import reference as ind

H = bytes.fromhex
GBT32907_KEY = H("0123456789ABCDEFFEDCBA9876543210")


def test_the_reference_sm4_is_gbt_32907() -> None:
    # GB/T 32907-2016 appendix A, example 1: the key enciphers itself to 681EDF34D206965E86B3E94F536E4246.
    assert ind.ecb("SM4", GBT32907_KEY, GBT32907_KEY) == H("681EDF34D206965E86B3E94F536E4246")


HEADER = Header(KeyBlockVersion.D, KeyUsage.PIN_ENCRYPTION, KeyBlockAlgorithm.SM4, ModeOfUse.ENCRYPT_DECRYPT)


@settings(max_examples=40, deadline=None)
@given(kbpk=st.binary(min_size=16, max_size=16), key=st.binary(min_size=16, max_size=16))
def test_hsmsvc_and_the_reference_read_each_others_blocks(kbpk: bytes, key: bytes) -> None:
    made = tr31.wrap(kbpk, HEADER, key, kbpk_algorithm=Algorithm.SM4)
    assert made[:5] == "D0112" and made[7] == "4"
    assert ind.tr31_unwrap(kbpk, made, sm4=True)[0] == key
    theirs = ind.tr31_wrap(kbpk, "D0000P04E00N0000", key, b"\x00" * 14, sm4=True)
    header, clear = tr31.unwrap(kbpk, theirs, kbpk_algorithm=Algorithm.SM4)
    assert clear == key and header.algorithm is KeyBlockAlgorithm.SM4
    assert header.exportability is Exportability.NON_EXPORTABLE


def test_an_sm4_block_is_not_an_aes_128_block() -> None:
    """The same 16 bytes as an AES-128 KBPK read nothing: the caller names the KBPK's algorithm."""
    block = tr31.wrap(GBT32907_KEY, HEADER, GBT32907_KEY, kbpk_algorithm=Algorithm.SM4)
    with pytest.raises(InvalidKeyBlock):
        tr31.unwrap(GBT32907_KEY, block)
    with pytest.raises(InvalidKeyBlock):
        tr31.unwrap(GBT32907_KEY, block, kbpk_algorithm=Algorithm.AES_128)
    aes = tr31.wrap(GBT32907_KEY, HEADER, GBT32907_KEY)
    with pytest.raises(InvalidKeyBlock):
        tr31.unwrap(GBT32907_KEY, aes, kbpk_algorithm=Algorithm.SM4)


def test_a_tampered_sm4_block_is_one_generic_fault() -> None:
    block = tr31.wrap(GBT32907_KEY, HEADER, bytes(16), kbpk_algorithm=Algorithm.SM4)
    for i in (20, 60, len(block) - 1):
        c = "0" if block[i] != "0" else "1"
        with pytest.raises(InvalidKeyBlock) as e:
            tr31.unwrap(GBT32907_KEY, block[:i] + c + block[i + 1:], kbpk_algorithm=Algorithm.SM4)
        assert str(e.value) == str(InvalidKeyBlock())


def test_an_sm4_kbpk_protects_version_d_only_and_is_16_bytes() -> None:
    b_header = Header(KeyBlockVersion.B, KeyUsage.PIN_ENCRYPTION, KeyBlockAlgorithm.SM4, ModeOfUse.ENCRYPT_DECRYPT)
    with pytest.raises(InvalidInput):
        tr31.wrap(GBT32907_KEY, b_header, bytes(16), kbpk_algorithm=Algorithm.SM4)
    with pytest.raises(InvalidInput):
        tr31.wrap(bytes(32), HEADER, bytes(16), kbpk_algorithm=Algorithm.SM4)
    with pytest.raises(InvalidInput):
        tr31.wrap(bytes(32), HEADER, bytes(16), kbpk_algorithm=Algorithm.AES_128)
