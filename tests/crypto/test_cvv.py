"""Card verification values (hsmsvc.crypto.cvv, issue 35): published vectors, and an independent
reference written here with pyca/cryptography and the standard library only."""

import warnings
from collections.abc import Callable

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from hypothesis import given
from hypothesis import strategies as st

from hsmsvc.crypto import cvv
from hsmsvc.crypto.cvv import CvvKind
from hsmsvc.errors import HsmsvcError, InvalidInput, VerificationFailed

H = bytes.fromhex


# --- Independent reference: nothing from hsmsvc below this line until the tests. ---------------


def _ecb(key: bytes, block: bytes, *, decrypt: bool = False) -> bytes:
    """DES (8-byte key) or two-key TDES (16-byte key) ECB."""
    full = key * 3 if len(key) == 8 else key + key[:8]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cipher = Cipher(TripleDES(full), modes.ECB())
    ctx = cipher.decryptor() if decrypt else cipher.encryptor()
    return ctx.update(block) + ctx.finalize()


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def ref_cvv_method(key: bytes, data: str, n: int) -> str:
    """IBM CCA appendix E figure E-6, step by step: E_A, XOR, E_A, D_B, E_A, then decimalize."""
    block = H(data + "0" * (32 - len(data)))
    x = _ecb(key[:8], _xor(_ecb(key[:8], block[:8]), block[8:]))
    x = _ecb(key[:8], _ecb(key[8:], x, decrypt=True))
    hexed = x.hex().upper()
    digits = [c for c in hexed if c.isdigit()]
    digits += [str("ABCDEF".index(c)) for c in hexed if c in "ABCDEF"]
    return "".join(digits)[:n]


def ref_option_a(mk: bytes, pan: str, psn: str) -> bytes:
    """EMV Book 2 annex A1.4.1 option A: TDES of Y and of Y XOR FF.., odd parity."""
    y = H((pan + psn)[-16:].rjust(16, "0"))
    z = _ecb(mk, y) + _ecb(mk, _xor(y, b"\xff" * 8))
    return bytes((b & 0xFE) | (bin(b & 0xFE).count("1") % 2 == 0) for b in z)


def ref_retail_mac_m2(key: bytes, data: bytes) -> bytes:
    """ISO/IEC 9797-1 MAC algorithm 3, padding method 2: DES-CBC under K, then D_K', E_K."""
    data += b"\x80" + bytes(-(len(data) + 1) % 8)
    h = bytes(8)
    for i in range(0, len(data), 8):
        h = _ecb(key[:8], _xor(h, data[i : i + 8]))
    return _ecb(key[:8], _ecb(key[8:], h, decrypt=True))


def ref_cvc3(key: bytes, track: bytes, un: bytes, atc: bytes) -> str:
    iv = ref_retail_mac_m2(key, track)[6:]
    return "%05d" % int.from_bytes(_ecb(key, iv + un + atc)[6:], "big")


def ref_dcvv(key: bytes, pan: str, expiry: str, atc: bytes, service_code: str) -> str:
    return ref_cvv_method(key, atc.hex() + pan[4:] + expiry + service_code, 3)


# --- Published vectors ----------------------------------------------------------------------------

K0 = H("0123456789ABCDEFFEDCBA9876543210")


def test_psec_documented_example() -> None:
    # knovichikhin/psec, psec/cvv.py, generate_cvv docstring.
    assert cvv.generate_cvv(K0, kind=CvvKind.CVV, pan="1234567890123456", expiry="9912", service_code="220") == "170"


def test_psec_test_vector() -> None:
    # knovichikhin/psec, tests/test_cvv.py, test_generate_cvv.
    k = H("99999999999999998888888888888888")
    assert cvv.generate_cvv(k, kind=CvvKind.CVV, pan="2222222222222222", expiry="3333", service_code="111") == "361"


