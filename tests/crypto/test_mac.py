"""MACs: ISO/IEC 9797-1 algorithms 1 and 3, CMAC, HMAC, UnionPay POS MAC."""

import hashlib
import hmac as std_hmac
import shutil
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hsmsvc.crypto import cmac, mac
from hsmsvc.errors import InvalidInput, VerificationFailed
from hsmsvc.types import Algorithm, HashAlgorithm, Padding
from tests import national_vectors as nv
from tests import reference as ref

from .strategies import keys

H = bytes.fromhex
S1 = b"Now is the time for all "  # ISO/IEC 9797-1:1999 annex B, data string 1 (24 bytes)
S2 = b"Now is the time for it"  # data string 2 (22 bytes)
K = H("0123456789ABCDEF")
K_PRIME = H("FEDCBA9876543210")

# ISO/IEC 9797-1:1999 annex B, MAC algorithm 1 with DES (here TDES with K=K'=K''),
# 32-bit MACs. Annex B prints a few padding-method-2 values with one-bit typos;
# the values below are the corrected ones, consistent across implementations.
ALG1 = [
    (S1, Padding.METHOD_1, "70A30640"),
    (S1, Padding.METHOD_2, "10E1F0F1"),
    (S1, Padding.METHOD_3, "2C58FB8F"),
    (S2, Padding.METHOD_1, "E45B3AD2"),
    (S2, Padding.METHOD_2, "A924C721"),
    (S2, Padding.METHOD_3, "B1ECD6FC"),
]
# Annex B, MAC algorithm 3 with K and K' (= ANSI X9.19 with padding method 1).
ALG3 = [
    (S1, Padding.METHOD_1, "A1C72E74EA3FA9B6"),
    (S1, Padding.METHOD_2, "E9086230CA3BE796"),
    (S1, Padding.METHOD_3, "AB059463D7A7D170"),
    (S2, Padding.METHOD_1, "2E2B1428CC78254F"),
    (S2, Padding.METHOD_2, "5A692CE64F404145"),
    (S2, Padding.METHOD_3, "C59F7EED328DDD69"),
]


@pytest.mark.parametrize(("data", "padding", "expected"), ALG1)
def test_iso9797_1_alg1_annex_b(data: bytes, padding: Padding, expected: str) -> None:
    out = mac.generate_cbc_mac(Algorithm.TDES_3KEY, K * 3, data, padding, 4)
    assert out == H(expected)
    mac.verify_cbc_mac(Algorithm.TDES_3KEY, K * 3, data, padding, H(expected))


@pytest.mark.parametrize(("data", "padding", "expected"), ALG3)
def test_iso9797_1_alg3_annex_b(data: bytes, padding: Padding, expected: str) -> None:
    assert mac.generate_retail_mac(K + K_PRIME, data, padding) == H(expected)
    mac.verify_retail_mac(K + K_PRIME, data, padding, H(expected))


# NIST SP 800-38B appendix D: D.1 AES-128 (0/128/320/512-bit messages);
# D.2 three-key and D.3 two-key TDEA (0/64/160/256-bit messages).
SP800_38B_MSG = H(
    "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710"
)
CMAC_VECTORS = [
    (Algorithm.AES_128, "2b7e151628aed2a6abf7158809cf4f3c", 0, "bb1d6929e95937287fa37d129b756746"),
    (Algorithm.AES_128, "2b7e151628aed2a6abf7158809cf4f3c", 16, "070a16b46b4d4144f79bdd9dd04a287c"),
    (Algorithm.AES_128, "2b7e151628aed2a6abf7158809cf4f3c", 40, "dfa66747de9ae63030ca32611497c827"),
    (Algorithm.AES_128, "2b7e151628aed2a6abf7158809cf4f3c", 64, "51f0bebf7e3b9d92fc49741779363cfe"),
    (Algorithm.TDES_3KEY, "8aa83bf8cbda10620bc1bf19fbb6cd58bc313d4a371ca8b5", 0, "b7a688e122ffaf95"),
    (Algorithm.TDES_3KEY, "8aa83bf8cbda10620bc1bf19fbb6cd58bc313d4a371ca8b5", 8, "8e8f293136283797"),
    (Algorithm.TDES_3KEY, "8aa83bf8cbda10620bc1bf19fbb6cd58bc313d4a371ca8b5", 20, "743ddbe0ce2dc2ed"),
    (Algorithm.TDES_3KEY, "8aa83bf8cbda10620bc1bf19fbb6cd58bc313d4a371ca8b5", 32, "33e6b1092400eae5"),
    (Algorithm.TDES_2KEY, "4cf15134a2850dd58a3d10ba80570d38", 0, "bd2ebf9a3ba00361"),
    (Algorithm.TDES_2KEY, "4cf15134a2850dd58a3d10ba80570d38", 8, "4ff2ab813c53ce83"),
    (Algorithm.TDES_2KEY, "4cf15134a2850dd58a3d10ba80570d38", 20, "62dd1b471902bd4e"),
    (Algorithm.TDES_2KEY, "4cf15134a2850dd58a3d10ba80570d38", 32, "31b1e431dabc4eb8"),
]


