"""Key check values (ANSI X9.24-1:2017; vendor practice for SM4).

* TDES: encrypt a block of zeros, keep the leftmost bytes (legacy method).
* AES: CMAC of a 16-byte zero block, leftmost bytes (X9.24-1:2017).
* SM4: encrypt a block of zeros. No GB/T standard fixes an SM4 KCV; this is the
  TDES convention carried over, as Chinese HSM vendors do.
"""

from __future__ import annotations

from hsmsvc.crypto import _cipher, compare, cmac
from hsmsvc.errors import InvalidInput
from hsmsvc.types import Algorithm

__all__ = ["kcv", "verify_kcv"]


def kcv(algorithm: Algorithm, key: bytes, length: int = 3) -> bytes:
    """The check value of ``key``: 3 bytes by default, up to one block.

    TR-31:2018 A.7.2.2 gives the TDES key below with KCV 57C409:

    >>> k = bytes.fromhex("3F419E1CB7079442AA37474C2EFBF8B8")
    >>> kcv(Algorithm.TDES_2KEY, k).hex().upper()
    '57C409'
    >>> kcv(Algorithm.AES_128, k).hex().upper()
    '08793E'
    """
    if not 2 <= length <= algorithm.block_size:
        raise InvalidInput("kcv_length", f"2 to {algorithm.block_size} bytes")
    zeros = bytes(algorithm.block_size)
    if algorithm.is_aes:
        return cmac.generate_cmac(algorithm, key, zeros)[:length]
    return _cipher.ecb_encrypt(algorithm, key, zeros)[:length]


def verify_kcv(algorithm: Algorithm, key: bytes, expected: bytes) -> None:
    """Raise ``VerificationFailed`` unless ``expected`` is the key's KCV."""
    computed = kcv(algorithm, key, len(expected))
    compare.require_eq(computed, expected, "kcv")
