"""The legacy key forms under a ZMK (hsmsvc.crypto.legacy) against tests/reference.py.

X9.17 plain ECB is pinned to a published example in tests/test_reference.py; the payShield
variant schemes U/T to the documented method there (no published example was found).
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hsmsvc.crypto import legacy
from hsmsvc.errors import InvalidInput, InvalidKeyBlock
from hsmsvc.types import Algorithm
from tests import reference as ref

from .strategies import keys

H = bytes.fromhex
T2, T3 = Algorithm.TDES_2KEY, Algorithm.TDES_3KEY


@given(zmk=st.one_of(keys(T2), keys(T3)), key=keys(T3), length=st.sampled_from([16, 24]))
def test_payshield_form_is_the_reference_and_inverts(zmk: bytes, key: bytes, length: int) -> None:
    wrapped = legacy.payshield_encipher(zmk, key[:length])
    assert wrapped == ref.payshield_variant_wrap(zmk, key[:length])
    assert legacy.payshield_decipher(zmk, wrapped) == key[:length]


@given(zmk=keys(T3), key=keys(T2))
def test_x917_form_is_plain_ecb_and_inverts(zmk: bytes, key: bytes) -> None:
    wrapped = legacy.x917_encipher(T3, zmk, key)
    assert wrapped == ref.tdes_ecb(zmk, key)
    assert legacy.x917_decipher(T3, zmk, wrapped) == key


def test_x917_published_single_length_example() -> None:
    # tests/test_reference.py test_x917_ecb_under_a_zmk_published_example: the forum's key sheet.
    assert legacy.x917_decipher(T2, H("9DDC9BAE925D31E6") * 2, H("76E565ADB1062E6E")) == H("ABDC5476102301FE")


@given(key=keys(T2), flips=st.lists(st.booleans(), min_size=16, max_size=16))
def test_accept_takes_a_key_whatever_its_parity_bits(key: bytes, flips: list[bool]) -> None:
    # DES ignores the parity bits, so the KCV is the same either way: a partner's unadjusted key
    # is taken, adjusted, and never refused for its parity (no parity oracle).
    sent = bytes(b ^ int(f) for b, f in zip(key, flips))
    assert legacy.accept(T2, sent, ref.tdes_kcv(key)) == key


@pytest.mark.parametrize("clear", [
    H("0101010101010101") + H("0123456789ABCDEF"),  # a weak DES part
    H("0123456789ABCDEF") * 2,  # equal parts: single DES in disguise
    H("0123456789ABCDEF") + H("FEDCBA9876543210"),  # a good key, but a KCV mismatch below
    H("0123456789ABCDEF"),  # the wrong length
])
def test_every_fault_after_deciphering_is_one_refusal(clear: bytes) -> None:
    with pytest.raises(InvalidKeyBlock) as e:
        legacy.accept(T2, clear, H("000000"))
    assert str(e.value) == "key_block: key block invalid"


def test_payshield_form_needs_a_double_length_kek_and_a_u_or_t_key() -> None:
    with pytest.raises(InvalidInput, match="double- or triple-length"):
        legacy.payshield_encipher(bytes(32), bytes(16))
    with pytest.raises(InvalidInput, match="scheme U"):
        legacy.payshield_decipher(bytes(16), bytes(8))