@pytest.mark.parametrize(("alg", "key", "mlen", "expected"), CMAC_VECTORS)
def test_cmac_sp800_38b(alg: Algorithm, key: str, mlen: int, expected: str) -> None:
    assert cmac.generate_cmac(alg, H(key), SP800_38B_MSG[:mlen]) == H(expected)
    cmac.verify_cmac(alg, H(key), SP800_38B_MSG[:mlen], H(expected))


def test_a_kept_cmac_gives_every_sp800_38b_vector_in_turn() -> None:
    # One Cmac per key, all its vectors through it in turn, twice: the kept context carries nothing over.
    kept: dict[str, cmac.Cmac] = {}
    for _ in range(2):
        for alg, key, mlen, expected in CMAC_VECTORS:
            c = kept.setdefault(key, cmac.Cmac(alg, H(key)))
            assert c.generate(SP800_38B_MSG[:mlen]) == H(expected)
            assert c.generate(SP800_38B_MSG[:mlen], 4) == H(expected)[:4]


def _openssl(*args: str, data: bytes = b"") -> bytes:
    if shutil.which("openssl") is None:
        pytest.fail("openssl CLI missing: .ci/run installs it")
    return subprocess.run(["openssl", *args], input=data, capture_output=True, check=True).stdout


def test_cmac_sm4_cross_checked_with_openssl() -> None:
    # No SM4-CMAC vector is published in GB/T 15852; cross-check the OpenSSL CLI.
    key = H("0123456789abcdeffedcba9876543210")
    out = _openssl("mac", "-cipher", "SM4-CBC", "-macopt", f"hexkey:{key.hex()}", "CMAC", data=b"payments")
    assert cmac.generate_cmac(Algorithm.SM4, key, b"payments").hex().upper() == out.decode().strip().upper()


