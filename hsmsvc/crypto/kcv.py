"""Key check values (ANSI X9.24-1:2017; vendor practice for SM4).

* TDES: encrypt a block of zeros, keep the leftmost bytes (legacy method).
* AES: CMAC of a 16-byte zero block, leftmost bytes (X9.24-1:2017), by default;
  the legacy zero-block encipherment on request (:attr:`KcvMethod.ECB`), since
  some partners still state AES KCVs that way.
* SM4: encrypt a block of zeros, by default. No GB/T standard fixes an SM4 KCV; this is the
  TDES convention carried over, as Chinese financial HSMs state it; the CMAC form (the
  AES rule applied to SM4) on request, for a partner that states SM4 KCVs that way.
* HMAC_SM3_256 (an HMAC-only key): the key's HMAC-SM3 of a 16-byte zero block, its only method;
  the CMAC rule with the MAC the key computes, as no standard fixes an HMAC key's KCV.
"""

from __future__ import annotations

from hsmsvc.crypto import _cipher, _validate, compare, cmac, mac
from hsmsvc.errors import InvalidInput
from hsmsvc.types import Algorithm, HashAlgorithm, KcvMethod

__all__ = ["check_method", "default_method", "kcv", "verify_kcv"]


def default_method(algorithm: Algorithm) -> KcvMethod:
    """The method a stored KCV is in: CMAC for AES (X9.24-1:2017), ECB for TDES and SM4."""
    return KcvMethod.default_for(algorithm)


def check_method(algorithm: Algorithm, method: KcvMethod | None) -> KcvMethod:
    """``method`` (None: the default) for a key of ``algorithm``; CMAC is for AES and SM4 keys
    (16-byte blocks: SP 800-38B's subkeys; a TDES KCV is ECB only); HMAC for HMAC_SM3_256, its only."""
    if method is None:
        return default_method(algorithm)
    if algorithm is Algorithm.HMAC_SM3_256 and method is not KcvMethod.HMAC:
        raise InvalidInput("kcv_method", "an HMAC_SM3_256 key's KCV is HMAC only: it enciphers nothing")
    if method is KcvMethod.HMAC and algorithm is not Algorithm.HMAC_SM3_256:
        raise InvalidInput("kcv_method", f"HMAC is for HMAC_SM3_256 keys; a {algorithm.value} key's KCV enciphers")
    if method is KcvMethod.CMAC and not (algorithm.is_aes or algorithm is Algorithm.SM4):
        raise InvalidInput("kcv_method", f"CMAC is for AES and SM4 keys; a {algorithm.value} key's KCV is ECB only")
    return method


def kcv(algorithm: Algorithm, key: bytes, length: int = 3, *, method: KcvMethod | None = None) -> bytes:
    """The check value of ``key``: 3 bytes by default, up to one block (32 bytes for HMAC).

    TR-31:2018 A.7.2.2 gives the TDES key below with KCV 57C409:

    >>> k = bytes.fromhex("3F419E1CB7079442AA37474C2EFBF8B8")
    >>> kcv(Algorithm.TDES_2KEY, k).hex().upper()
    '57C409'
    >>> kcv(Algorithm.AES_128, k).hex().upper()
    '08793E'

    The legacy AES form is the AESAVS KeySbox encipherment of a zero block
    (NIST AESAVS, Appendix B.2, AES-128 first vector):

    >>> kcv(Algorithm.AES_128, bytes.fromhex("10a58869d74be5a374cf867cfb473859"), method=KcvMethod.ECB).hex()
    '6d251e'

    SM4 with the GB/T 32907-2016 annex A example key: the ECB form (the default) and the CMAC form:

    >>> sm4 = bytes.fromhex("0123456789abcdeffedcba9876543210")
    >>> kcv(Algorithm.SM4, sm4).hex(), kcv(Algorithm.SM4, sm4, method=KcvMethod.CMAC).hex()
    ('2677f4', '909f5e')

    An HMAC_SM3_256 key: its HMAC-SM3 (GM/T 0042-2015) of 16 zero bytes, leftmost bytes:

    >>> kcv(Algorithm.HMAC_SM3_256, bytes(range(1, 33))).hex()
    'bcf26e'
    """
    m = check_method(algorithm, method)
    if m is KcvMethod.HMAC:
        if not 2 <= length <= 32:
            raise InvalidInput("kcv_length", "2 to 32 bytes")
        return mac.generate_hmac(HashAlgorithm.SM3, _validate.key(algorithm, key), bytes(16))[:length]
    if not 2 <= length <= algorithm.block_size:
        raise InvalidInput("kcv_length", f"2 to {algorithm.block_size} bytes")
    zeros = bytes(algorithm.block_size)
    if m is KcvMethod.CMAC:
        return cmac.generate_cmac(algorithm, key, zeros)[:length]
    return _cipher.ecb_encrypt(algorithm, key, zeros)[:length]


def verify_kcv(algorithm: Algorithm, key: bytes, expected: bytes) -> None:
    """Raise ``VerificationFailed`` unless ``expected`` is the key's KCV."""
    computed = kcv(algorithm, key, len(expected))
    compare.require_eq(computed, expected, "kcv")