# CVV test data, CVKA 0123456789ABCDEF, CVKB FEDCBA9876543210, 13- and 16-digit PANs, as reproduced
# at http://fsou.com/html/text/chl/848/84828_4.html ("(三)测试数据").
CVV_TEST_DATA = [
    ("4123456789012", "8701", "101", "370"),
    ("4999988887777", "9105", "111", "649"),
    ("4666655554444", "9206", "120", "821"),
    ("4333322221111", "9307", "141", "697"),
    ("4123456789012345", "8701", "101", "561"),
    ("4999988887777000", "9105", "111", "245"),
    ("4666655554444111", "9206", "120", "664"),
    ("4333322221111222", "9307", "141", "382"),
    # The worked example at http://topic.alibabacloud.com/a/algorithm-generation-7-cvn_8_8_31672247.html
    # (same keys; its intermediate ENCE = 8D5625FA78011A0C).
    ("4123456789012345", "8701", "111", "856"),
]


@pytest.mark.parametrize(("pan", "expiry", "service_code", "expected"), CVV_TEST_DATA)
def test_cvv_test_data(pan: str, expiry: str, service_code: str, expected: str) -> None:
    assert cvv.generate_cvv(K0, kind=CvvKind.CVV, pan=pan, expiry=expiry, service_code=service_code) == expected
    cvv.verify_cvv(K0, kind=CvvKind.CVV, pan=pan, expiry=expiry, service_code=service_code, cvv=expected)


def test_four_digit_worked_example() -> None:
    # UrielYair/CredoraxCourse, src/org/hit/fintech2018/Yair/Assighnment2/CVCTest.java, "Example 1":
    # result after 3DES 24E1A05574051BBF, decimalization candidates 2410557405140115, CVC 2410.
    k = H("D676DCF3AFB73505" "32EAF00EA253D875")
    assert cvv.generate_cvv(k, kind=CvvKind.CVV, pan="4123450990122129", expiry="0721", service_code="202",
                            length=4) == "2410"
    assert ref_cvv_method(k, "4123450990122129" "0721" "202", 16) == "2410557405140115"


def test_cvv2_and_icvv_are_the_method_with_000_and_999() -> None:
    pan, expiry = "4123456789012345", "8701"
    for kind, code in ((CvvKind.CVV2, "000"), (CvvKind.ICVV, "999")):
        assert kind.service_code == code
        assert cvv.generate_cvv(K0, kind=kind, pan=pan, expiry=expiry) == cvv.generate_cvv(
            K0, kind=CvvKind.CVV, pan=pan, expiry=expiry, service_code=code)
    assert CvvKind.CVV.service_code is None


# pyemv: the reference's option A derivation against pyemv's documented examples
# (knovichikhin/pyemv, pyemv/kd.py, module and derive_icc_mk_a docstrings).
@pytest.mark.parametrize(("pan", "psn", "icc_mk"), [
    ("99012345678901234", "45", "67F8292358083E5EA7AB7FDA58D53B6B"),
    ("12345678901234567", "01", "73AD54688CEF2934B0979857E3C719F1"),
])
def test_reference_option_a_pyemv_examples(pan: str, psn: str, icc_mk: str) -> None:
    assert ref_option_a(K0, pan, psn) == H(icc_mk)


# knovichikhin/pyemv, tests/test_cvv_hsm.py (values checked against an HSM): ICC CVC3 key by option A
# from issuer CVC3 key 01234567899876543210012345678998, PAN 5123456789012345, PSN 00 (KCV BB8F);
# ATC 005E, UN 00000899; the test compares the 3 rightmost CVC3 digits.
PYEMV_ISS_CVC3 = H("01234567899876543210012345678998")
PYEMV_ICC_CVC3 = ref_option_a(PYEMV_ISS_CVC3, "5123456789012345", "00")
PYEMV_CVC3 = [
    (H("5123456789012345D35121010000000000000F"), "488"),
    (b"B5123456789012345^KENOBI/OBIWAN^3512101000000000000000000000000", "419"),
]


def test_pyemv_icc_cvc3_key_check_value() -> None:
    assert _ecb(PYEMV_ICC_CVC3, bytes(8))[:2] == H("BB8F")


@pytest.mark.parametrize(("track", "digits"), PYEMV_CVC3)
def test_pyemv_cvc3_hsm_vectors(track: bytes, digits: str) -> None:
    value = cvv.generate_cvc3(PYEMV_ICC_CVC3, track=track, unpredictable_number=H("00000899"), atc=H("005E"))
    assert value[-3:] == digits
    cvv.verify_cvc3(PYEMV_ICC_CVC3, track=track, unpredictable_number=H("00000899"), atc=H("005E"), cvc3=digits)


