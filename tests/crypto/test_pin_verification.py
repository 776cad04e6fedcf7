"""IBM 3624 offsets, Visa PVV and the keyed PIN digest."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hsmsvc.crypto._cipher import BlockCipher
from hsmsvc.crypto import ibm3624, pindigest, pvv
from hsmsvc.errors import InvalidInput, VerificationFailed
from hsmsvc.types import Algorithm, HashAlgorithm

from .strategies import keys, pans, pins

H = bytes.fromhex
DECTAB = "0123456789012345"


def test_decimalization_ibm_cca_example() -> None:
    # IBM CCA Basic Services 2.54 appendix E, "IBM 3624 PIN-calculation method".
    assert ibm3624.decimalize(H("E5C1BD67B66AE7C6"), "8351296477461538") == "3913656466643416"


@pytest.mark.parametrize(
    ("pvk", "data", "length", "natural"),
    [
        # Magnetic-stripe examples widely reproduced from the IBM 3624 literature:
        # single-DES PVKs carried as K||K.
        ("1313131313131313", "1234567890123456", 6, "643085"),
        ("0123456789ABCDEF", "1234567890123445", 4, "9046"),
    ],
)
def test_natural_pin_published_examples(pvk: str, data: str, length: int, natural: str) -> None:
    assert ibm3624.generate_natural_pin(BlockCipher(Algorithm.TDES_2KEY, H(pvk) * 2), data, DECTAB, length) == natural


def test_offset_published_examples() -> None:
    k1 = H("1313131313131313") * 2
    assert ibm3624.pin_from_offset(BlockCipher(Algorithm.TDES_2KEY, k1), "1234567890123456", DECTAB,
                                   "456789") == "099764"
    k2 = H("0123456789ABCDEF") * 2
    assert ibm3624.generate_offset(BlockCipher(Algorithm.TDES_2KEY, k2), validation_data="1234567890123445",
                                   table=DECTAB, pin="1234") == "2298"
    ibm3624.verify_offset(BlockCipher(Algorithm.TDES_2KEY, k2), validation_data="1234567890123445", table=DECTAB,
                          pin="1234", offset="2298")
    with pytest.raises(VerificationFailed):
        ibm3624.verify_offset(BlockCipher(Algorithm.TDES_2KEY, k2), validation_data="1234567890123445", table=DECTAB,
                              pin="1235", offset="2298")


@given(keys(Algorithm.TDES_2KEY), pins, st.text("0123456789ABCDEF", min_size=4, max_size=16))
def test_offset_round_trip(pvk: bytes, pin: str, data: str) -> None:
    offset = ibm3624.generate_offset(BlockCipher(Algorithm.TDES_2KEY, pvk), validation_data=data, table=DECTAB, pin=pin)
    assert ibm3624.pin_from_offset(BlockCipher(Algorithm.TDES_2KEY, pvk), data, DECTAB, offset) == pin
    ibm3624.verify_offset(BlockCipher(Algorithm.TDES_2KEY, pvk), validation_data=data, table=DECTAB, pin=pin,
                          offset=offset)


def test_check_length_keeps_rightmost_digits() -> None:
    # IBM z/OS ICSF "PIN Offset Generation algorithm": rightmost m digits.
    k = H("0123456789ABCDEF") * 2
    full = ibm3624.generate_offset(BlockCipher(Algorithm.TDES_2KEY, k), validation_data="1234567890123445",
                                   table=DECTAB, pin="123456")
    assert ibm3624.generate_offset(BlockCipher(Algorithm.TDES_2KEY, k), validation_data="1234567890123445",
                                   table=DECTAB, pin="123456", check_length=4) == full[-4:]


@pytest.mark.parametrize(
    ("table", "field"),
    [("012345678901234", "decimalization_table"), ("012345678901234A", "decimalization_table")],
)
def test_bad_dectab_rejected(table: str, field: str) -> None:
    with pytest.raises(InvalidInput) as e:
        ibm3624.generate_offset(BlockCipher(Algorithm.TDES_2KEY, H("0123456789ABCDEF") * 2),
                                validation_data="1234567890123445", table=table, pin="1234")
    assert e.value.field == field


# Visa PVV has no public Visa test vector; these rows are the cross-implementation
# table of psec (PVK pair 0123456789ABCDEF/FEDCBA9876543210), an independent code base.
PVV = [
    (1, "4524", "1122334455667788", "8523"),
    (2, "1912", "1122334455667788", "3244"),
    (1, "0570", "1122334455667718", "3144"),
    (1, "8299", "1122334455667708", "4422"),
]


@pytest.mark.parametrize(("pvki", "pin", "pan", "expected"), PVV)
def test_pvv_table(pvki: int, pin: str, pan: str, expected: str) -> None:
    pvk = H("0123456789ABCDEFFEDCBA9876543210")
    assert pvv.generate_pvv(BlockCipher(Algorithm.TDES_2KEY, pvk), pan, pvki, pin) == expected
    pvv.verify_pvv(BlockCipher(Algorithm.TDES_2KEY, pvk), pan, pvki, pin, expected)


@given(keys(Algorithm.TDES_2KEY), pans, st.integers(0, 6), pins)
def test_pvv_shape_and_verify(pvk: bytes, pan: str, pvki: int, pin: str) -> None:
    v = pvv.generate_pvv(BlockCipher(Algorithm.TDES_2KEY, pvk), pan, pvki, pin)
    assert len(v) == 4 and v.isdigit()
    pvv.verify_pvv(BlockCipher(Algorithm.TDES_2KEY, pvk), pan, pvki, pin, v)


@pytest.mark.parametrize("pvki", [-1, 7, 10])
def test_pvki_range(pvki: int) -> None:
    with pytest.raises(InvalidInput) as e:
        pvv.generate_pvv(BlockCipher(Algorithm.TDES_2KEY, H("0123456789ABCDEFFEDCBA9876543210")), "4012345678909", pvki,
                         "1234")
    assert e.value.field == "pvki"


@given(st.binary(min_size=16, max_size=32), pans, pins, pins)
def test_pin_digest_keyed_and_distinct(key: bytes, pan: str, pin: str, other: str) -> None:
    for alg in HashAlgorithm:
        d = pindigest.pin_digest(alg, key, pan, pin)
        pindigest.verify_pin_digest(alg, key, pan, pin, d)
        if other != pin:
            with pytest.raises(VerificationFailed):
                pindigest.verify_pin_digest(alg, key, pan, other, d)
        # Keyed: a different key gives a different digest (never a plain hash).
        assert pindigest.pin_digest(alg, bytes(b ^ 1 for b in key), pan, pin) != d
