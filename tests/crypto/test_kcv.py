"""Key check values against the KCVs published with the TR-31:2018 annex keys."""

import pytest
from gmssl.sm4 import SM4_ENCRYPT, CryptSM4
from hypothesis import given

from hsmsvc.crypto import kcv
from hsmsvc.errors import InvalidInput, VerificationFailed
from hsmsvc.types import Algorithm, KcvMethod
from tests import reference as ref

from .strategies import keys

H = bytes.fromhex

# (algorithm, key, KCV); TR-31:2018 annex A.7 and payShield 10K examples as
# published with the openemv/tr31 test data.
KCVS = [
    (Algorithm.TDES_2KEY, "F039121BEC83D26B169BDCD5B22AAF8F", "CB9DEA"),  # A.7.2.1
    (Algorithm.TDES_2KEY, "3F419E1CB7079442AA37474C2EFBF8B8", "57C409"),  # A.7.2.2
    (Algorithm.TDES_2KEY, "EDB380DD340BC2620247D445F5B8D678", "F4B08D"),  # A.7.3.1
    (Algorithm.TDES_2KEY, "E8BC63E5479455E26577F715D587FE68", "9A4212"),  # A.7.3.2
    (Algorithm.TDES_2KEY, "1FA1F7CEC798D91545DA8AE0C7796BD9", "FF5087"),  # payShield D block
    (Algorithm.AES_128, "3F419E1CB7079442AA37474C2EFBF8B8", "08793E"),  # A.7.4 (CMAC KCV)
    (Algorithm.AES_256, "BE19E6A07A760F10EF8E83A226B63AAD141F463FDDD4F47DB244B4023EC3CACC", "0A00E3"),
]


@pytest.mark.parametrize(("alg", "key", "expected"), KCVS)
def test_published_kcvs(alg: Algorithm, key: str, expected: str) -> None:
    assert kcv.kcv(alg, H(key)) == H(expected)
    kcv.verify_kcv(alg, H(key), H(expected))


def test_tdes_kcv_is_encrypted_zeros_8_bytes() -> None:
    # The classic 16-hex KCV (payShield BU "KCV type 0"): E(K, 0^64).
    assert kcv.kcv(Algorithm.TDES_2KEY, H("0123456789ABCDEFFEDCBA9876543210"), 8) == H("08D7B4FB629D0885")


@given(keys(Algorithm.SM4))
def test_sm4_kcv_is_encrypted_zeros(key: bytes) -> None:
    # Cross-checked with gmssl's independent pure-Python SM4.
    c = CryptSM4()
    c.set_key(key, SM4_ENCRYPT)
    assert kcv.kcv(Algorithm.SM4, key) == bytes(c.crypt_ecb(bytes(16))[:3])


@given(keys(Algorithm.AES_128))
def test_verify_rejects_wrong_kcv(key: bytes) -> None:
    good = kcv.kcv(Algorithm.AES_128, key)
    with pytest.raises(VerificationFailed):
        kcv.verify_kcv(Algorithm.AES_128, key, bytes([good[0] ^ 0x80]) + good[1:])


@pytest.mark.parametrize("n", [0, 1, 9])
def test_kcv_length_bounds(n: int) -> None:
    with pytest.raises(InvalidInput):
        kcv.kcv(Algorithm.TDES_2KEY, H("0123456789ABCDEFFEDCBA9876543210"), n)


# The legacy zero-block AES KCV: NIST AESAVS Appendix B.2 KeySbox (AES-128 vector 0; AES-256 vector 0),
# whose plaintext is the zero block, so the ciphertext's first bytes are the ECB-form KCV.
AES_ECB_KCVS = [
    (Algorithm.AES_128, "10a58869d74be5a374cf867cfb473859", "6D251E"),
    (Algorithm.AES_256, "c47b0294dbbbee0fec4757f22ffeee3587ca4730c3d33b691df38bab076bc558", "46F2FB"),
]


@pytest.mark.parametrize(("alg", "key", "expected"), AES_ECB_KCVS)
def test_published_aes_ecb_kcvs(alg: Algorithm, key: str, expected: str) -> None:
    assert kcv.kcv(alg, H(key), method=KcvMethod.ECB) == H(expected)
    # The default stays X9.24-1:2017's CMAC form, which differs.
    assert kcv.kcv(alg, H(key)) == kcv.kcv(alg, H(key), method=KcvMethod.CMAC) != H(expected)