def test_pyemv_cvc3_documented_example() -> None:
    # knovichikhin/pyemv, pyemv/cvv.py, generate_cvc3 docstring: the track 2 case in full, '29488'.
    track = H("5123456789012345D35121010000000000000F")
    assert cvv.generate_cvc3(PYEMV_ICC_CVC3, track=track, unpredictable_number=H("00000899"),
                             atc=H("005E")) == "29488"


# spochic/gep3, tests/dsc_test.py (and tests/key_management_test.py for where the keys come from).
GEP3_CVC3_KEY = H("A3D0BC420A766611F7BC19E7F2E221AF")


def test_gep3_ivcvc3_and_cvc3() -> None:
    track = H("5413123456784800D20061019000990000000F")
    assert cvv.generate_ivcvc3(GEP3_CVC3_KEY, track=track) == H("A46B")
    assert cvv.generate_cvc3(GEP3_CVC3_KEY, track=track, unpredictable_number=H("00000899"),
                             atc=H("005E")) == "30687"


GEP3_DCVV = [
    ("9991C31043BFD9858016396CF24F0D6F", "4012340000000016", "1228", "369"),
    ("1274FB0FCD3E27E088B741553037F089", "4761739001010010", "1220", "802"),
]


@pytest.mark.parametrize(("key", "pan", "expiry", "expected"), GEP3_DCVV)
def test_gep3_dcvv(key: str, pan: str, expiry: str, expected: str) -> None:
    assert cvv.generate_dcvv(H(key), pan=pan, expiry=expiry, atc=H("0001")) == expected
    cvv.verify_dcvv(H(key), pan=pan, expiry=expiry, atc=H("0001"), dcvv=expected)


@pytest.mark.parametrize(("mk", "pan", "udk"), [
    # gep3 tests/key_management_test.py; its keys carry even parity, so compare without parity bits.
    ("01234567899876543210012345678998", "5413123456784800", "A3D0BC420A766611F7BC19E7F2E221AF"),
    ("01017391010101101320010101010101", "4012340000000016", "9991C31043BFD9858016396CF24F0D6F"),
])
def test_gep3_keys_are_option_a_keys(mk: str, pan: str, udk: str) -> None:
    def strip(k: bytes) -> bytes:
        return bytes(b & 0xFE for b in k)
    assert strip(ref_option_a(H(mk), pan, "00")) == strip(H(udk))


# --- Against the reference ----------------------------------------------------------------------

keys16 = st.binary(min_size=16, max_size=16)
pans = st.text("0123456789", min_size=12, max_size=19)
expiries = st.text("0123456789", min_size=4, max_size=4)
codes = st.text("0123456789", min_size=3, max_size=3)


@given(keys16, pans, expiries, codes, st.integers(3, 5))
def test_cvv_matches_reference(key: bytes, pan: str, expiry: str, code: str, length: int) -> None:
    got = cvv.generate_cvv(key, kind=CvvKind.CVV, pan=pan, expiry=expiry, service_code=code, length=length)
    assert got == ref_cvv_method(key, pan + expiry + code, length)
    assert cvv.generate_cvv(key, kind=CvvKind.CVV2, pan=pan, expiry=expiry, length=length) == ref_cvv_method(
        key, pan + expiry + "000", length)
    assert cvv.generate_cvv(key, kind=CvvKind.ICVV, pan=pan, expiry=expiry) == ref_cvv_method(
        key, pan + expiry + "999", 3)


@given(keys16, pans, expiries, st.binary(min_size=2, max_size=2), codes)
def test_dcvv_matches_reference(key: bytes, pan: str, expiry: str, atc: bytes, code: str) -> None:
    assert cvv.generate_dcvv(key, pan=pan, expiry=expiry, atc=atc, service_code=code) == ref_dcvv(
        key, pan, expiry, atc, code)


@given(keys16, st.binary(min_size=1, max_size=79), st.binary(min_size=4, max_size=4),
       st.binary(min_size=2, max_size=2))
def test_cvc3_matches_reference(key: bytes, track: bytes, un: bytes, atc: bytes) -> None:
    assert cvv.generate_ivcvc3(key, track=track) == ref_retail_mac_m2(key, track)[6:]
    value = cvv.generate_cvc3(key, track=track, unpredictable_number=un, atc=atc)
    assert value == ref_cvc3(key, track, un, atc)
    for n in (3, 4, 5):
        cvv.verify_cvc3(key, track=track, unpredictable_number=un, atc=atc, cvc3=value[-n:])