# RFC 4231 clause 4: test cases 1 and 2 for HMAC-SHA256.
HMAC_SHA256 = [
    ("0b" * 20, b"Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    ("4a656665", b"what do ya want for nothing?", "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
]


@pytest.mark.parametrize(("key", "data", "expected"), HMAC_SHA256)
def test_hmac_sha256_rfc4231(key: str, data: bytes, expected: str) -> None:
    assert mac.generate_hmac(HashAlgorithm.SHA256, H(key), data) == H(expected)


@given(st.binary(min_size=4, max_size=64), st.lists(st.binary(max_size=100), min_size=1, max_size=5))
def test_a_kept_hmac_gives_each_message_the_rfc2104_tag(key: bytes, msgs: list[bytes]) -> None:
    kept = mac.Hmac(HashAlgorithm.SHA256, key)
    for m in msgs:
        assert kept.generate(m) == std_hmac.new(key, m, hashlib.sha256).digest()
    for k, data, expected in HMAC_SHA256:
        assert mac.Hmac(HashAlgorithm.SHA256, H(k)).generate(data) == H(expected)


@given(st.binary(min_size=4, max_size=64), st.binary(max_size=200))
def test_hmac_sm3_matches_rfc2104_over_sm3(key: bytes, data: bytes) -> None:
    # HMAC-SM3 has no GB/T vector; SM3 itself is checked against GB/T 32905 in
    # test_sm.py, and the HMAC construction against Python's own RFC 2104 code.
    try:
        expected = std_hmac.new(key, data, lambda: hashlib.new("sm3")).digest()
    except ValueError:
        pytest.skip("hashlib has no sm3 here; the openssl cross-check covers it")
    assert mac.generate_hmac(HashAlgorithm.SM3, key, data) == expected


def test_hmac_sm3_cross_checked_with_openssl() -> None:
    key = H("0b" * 20)
    out = _openssl("mac", "-digest", "SM3", "-macopt", f"hexkey:{key.hex()}", "HMAC", data=b"Hi There")
    assert mac.generate_hmac(HashAlgorithm.SM3, key, b"Hi There").hex().upper() == out.decode().strip().upper()


def test_unionpay_pos_mac_xor_stage_matches_published_walkthrough() -> None:
    # Published UnionPay POS MAC walk-through (MAB from an 0200 message): the XOR
    # of the first four 8-byte blocks is 9A1753638ED222D9.
    mab = H("0200302004C020C0981100000000000000005100183402100006324392260009")
    acc = 0
    for i in range(0, len(mab), 8):
        acc ^= int.from_bytes(mab[i:i + 8], "big")
    assert acc.to_bytes(8, "big") == H("9A1753638ED222D9")


@given(keys(Algorithm.TDES_2KEY), st.binary(max_size=300))
def test_unionpay_pos_mac_definition(key: bytes, data: bytes) -> None:
    # The scheme written out step by step, independently of the implementation.
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

    padded = data + bytes(-len(data) % 8) if data else bytes(8)
    blocks = [padded[i:i + 8] for i in range(0, len(padded), 8)]
    r = bytes(8)
    for b in blocks:
        r = bytes(x ^ y for x, y in zip(r, b))
    hexed = r.hex().upper().encode()
    enc = Cipher(TripleDES(key + key[:8]), modes.ECB()).encryptor()
    e1 = enc.update(hexed[:8])
    e2 = enc.update(bytes(x ^ y for x, y in zip(e1, hexed[8:])))
    expected = e2.hex().upper()[:8].encode()
    assert mac.generate_unionpay_pos_mac(Algorithm.TDES_2KEY, key, data) == expected
    mac.verify_unionpay_pos_mac(Algorithm.TDES_2KEY, key, data, expected)


@pytest.mark.parametrize("alg", [Algorithm.TDES_2KEY, Algorithm.TDES_3KEY, Algorithm.SM4])
@given(data=st.data(), msg=st.binary(max_size=300))
def test_unionpay_pos_mac_matches_the_independent_reference(alg: Algorithm, data: st.DataObject, msg: bytes) -> None:
    """The UnionPay POS MAC, TDES and SM4 forms, against tests/reference.py, written from steps a) to
    h) on its own. No published example prints a final SM4 MAC: tests/test_reference.py holds the
    reference's SM4 blocks to a published worked example's, and this property holds hsmsvc to it."""
    key = data.draw(keys(alg))
    expected = ref.unionpay_pos_mac(alg, key, msg)
    assert mac.generate_unionpay_pos_mac(alg, key, msg) == expected
    mac.verify_unionpay_pos_mac(alg, key, msg, expected)
    # Step h): 8 upper-case hex characters, the first 4 bytes of ENC BLOCK2, for either block size.
    assert expected == ref.unionpay_pos_mac_stages(alg, key, msg)[3][:4].hex().upper().encode()
    with pytest.raises(VerificationFailed):
        mac.verify_unionpay_pos_mac(alg, key, msg + b"\x01", expected)


def test_unionpay_pos_mac_sm4_worked_example() -> None:
    """The published SM4 worked example (tests/national_vectors.py names it; tests/test_reference.py
    holds the reference to the blocks b) to e) it prints); its MAC is steps f) to h) of the
    independent reference, 1E80F373."""
    key, data = nv.UNIONPAY_SM4_KEY, nv.UNIONPAY_SM4_DATA
    assert mac.generate_unionpay_pos_mac(Algorithm.SM4, key, data) == ref.unionpay_pos_mac("SM4", key, data)
    assert mac.generate_unionpay_pos_mac(Algorithm.SM4, key, data) == nv.UNIONPAY_SM4_MAC


@pytest.mark.parametrize("alg", [Algorithm.AES_128, Algorithm.AES_256])
def test_unionpay_pos_mac_refuses_aes(alg: Algorithm) -> None:
    with pytest.raises(InvalidInput, match="TDES or SM4"):
        mac.generate_unionpay_pos_mac(alg, bytes(alg.key_length), b"0200")


# --- properties ---------------------------------------------------------------

@pytest.mark.parametrize("alg", [Algorithm.TDES_2KEY, Algorithm.AES_128, Algorithm.SM4])
@given(data=st.data(), msg=st.binary(max_size=200), padding=st.sampled_from(list(Padding)))
def test_cbc_mac_round_trip_and_tamper(alg: Algorithm, data: st.DataObject, msg: bytes, padding: Padding) -> None:
    key = data.draw(keys(alg))
    tag = mac.generate_cbc_mac(alg, key, msg, padding)
    mac.verify_cbc_mac(alg, key, msg, padding, tag)
    with pytest.raises(VerificationFailed):
        mac.verify_cbc_mac(alg, key, msg, padding, bytes([tag[0] ^ 1]) + tag[1:])


@given(keys(Algorithm.TDES_2KEY), st.binary(max_size=200), st.binary(min_size=1, max_size=200))
def test_retail_mac_detects_changed_data(key: bytes, msg: bytes, suffix: bytes) -> None:
    tag = mac.generate_retail_mac(key, msg, Padding.METHOD_2)
    with pytest.raises(VerificationFailed):
        mac.verify_retail_mac(key, msg + suffix, Padding.METHOD_2, tag)


def _cbc_mac_by_blocks(alg: Algorithm, key: bytes, msg: bytes, padding: Padding) -> bytes:
    """Clause 7 step by step (ECB per block, XOR by hand): an independent check of CbcMac's chaining."""
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

    from hsmsvc.crypto._cipher import primitive

    ecb = Cipher(primitive(alg, key), modes.ECB()).encryptor()
    bs = alg.block_size
    padded, h = mac.pad(msg, padding, bs), bytes(bs)
    for i in range(0, len(padded), bs):
        h = ecb.update(bytes(a ^ b for a, b in zip(h, padded[i:i + bs])))
    return h


@pytest.mark.parametrize("alg", [Algorithm.TDES_2KEY, Algorithm.AES_128, Algorithm.SM4])
@given(data=st.data(), msgs=st.lists(st.binary(max_size=70), min_size=1, max_size=6),
       padding=st.sampled_from(list(Padding)))
def test_a_kept_cbc_mac_gives_each_message_the_mac_it_has_alone(
        alg: Algorithm, data: st.DataObject, msgs: list[bytes], padding: Padding) -> None:
    key = data.draw(keys(alg))
    kept, retail = mac.CbcMac(alg, key), mac.CbcMac(alg, key[:16], retail=True) if alg.is_tdes else None
    for msg in msgs:
        assert kept.generate(msg, padding) == _cbc_mac_by_blocks(alg, key, msg, padding)
        if retail is not None:
            assert retail.generate(msg, padding) == mac.generate_retail_mac(key[:16], msg, padding)
    # A refused message leaves the kept context as it was.
    with pytest.raises(InvalidInput):
        kept.generate(b"x", padding, 3)
    assert kept.generate(msgs[0], padding) == _cbc_mac_by_blocks(alg, key, msgs[0], padding)


@pytest.mark.parametrize(("data", "padding", "expected"), ALG3)
def test_a_kept_retail_mac_matches_annex_b_message_after_message(data: bytes, padding: Padding,
                                                                  expected: str) -> None:
    kept = mac.CbcMac(Algorithm.TDES_2KEY, K + K_PRIME, retail=True)
    for _ in range(3):
        assert kept.generate(data, padding) == H(expected)
        assert kept.generate(S1 + S2, padding) == mac.generate_retail_mac(K + K_PRIME, S1 + S2, padding)


@given(st.binary(max_size=100).filter(lambda b: len(b) not in (16, 24)))
def test_wrong_key_length_rejected(key: bytes) -> None:
    with pytest.raises(InvalidInput) as e:
        cmac.generate_cmac(Algorithm.TDES_3KEY if len(key) != 24 else Algorithm.AES_128, key, b"x")
    assert e.value.field == "key"


@pytest.mark.parametrize("length", [0, 3, 9, 17])
def test_bad_mac_length_rejected(length: int) -> None:
    with pytest.raises(InvalidInput) as e:
        mac.generate_cbc_mac(Algorithm.TDES_2KEY, H("0123456789ABCDEFFEDCBA9876543210"), b"x", Padding.METHOD_1, length)
    assert e.value.field == "mac_length"


def test_padding_method_1_of_empty_is_one_block() -> None:
    # ISO/IEC 9797-1:2011 clause 6.3.1: the padded string has positive length.
    assert mac.pad(b"", Padding.METHOD_1, 8) == bytes(8)
    assert mac.pad(b"", Padding.METHOD_2, 8) == H("8000000000000000")
