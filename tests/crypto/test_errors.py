"""Every rejection is a typed error whose message names field and rule, never the value."""

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hsmsvc.crypto import cmac, components, ibm3624, kcv, mac, pinblock, pindigest, pvv, sm2, tr31
from hsmsvc.crypto._cipher import BlockCipher
from hsmsvc.errors import HsmsvcError
from hsmsvc.types import Algorithm, HashAlgorithm, Padding, PinBlockFormat

H = bytes.fromhex
PIN = "987654"
PAN = "4111111111111111"
KEY = H("0123456789ABCDEFFEDCBA9876543210")
SECRETS = [PIN, PAN, PAN[6:12], KEY.hex(), KEY.hex().upper(), "98765", "0123456789ABCDEF"]
TDES = BlockCipher(Algorithm.TDES_2KEY, KEY)
BLOCK = pinblock.encipher(PinBlockFormat.ISO_0, TDES, PIN, PAN)

# Each entry provokes one rejection path while secrets are in play.
REJECTIONS: list[tuple[str, Callable[[], object]]] = [
    ("pin too long", lambda: pinblock.encode_iso0(PIN * 3, PAN)),
    ("pin not digits", lambda: pinblock.encode_iso0(PIN[:-1] + "x", PAN)),
    ("pan too short", lambda: pinblock.encode_iso0(PIN, PAN[:10])),
    ("pan not digits", lambda: pinblock.encode_iso0(PIN, PAN[:-1] + "Z")),
    ("wrong pan on decode", lambda: pinblock.decipher(PinBlockFormat.ISO_0, TDES, BLOCK, "4111111111111129")),
    ("wrong key on decode", lambda: pinblock.decipher(
        PinBlockFormat.ISO_0, BlockCipher(Algorithm.TDES_2KEY, KEY[::-1]), BLOCK, PAN)),
    ("wrong format on decode", lambda: pinblock.decipher(PinBlockFormat.ISO_3, TDES, BLOCK, PAN)),
    ("short block", lambda: pinblock.decipher(PinBlockFormat.ISO_0, TDES, BLOCK[:7], PAN)),
    ("format/cipher mismatch", lambda: pinblock.encipher(PinBlockFormat.ISO_4, TDES, PIN, PAN)),
    ("iso1 fill", lambda: pinblock.encode_iso1(PIN, "ZZ")),
    ("mac verify", lambda: mac.verify_retail_mac(KEY, PIN.encode(), Padding.METHOD_1, bytes(8))),
    ("cmac verify", lambda: cmac.verify_cmac(Algorithm.TDES_2KEY, KEY, PAN.encode(), bytes(8))),
    ("hmac short key", lambda: mac.generate_hmac(HashAlgorithm.SHA256, KEY[:3], PIN.encode())),
    ("hmac verify", lambda: mac.verify_hmac(HashAlgorithm.SM3, KEY, PIN.encode(), bytes(16))),
    ("unionpay alg", lambda: mac.generate_unionpay_pos_mac(Algorithm.AES_128, KEY, b"")),
    ("key length", lambda: cmac.generate_cmac(Algorithm.AES_256, KEY, b"")),
    ("kcv verify", lambda: kcv.verify_kcv(Algorithm.TDES_2KEY, KEY, H("000000"))),
    ("weak key", lambda: components.check_tdes_key(KEY[:8] * 2)),
    ("one component", lambda: components.combine(Algorithm.TDES_2KEY, [KEY])),
    ("ibm offset verify", lambda: ibm3624.verify_offset(BlockCipher(Algorithm.TDES_2KEY, KEY), validation_data=PAN,
                                                        table="0123456789012345", pin=PIN, offset="000000")),
    ("ibm bad validation data", lambda: ibm3624.generate_offset(BlockCipher(Algorithm.TDES_2KEY, KEY),
                                                                validation_data=PAN + "Q", table="0123456789012345",
                                                                pin=PIN)),
    ("ibm bad pin", lambda: ibm3624.generate_offset(BlockCipher(Algorithm.TDES_2KEY, KEY), validation_data=PAN,
                                                    table="0123456789012345", pin=PIN + "x")),
    ("pvv verify", lambda: pvv.verify_pvv(BlockCipher(Algorithm.TDES_2KEY, KEY), PAN, 1, PIN, "0000")),
    ("pvv bad pan", lambda: pvv.generate_pvv(BlockCipher(Algorithm.TDES_2KEY, KEY), PAN + "x", 1, PIN)),
    ("digest verify", lambda: pindigest.verify_pin_digest(HashAlgorithm.SHA256, KEY, PAN, PIN, bytes(32))),
    ("tr31 tampered", lambda: tr31.unwrap(KEY, "B0080P0TE00E0000" + "0" * 64)),
    ("tr31 wrong kbpk length", lambda: tr31.unwrap(KEY[:8], "B0080P0TE00E0000" + "0" * 64)),
    ("sm2 bad signature", lambda: sm2.verify(sm2.generate_private_key().public, PIN.encode(), bytes(64))),
    ("sm2 bad ciphertext", lambda: sm2.decrypt(sm2.generate_private_key(), b"\x04" + bytes(120))),
    ("sm2 bad der", lambda: sm2.signature_from_der(KEY)),
]


@pytest.mark.parametrize(("name", "call"), REJECTIONS, ids=[n for n, _ in REJECTIONS])
def test_rejection_is_typed_and_leaks_nothing(name: str, call: Callable[[], object]) -> None:
    with pytest.raises(HsmsvcError) as e:
        call()
    err = e.value
    text = " ".join([str(err), repr(err), repr(err.args), str(err.field), err.reason])
    for secret in SECRETS:
        assert secret not in text, f"{name}: message carries a secret"
    assert err.reason, "every rejection names its rule"


junk = st.one_of(st.text(max_size=40), st.binary(max_size=40))


@given(junk, junk)
def test_fuzzed_inputs_raise_only_typed_errors(a: object, b: object) -> None:
    calls: list[Callable[[], object]] = [
        lambda: pinblock.decode_iso0(a, b),  # type: ignore[arg-type]
        lambda: pinblock.encode_iso3(a, b),  # type: ignore[arg-type]
        lambda: pinblock.decode_iso4_pin_field(a),  # type: ignore[arg-type]
        lambda: tr31.unwrap(KEY, a),  # type: ignore[arg-type]
        lambda: sm2.signature_from_der(a),  # type: ignore[arg-type]
        lambda: pvv.generate_pvv(BlockCipher(Algorithm.TDES_2KEY, KEY), a, 1, b),  # type: ignore[arg-type]
        lambda: ibm3624.generate_offset(BlockCipher(Algorithm.TDES_2KEY, KEY), validation_data=a,  # type: ignore[arg-type]
                                        table="0123456789012345", pin=b),  # type: ignore[arg-type]
        lambda: kcv.verify_kcv(Algorithm.AES_128, bytes(16), a),  # type: ignore[arg-type]
    ]
    for call in calls:
        try:
            call()
        except HsmsvcError:
            pass