def _wrong(value: str, at: int) -> str:
    i = at % len(value)
    return value[:i] + str((int(value[i]) + 1) % 10) + value[i + 1 :]


@given(keys16, pans, expiries, codes, st.integers(3, 5), st.integers(0, 4))
def test_verify_cvv_round_trip_and_wrong_value(key: bytes, pan: str, expiry: str, code: str, length: int,
                                               at: int) -> None:
    value = cvv.generate_cvv(key, kind=CvvKind.CVV, pan=pan, expiry=expiry, service_code=code, length=length)
    cvv.verify_cvv(key, kind=CvvKind.CVV, pan=pan, expiry=expiry, service_code=code, cvv=value)
    with pytest.raises(VerificationFailed):
        cvv.verify_cvv(key, kind=CvvKind.CVV, pan=pan, expiry=expiry, service_code=code, cvv=_wrong(value, at))


def test_verify_wrong_values_raise_the_generic_failure() -> None:
    pan, expiry = "4123456789012345", "8701"
    with pytest.raises(VerificationFailed) as e:
        cvv.verify_cvv(K0, kind=CvvKind.CVV, pan=pan, expiry=expiry, service_code="101", cvv="562")
    assert e.value.field == "cvv"
    with pytest.raises(VerificationFailed):
        # Right digits, wrong kind: 561 is the CVV with service code 101, not the CVV2.
        cvv.verify_cvv(K0, kind=CvvKind.CVV2, pan=pan, expiry=expiry, cvv="561")
    key, dpan, dexp, _ = GEP3_DCVV[0]
    with pytest.raises(VerificationFailed):
        cvv.verify_dcvv(H(key), pan=dpan, expiry=dexp, atc=H("0002"), dcvv="369")
    with pytest.raises(VerificationFailed):
        cvv.verify_cvc3(PYEMV_ICC_CVC3, track=PYEMV_CVC3[0][0], unpredictable_number=H("00000899"),
                        atc=H("005E"), cvc3="29489")


# --- Refusals -----------------------------------------------------------------------------------

PAN = "4123456789012345"
GOOD_CVV: dict[str, object] = {"kind": CvvKind.CVV, "pan": PAN, "expiry": "8701", "service_code": "101"}
TRACK = H("5413123456784800D20061019000990000000F")
GOOD_CVC3: dict[str, object] = {"track": TRACK, "unpredictable_number": H("00000899"), "atc": H("005E")}