@given(keys(Algorithm.AES_192))
def test_aes_kcv_methods_match_pyca(key: bytes) -> None:
    assert kcv.kcv(Algorithm.AES_192, key, method=KcvMethod.ECB) == ref.aes_ecb_kcv(key)
    assert kcv.kcv(Algorithm.AES_192, key, method=KcvMethod.CMAC) == ref.kcv("AES_192", key)


def test_cmac_kcv_is_not_for_tdes() -> None:
    key = H("0123456789ABCDEFFEDCBA9876543210")
    with pytest.raises(InvalidInput) as e:
        kcv.kcv(Algorithm.TDES_2KEY, key, method=KcvMethod.CMAC)
    assert e.value.field == "kcv_method"
    assert kcv.kcv(Algorithm.TDES_2KEY, key, method=KcvMethod.ECB) == kcv.kcv(Algorithm.TDES_2KEY, key)


def test_sm4_kcv_is_ecb_by_default_and_cmac_on_request() -> None:
    """The GB/T 32907-2016 annex A example key; expected values by pyca's SM4 (OpenSSL), ECB of a
    zero block and its CMAC (SP 800-38B with SM4's 16-byte block), not by hsmsvc's code."""
    from cryptography.hazmat.primitives import cmac as pyca_cmac
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    key = H("0123456789ABCDEFFEDCBA9876543210")
    enc = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
    ecb = enc.update(bytes(16)) + enc.finalize()
    mac = pyca_cmac.CMAC(algorithms.SM4(key))
    mac.update(bytes(16))
    assert kcv.kcv(Algorithm.SM4, key) == ecb[:3] == H("2677F4")
    assert kcv.kcv(Algorithm.SM4, key, method=KcvMethod.CMAC) == mac.finalize()[:3] == H("909F5E")


@given(keys(Algorithm.HMAC_SM3_256))
def test_hmac_sm3_256_kcv_is_its_hmac_of_a_zero_block(key: bytes) -> None:
    """hsmsvc's HMAC KCV (no standard fixes one): the leftmost bytes of the key's HMAC-SM3 (GM/T
    0042-2015) of 16 zero bytes, by tests/reference.py's pyca HMAC-SM3 (held to GM/T 0042 appendix
    D.3 in tests/test_reference.py)."""
    assert KcvMethod.default_for(Algorithm.HMAC_SM3_256) is KcvMethod.HMAC
    assert kcv.kcv(Algorithm.HMAC_SM3_256, key) == ref.hmac_sm3(key, bytes(16))[:3]
    assert kcv.kcv(Algorithm.HMAC_SM3_256, key, 32, method=KcvMethod.HMAC) == ref.hmac_sm3(key, bytes(16))


def test_an_hmac_kcv_is_for_hmac_sm3_256_keys_and_theirs_is_hmac_only() -> None:
    for method in (KcvMethod.ECB, KcvMethod.CMAC):
        with pytest.raises(InvalidInput, match="HMAC only"):
            kcv.kcv(Algorithm.HMAC_SM3_256, bytes(32), method=method)
    for alg in (Algorithm.AES_256, Algorithm.SM4, Algorithm.TDES_2KEY):
        with pytest.raises(InvalidInput, match="HMAC is for HMAC_SM3_256 keys"):
            kcv.kcv(alg, bytes(alg.key_length), method=KcvMethod.HMAC)
    with pytest.raises(InvalidInput) as e:
        kcv.kcv(Algorithm.HMAC_SM3_256, bytes(16))
    assert e.value.field == "key"


def test_an_hmac_sm3_256_key_is_no_block_cipher() -> None:
    """32 bytes, as an AES-256 key: never taken for one."""
    from hsmsvc.crypto import _cipher

    assert not Algorithm.HMAC_SM3_256.is_block_cipher and Algorithm.HMAC_SM3_256.key_length == 32
    with pytest.raises(InvalidInput, match="not a block cipher"):
        _cipher.primitive(Algorithm.HMAC_SM3_256, bytes(32))
    with pytest.raises(InvalidInput, match="not a block cipher"):
        Algorithm.HMAC_SM3_256.block_size
