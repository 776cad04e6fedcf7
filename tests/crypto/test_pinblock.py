"""PIN blocks: ISO 9564-1:2017 clause 9.3 formats, vectors and properties."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hsmsvc.crypto import pinblock
from hsmsvc.crypto._cipher import BlockCipher
from hsmsvc.errors import InvalidInput, InvalidPinBlock
from hsmsvc.types import Algorithm, PinBlockFormat

from tests import reference as ref

from .strategies import keys, pans, pins

H = bytes.fromhex


# --- published vectors -------------------------------------------------------

def test_iso0_x9_24_1_2009_annex_a4() -> None:
    # ANSI X9.24-1:2009 A.4 (DUKPT test data): PIN 1234, PAN 4012345678909.
    assert pinblock.encode_iso0("1234", "4012345678909") == H("041274EDCBA9876F")
    assert pinblock.decode_iso0(H("041274EDCBA9876F"), "4012345678909") == "1234"


def test_iso2_ibm_cca_example() -> None:
    # IBM CCA Basic Services 2.54, appendix E, "ISO-2 PIN-block format" example.
    assert pinblock.encode_iso2("123456") == H("26123456FFFFFFFF")
    assert pinblock.decode_iso2(H("26123456FFFFFFFF")) == "123456"


def test_iso4_fields_x9_24_3_2017_supplement() -> None:
    # ANSI X9.24-3:2017 supplement test vectors, "Calculation of AES PIN block format 4".
    field = pinblock.encode_iso4_pin_field("1234")
    assert field[:8] == H("441234AAAAAAAAAA")
    assert pinblock.encode_iso4_pan_field("4111111111111111") == H("44111111111111111000000000000000")
    # Format 4 random fill: two encodings of one PIN differ in the second half.
    assert pinblock.encode_iso4_pin_field("1234")[8:] != field[8:]


def test_iso4_short_pan_is_left_padded() -> None:
    # Clause 9.3.6.3: a PAN under 12 digits is right-justified in 12, M = 0.
    assert pinblock.encode_iso4_pan_field("123456789") == H("00001234567890000000000000000000")


def test_iso4_enciphered_construction() -> None:
    # Clause 9.3.6.4: C = E(K, E(K, P) xor A); deciphered by pyca's AES directly (tests/reference.py),
    # never by hsmsvc's own cipher. P's first half is the X9.24-3:2017 supplement's PIN field.
    key = H("000102030405060708090A0B0C0D0E0F")
    block = pinblock.encipher(PinBlockFormat.ISO_4, BlockCipher(Algorithm.AES_128, key), "1234", "4111111111111111")
    p = ref.iso4_decipher("AES_128", key, block, "4111111111111111")
    assert p[:8] == H("441234AAAAAAAAAA")


@pytest.mark.parametrize(("key", "block", "pan", "pin"), [
    # ep2 (eft/pos 2000) Security Specification 8.0.0, clause 8.4 "PIN Encryption", as reproduced in
    # knovichikhin/psec tests/test_pinblock.py (test_decipher_pinblock_iso_4).
    ("C1D0F8FB4958670DBA40AB1F3752EF0D", "CC17F65586BFD0953010226C4FC5B3CA", "432198765432109870", "1234"),
    # knovichikhin/psec tests/test_pinblock.py test_encipher_pinblock_iso_4_det (random half FF..FF).
    ("00112233445566778899AABBCCDDEEFF", "28B41FDDD29B743E93124BD8E32D921E", "1234567890123456789", "1234"),
])
def test_iso4_published_enciphered_blocks(key: str, block: str, pan: str, pin: str) -> None:
    c = BlockCipher(Algorithm.AES_128, H(key))
    assert pinblock.decipher(PinBlockFormat.ISO_4, c, H(block), pan) == pin


@given(st.sampled_from([Algorithm.AES_128, Algorithm.AES_192, Algorithm.AES_256]).flatmap(
    lambda alg: st.tuples(st.just(alg), keys(alg))), pins, st.text("0123456789", min_size=1, max_size=19))
def test_iso4_encipherment_is_the_reference_construction(alg_key: tuple[Algorithm, bytes], pin: str, pan: str) -> None:
    # Whatever the key, PIN and PAN (short PANs right-justified, clause 9.3.6.3), pyca's AES undoes
    # hsmsvc's block into the PIN field written out independently: 4, length, PIN, A fill.
    alg, key = alg_key
    block = pinblock.encipher(PinBlockFormat.ISO_4, BlockCipher(alg, key), pin, pan)
    assert ref.iso4_decipher(alg, key, block, pan)[:8] == ref.iso4_pin_field(pin, b"")


# --- properties: round trips ---------------------------------------------------

@given(pins, pans)
def test_iso0_round_trip(pin: str, pan: str) -> None:
    assert pinblock.decode_iso0(pinblock.encode_iso0(pin, pan), pan) == pin


@given(pins)
def test_iso1_round_trip(pin: str) -> None:
    assert pinblock.decode_iso1(pinblock.encode_iso1(pin)) == pin


@given(pins)
def test_iso2_round_trip(pin: str) -> None:
    assert pinblock.decode_iso2(pinblock.encode_iso2(pin)) == pin


@given(pins, pans)
def test_iso3_round_trip_and_fill(pin: str, pan: str) -> None:
    block = pinblock.encode_iso3(pin, pan)
    clear = bytes(a ^ b for a, b in zip(block, pinblock.pan_field_iso0(pan))).hex().upper()
    assert set(clear[2 + len(pin):]) <= set("ABCDEF")
    assert pinblock.decode_iso3(block, pan) == pin


@given(pins, pans)
def test_sm4_0_round_trip(pin: str, pan: str) -> None:
    block = pinblock.encode_sm4_0(pin, pan)
    assert len(block) == 16
    assert pinblock.decode_sm4_0(block, pan) == pin


CIPHERS = {
    PinBlockFormat.ISO_0: Algorithm.TDES_2KEY,
    PinBlockFormat.ISO_1: Algorithm.TDES_3KEY,
    PinBlockFormat.ISO_2: Algorithm.TDES_2KEY,
    PinBlockFormat.ISO_3: Algorithm.TDES_2KEY,
    PinBlockFormat.ISO_4: Algorithm.AES_256,
    PinBlockFormat.SM4_0: Algorithm.SM4,
}


@pytest.mark.parametrize("fmt", list(PinBlockFormat))
@given(data=st.data(), pin=pins, pan=pans)
def test_encipher_decipher_round_trip(fmt: PinBlockFormat, data: st.DataObject, pin: str, pan: str) -> None:
    alg = CIPHERS[fmt]
    c = BlockCipher(alg, data.draw(keys(alg)))
    block = pinblock.encipher(fmt, c, pin, pan)
    assert len(block) == fmt.block_size
    assert pinblock.decipher(fmt, c, block, pan) == pin


@given(pins, pans)
def test_iso4_aes_and_sm4_same_construction(pin: str, pan: str) -> None:
    for alg in (Algorithm.AES_128, Algorithm.SM4):
        c = BlockCipher(alg, bytes(range(16)))
        assert pinblock.decipher(PinBlockFormat.ISO_4, c, pinblock.encipher(PinBlockFormat.ISO_4, c, pin, pan),
                                 pan) == pin


# --- properties: rejection of bad input ---------------------------------------

@given(st.text(max_size=20).filter(lambda s: not (s.isdigit() and s.isascii() and 4 <= len(s) <= 12)))
def test_bad_pin_rejected(pin: str) -> None:
    with pytest.raises(InvalidInput) as e:
        pinblock.encode_iso0(pin, "4012345678909")
    assert e.value.field == "pin"


@given(st.text(max_size=25).filter(lambda s: not (s.isdigit() and s.isascii() and 13 <= len(s) <= 19)))
def test_bad_pan_rejected(pan: str) -> None:
    with pytest.raises(InvalidInput) as e:
        pinblock.encode_iso0("1234", pan)
    assert e.value.field == "pan"


@given(st.binary().filter(lambda b: len(b) != 8))
def test_wrong_length_block_rejected(block: bytes) -> None:
    with pytest.raises(InvalidPinBlock):
        pinblock.decode_iso0(block, "4012345678909")


@pytest.mark.parametrize(
    "block",
    [
        H("141274EDCBA9876F"),  # wrong control field
        H("031274EDCBA9876F"),  # PIN length 3
        H("0D1274EDCBA9876F"),  # PIN length 13
        H("04127AEDCBA9876F"),  # non-digit in PIN
        H("041274EDCBA9876E"),  # fill not F
    ],
)
def test_iso0_each_fault_is_the_same_error(block: bytes) -> None:
    with pytest.raises(InvalidPinBlock) as e:
        pinblock.decode_iso0(block, "4012345678909")
    assert str(e.value) == "pin_block: PIN block invalid"


def test_iso0_wrong_pan_rejected() -> None:
    with pytest.raises(InvalidPinBlock):
        pinblock.decode_iso0(H("041274EDCBA9876F"), "4012345678919")


def test_iso3_fill_outside_a_to_f_rejected() -> None:
    # Fill digit 9 is not in A-F (clause 9.3.5.2).
    bad = bytes(a ^ b for a, b in zip(H("3412349999999999"), pinblock.pan_field_iso0("4012345678909")))
    with pytest.raises(InvalidPinBlock):
        pinblock.decode_iso3(bad, "4012345678909")


def test_iso4_fill_must_be_a() -> None:
    field = H("441234ABAAAAAAAA") + bytes(8)
    with pytest.raises(InvalidPinBlock):
        pinblock.decode_iso4_pin_field(field)


@pytest.mark.parametrize(
    ("fmt", "alg"),
    [
        (PinBlockFormat.ISO_0, Algorithm.AES_128),
        (PinBlockFormat.ISO_4, Algorithm.TDES_2KEY),
        (PinBlockFormat.SM4_0, Algorithm.AES_128),
    ],
)
def test_format_cipher_mismatch_rejected(fmt: PinBlockFormat, alg: Algorithm) -> None:
    c = BlockCipher(alg, bytes(alg.key_length) if not alg.is_tdes else H("0123456789ABCDEFFEDCBA9876543210"))
    with pytest.raises(InvalidInput) as e:
        pinblock.encipher(fmt, c, "1234", "4012345678909")
    assert e.value.field == "pin_block_format"


def test_pan_required_for_pan_bound_formats() -> None:
    c = BlockCipher(Algorithm.TDES_2KEY, H("0123456789ABCDEFFEDCBA9876543210"))
    with pytest.raises(InvalidInput) as e:
        pinblock.encipher(PinBlockFormat.ISO_0, c, "1234", None)
    assert e.value.field == "pan"


def test_iso0_pin_fields_x9_24_1_2009_annex_a4() -> None:
    # PIN 1234, PAN 4012345678909: plain block 041274EDCBA9876F, PIN field 041234FFFFFFFFFF.
    block = bytes.fromhex("041274EDCBA9876F")
    assert pinblock.iso0_pin_fields(block * 2, ["4012345678909"] * 2) == (
        bytes.fromhex("041234FFFFFFFFFF") * 2, [True, True])
    fields, good = pinblock.iso0_pin_fields(bytes.fromhex("031274EDCBA9876F") + block, ["4012345678909"] * 2)
    assert good == [False, True] and fields[8:] == bytes.fromhex("041234FFFFFFFFFF")
    assert pinblock.iso0_pin_fields(b"", []) == (b"", [])


@given(st.lists(st.tuples(pins, pans), min_size=1, max_size=30), st.integers(0, 63))
def test_iso0_pin_fields_equal_exactly_when_the_pins_are(people: list[tuple[str, str]], flip: int) -> None:
    """Each field is its PIN's format 0 PIN field, whatever the PAN; a flipped bit is caught
    as decode_iso0 catches it."""
    blocks = b"".join(pinblock.encode_iso0(pin, pan) for pin, pan in people)
    fields, good = pinblock.iso0_pin_fields(blocks, [pan for _, pan in people])
    assert good == [True] * len(people)
    for i, (pin, _) in enumerate(people):
        other = people[0][1]
        assert fields[8 * i:8 * i + 8] == pinblock.iso0_pin_fields(pinblock.encode_iso0(pin, other), [other])[0]
        assert (fields[8 * i:8 * i + 8] == fields[:8]) is (pin == people[0][0])
    bad = bytearray(blocks)
    bad[flip // 8] ^= 1 << (flip % 8)
    try:
        pinblock.decode_iso0(bytes(bad[:8]), people[0][1])
        want = True
    except InvalidPinBlock:
        want = False
    assert pinblock.iso0_pin_fields(bytes(bad), [pan for _, pan in people])[1][0] is want


@given(st.lists(st.text(max_size=20), min_size=1, max_size=4).filter(
    lambda ps: not all(p.isascii() and p.isdigit() and 13 <= len(p) <= 19 for p in ps)))
def test_iso0_pin_fields_refuse_a_malformed_pan(bad: list[str]) -> None:
    with pytest.raises(InvalidInput, match="pan"):
        pinblock.iso0_pin_fields(bytes(8 * len(bad)), bad)


def test_iso4_run_functions_x9_24_3_2017_supplement() -> None:
    # The supplement's PAN 4111111111111111 and PIN field 441234AAAAAAAAAA (its random half ours).
    assert pinblock.iso4_pan_fields(["4111111111111111"] * 2) == H("44111111111111111000000000000000") * 2
    field = H("441234AAAAAAAAAA") + H("0123456789ABCDEF")
    assert pinblock.check_iso4_pin_fields(field * 2) == [True, True]
    assert pinblock.check_iso4_pin_fields(H("341234AAAAAAAAAA") + field[8:] + field) == [False, True]
    renewed = pinblock.renew_iso4_pin_fields(field * 2)
    assert renewed[:8] == renewed[16:24] == field[:8] and renewed[8:16] != renewed[24:]
    assert pinblock.iso4_pan_fields([]) == b"" and pinblock.check_iso4_pin_fields(b"") == []


pans_any = st.text("0123456789", min_size=1, max_size=19)


@given(st.lists(pans_any, min_size=1, max_size=30), st.booleans())
def test_iso4_pan_fields_are_each_pans_field(ps: list[str], one_length: bool) -> None:
    if one_length:
        ps = [p.ljust(len(ps[0]), "7")[:len(ps[0])] for p in ps]
    assert pinblock.iso4_pan_fields(ps) == b"".join(pinblock.encode_iso4_pan_field(p) for p in ps)


@given(st.lists(st.text(max_size=20), min_size=1, max_size=4).filter(
    lambda ps: not all(p.isascii() and p.isdigit() and 1 <= len(p) <= 19 for p in ps)))
def test_iso4_pan_fields_refuse_a_malformed_pan(bad: list[str]) -> None:
    with pytest.raises(InvalidInput, match="pan"):
        pinblock.iso4_pan_fields(bad)


def _iso4_decodes(field: bytes) -> bool:
    try:
        pinblock.decode_iso4_pin_field(field)
        return True
    except InvalidPinBlock:
        return False


@given(st.lists(st.one_of(pins.map(pinblock.encode_iso4_pin_field), st.binary(min_size=16, max_size=16)),
                min_size=1, max_size=30))
def test_iso4_pin_fields_checked_as_decode_checks_them(fields: list[bytes]) -> None:
    decodes = _iso4_decodes
    run = b"".join(fields)
    assert pinblock.check_iso4_pin_fields(run) == [decodes(f) for f in fields]
    renewed = pinblock.renew_iso4_pin_fields(run)
    assert len(renewed) == len(run)
    for i, f in enumerate(fields):
        assert renewed[16 * i:16 * i + 8] == f[:8]
    assert pinblock.check_iso4_pin_fields(renewed) == [decodes(f) for f in fields]


@given(st.binary(max_size=40).filter(lambda b: len(b) % 16 != 0))
def test_iso4_pin_field_runs_refuse_a_partial_field(data: bytes) -> None:
    with pytest.raises(InvalidInput):
        pinblock.check_iso4_pin_fields(data)
    with pytest.raises(InvalidInput):
        pinblock.renew_iso4_pin_fields(data)


@st.composite
def _near_fields(draw: st.DrawFn, control: int, fill: str) -> str:
    """A well-formed 16-nibble PIN field as hex, or one with a nibble or two changed."""
    pin = draw(pins)
    text = list(f"{control}{len(pin):X}{pin}".ljust(16, fill))
    for _ in range(draw(st.integers(0, 2))):
        text[draw(st.one_of(st.sampled_from([0, 1]), st.integers(0, 15)))] = draw(st.sampled_from("0123456789ABCDEF"))
    return "".join(text)


@given(st.lists(_near_fields(0, "F"), min_size=1, max_size=20), st.lists(pans, min_size=1, max_size=3))
def test_iso0_run_check_is_each_blocks_decode(fields: list[str], some_pans: list[str]) -> None:
    ps = [some_pans[i % len(some_pans)] for i in range(len(fields))]
    blocks = [bytes(a ^ b for a, b in zip(bytes.fromhex(f), pinblock.pan_field_iso0(p))) for f, p in zip(fields, ps)]

    def decodes(b: bytes, p: str) -> bool:
        try:
            pinblock.decode_iso0(b, p)
            return True
        except InvalidPinBlock:
            return False

    assert pinblock.check_iso0_blocks(b"".join(blocks), ps) == [decodes(b, p) for b, p in zip(blocks, ps)]


@given(st.lists(_near_fields(4, "A"), min_size=1, max_size=20))
def test_iso4_run_check_is_each_fields_decode(fields: list[str]) -> None:
    run = [bytes.fromhex(f) + bytes(8) for f in fields]
    assert pinblock.check_iso4_pin_fields(b"".join(run)) == [_iso4_decodes(f) for f in run]