@pytest.mark.parametrize(("key", "changes", "field"), [
    (K0[:8], {}, "cvk"),
    (K0 + K0[:8], {}, "cvk"),
    ("0123456789ABCDEFFEDCBA9876543210", {}, "cvk"),
    (K0, {"pan": "41234567890"}, "pan"),
    (K0, {"pan": "41234567890123456789"}, "pan"),
    (K0, {"pan": "412345678901234X"}, "pan"),
    (K0, {"pan": 4123456789012345}, "pan"),
    (K0, {"expiry": "870"}, "expiry"),
    (K0, {"expiry": "87011"}, "expiry"),
    (K0, {"expiry": "87A1"}, "expiry"),
    (K0, {"service_code": "10"}, "service_code"),
    (K0, {"service_code": "1011"}, "service_code"),
    (K0, {"service_code": "1O1"}, "service_code"),
    (K0, {"service_code": None}, "service_code"),
    (K0, {"kind": CvvKind.CVV2}, "service_code"),
    (K0, {"kind": CvvKind.ICVV, "service_code": "999"}, "service_code"),
    (K0, {"kind": "CVV"}, "kind"),
    (K0, {"length": 2}, "length"),
    (K0, {"length": 6}, "length"),
    (K0, {"length": True}, "length"),
    (K0, {"length": 3.0}, "length"),
])
def test_cvv_refusals(key: object, changes: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as e:
        cvv.generate_cvv(key, **{**GOOD_CVV, **changes})  # type: ignore[arg-type]
    assert e.value.field == field


@pytest.mark.parametrize("presented", ["56", "561234", "56a", "", 561, None])
def test_verify_cvv_refuses_malformed_values(presented: object) -> None:
    with pytest.raises(InvalidInput) as e:
        cvv.verify_cvv(K0, cvv=presented, **GOOD_CVV)  # type: ignore[arg-type]
    assert e.value.field == "cvv"


@pytest.mark.parametrize(("changes", "field"), [
    ({"key": K0[:15]}, "key"),
    ({"pan": "4012340000"}, "pan"),
    ({"expiry": "12281"}, "expiry"),
    ({"atc": H("000001")}, "atc"),
    ({"atc": "0001"}, "atc"),
    ({"service_code": "00"}, "service_code"),
])
def test_dcvv_refusals(changes: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"key": K0, "pan": "4012340000000016", "expiry": "1228", "atc": H("0001"), **changes}
    key = args.pop("key")
    with pytest.raises(InvalidInput) as e:
        cvv.generate_dcvv(key, **args)  # type: ignore[arg-type]
    assert e.value.field == field
    with pytest.raises(InvalidInput):
        cvv.verify_dcvv(K0, pan="4012340000000016", expiry="1228", atc=H("0001"), dcvv="36")


@pytest.mark.parametrize(("key", "changes", "field"), [
    (K0[:8], {}, "key"),
    (K0, {"track": b""}, "track"),
    (K0, {"track": bytes(80)}, "track"),
    (K0, {"track": TRACK.hex()}, "track"),
    (K0, {"unpredictable_number": H("000899")}, "unpredictable_number"),
    (K0, {"atc": H("5E")}, "atc"),
])
def test_cvc3_refusals(key: bytes, changes: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as e:
        cvv.generate_cvc3(key, **{**GOOD_CVC3, **changes})  # type: ignore[arg-type]
    assert e.value.field == field


@pytest.mark.parametrize("presented", ["88", "294880", "2948X", ""])
def test_verify_cvc3_refuses_malformed_values(presented: str) -> None:
    with pytest.raises(InvalidInput) as e:
        cvv.verify_cvc3(K0, cvc3=presented, **GOOD_CVC3)  # type: ignore[arg-type]
    assert e.value.field == "cvc3"


def test_refusals_name_no_secret() -> None:
    secrets = [PAN, PAN[6:12], K0.hex(), K0.hex().upper(), "8701", "562"]
    calls: list[Callable[[], object]] = [
        lambda: cvv.generate_cvv(K0, kind=CvvKind.CVV, pan=PAN + "X", expiry="8701", service_code="101"),
        lambda: cvv.generate_cvv(K0[:15], kind=CvvKind.CVV, pan=PAN, expiry="8701", service_code="101"),
        lambda: cvv.verify_cvv(K0, kind=CvvKind.CVV, pan=PAN, expiry="8701", service_code="101", cvv="562"),
        lambda: cvv.verify_dcvv(K0, pan=PAN, expiry="8701", atc=H("0001"), dcvv="562"),
    ]
    for call in calls:
        with pytest.raises(HsmsvcError) as e:
            call()
        text = " ".join([str(e.value), repr(e.value), str(e.value.field), e.value.reason])
        assert not [s for s in secrets if s in text]


junk = st.one_of(st.none(), st.integers(), st.text(max_size=24), st.binary(max_size=24))


@given(junk, junk, junk)
def test_junk_raises_only_invalid_input(a: object, b: object, c: object) -> None:
    calls: list[Callable[[], object]] = [
        lambda: cvv.generate_cvv(a, kind=CvvKind.CVV, pan=b, expiry=c, service_code="101"),  # type: ignore[arg-type]
        lambda: cvv.generate_cvv(K0, kind=CvvKind.CVV2, pan=PAN, expiry=a, length=b),  # type: ignore[arg-type]
        lambda: cvv.verify_cvv(K0, kind=CvvKind.ICVV, pan=PAN, expiry="8701", cvv=a),  # type: ignore[arg-type]
        lambda: cvv.generate_dcvv(K0, pan=a, expiry="1228", atc=b, service_code=c),  # type: ignore[arg-type]
        lambda: cvv.generate_cvc3(K0, track=a, unpredictable_number=b, atc=c),  # type: ignore[arg-type]
        lambda: cvv.verify_cvc3(K0, cvc3=a, **GOOD_CVC3),  # type: ignore[arg-type]
    ]
    for call in calls:
        try:
            call()
        except (InvalidInput, VerificationFailed):
            pass
