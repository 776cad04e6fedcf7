"""Field encipherment (crypto.fields): a kept FieldKey against one-shot calls and an independent GCM."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from hypothesis import given
from hypothesis import strategies as st

from hsmsvc.crypto import fields
from hsmsvc.crypto._cipher import primitive
from hsmsvc.errors import InvalidInput
from hsmsvc.types import Algorithm, CipherMode

from .strategies import keys

H = bytes.fromhex


def test_gcm_matches_nist_sp_800_38d_test_case_4_with_a_kept_key() -> None:
    # The GCM specification's test case 4 (AES-128), three times through one FieldKey.
    key = fields.FieldKey(Algorithm.AES_128, H("feffe9928665731c6d6a8f9467308308"))
    iv = H("cafebabefacedbaddecaf888")
    pt = H("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
           "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39")
    aad = H("feedfacedeadbeeffeedfacedeadbeefabaddad2")
    for _ in range(3):
        ct = key.encrypt(CipherMode.GCM, iv, pt, aad)
        assert ct[-16:] == H("5bc94fbc3221a5db94fae95ae7121a47")
        assert key.decrypt(CipherMode.GCM, iv, ct, aad) == pt


@pytest.mark.parametrize("alg", [Algorithm.AES_128, Algorithm.AES_256, Algorithm.SM4])
@given(data=st.data(), fields_=st.lists(st.tuples(st.binary(max_size=40), st.binary(max_size=20)),
                                        min_size=1, max_size=5))
def test_a_kept_gcm_key_gives_what_a_fresh_gcm_context_does(
        alg: Algorithm, data: st.DataObject, fields_: list[tuple[bytes, bytes]]) -> None:
    k = data.draw(keys(alg))
    kept = fields.FieldKey(alg, k)
    for pt, aad in fields_:
        iv = data.draw(st.binary(min_size=12, max_size=12))
        ref = Cipher(primitive(alg, k), modes.GCM(iv)).encryptor()
        ref.authenticate_additional_data(aad)
        expected = ref.update(pt) + ref.finalize() + ref.tag
        ct = kept.encrypt(CipherMode.GCM, iv, pt, aad)
        assert ct == expected == fields.encrypt(alg, key=k, mode=CipherMode.GCM, iv=iv, data=pt, aad=aad)
        assert kept.decrypt(CipherMode.GCM, iv, ct, aad) == pt
        # Any changed byte, tag or AAD gives the one generic fault.
        bad = bytearray(ct)
        bad[data.draw(st.integers(0, len(ct) - 1))] ^= 1
        for args in ((bytes(bad), aad), (ct, aad + b"x")):
            with pytest.raises(InvalidInput) as e:
                kept.decrypt(CipherMode.GCM, iv, *args)
            assert (e.value.field, e.value.reason) == ("ciphertext", "ciphertext invalid")


@pytest.mark.parametrize("alg", [Algorithm.TDES_2KEY, Algorithm.AES_128, Algorithm.SM4])
@given(data=st.data(), blocks=st.integers(1, 4))
def test_a_kept_key_round_trips_cbc_and_ecb(alg: Algorithm, data: st.DataObject, blocks: int) -> None:
    k = data.draw(keys(alg))
    kept, bs = fields.FieldKey(alg, k), alg.block_size
    pt = data.draw(st.binary(min_size=bs * blocks, max_size=bs * blocks))
    iv = data.draw(st.binary(min_size=bs, max_size=bs))
    for mode, v in ((CipherMode.CBC, iv), (CipherMode.ECB, b"")):
        ct = kept.encrypt(mode, v, pt)
        assert ct == fields.encrypt(alg, key=k, mode=mode, iv=v, data=pt)
        assert kept.decrypt(mode, v, ct) == pt
    with pytest.raises(InvalidInput):
        kept.encrypt(CipherMode.CBC, iv, pt + b"x")
    with pytest.raises(InvalidInput):
        kept.encrypt(CipherMode.ECB, b"", pt, b"aad")
