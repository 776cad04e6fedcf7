"""CMAC (NIST SP 800-38B; ISO/IEC 9797-1:2011 MAC algorithm 5) for AES, TDES, SM4."""

from __future__ import annotations

from cryptography.hazmat.primitives import cmac as _cmac

from hsmsvc.crypto import _cipher, compare
from hsmsvc.errors import InvalidInput
from hsmsvc.types import Algorithm

__all__ = ["Cmac", "generate_cmac", "verify_cmac"]


def _length(algorithm: Algorithm, length: int | None) -> int:
    n = algorithm.block_size if length is None else length
    # Payment MACs are never shorter than 32 bits; shorter tags are forgeable.
    if not 4 <= n <= algorithm.block_size:
        raise InvalidInput("mac_length", f"4 to {algorithm.block_size} bytes")
    return n


class Cmac:
    """CMAC under one key. The keyed context is made once and copied for each message: the
    copy carries the cipher's key schedule and the subkeys (clause 6.1). Not thread-safe."""

    __slots__ = ("_keyed", "algorithm")

    def __init__(self, algorithm: Algorithm, key: bytes) -> None:
        self.algorithm = algorithm
        self._keyed = _cmac.CMAC(_cipher.primitive(algorithm, key))

    def generate(self, data: bytes, length: int | None = None) -> bytes:
        """The CMAC of ``data``, truncated to its leftmost ``length`` bytes."""
        n = _length(self.algorithm, length)
        ctx = self._keyed.copy()
        ctx.update(data)
        return ctx.finalize()[:n]


def generate_cmac(
    algorithm: Algorithm, key: bytes, data: bytes, length: int | None = None
) -> bytes:
    """CMAC of ``data``, truncated to its leftmost ``length`` bytes.

    NIST SP 800-38B MAC generation, appendix D.1 example 1 (AES-128):

    >>> key = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
    >>> generate_cmac(Algorithm.AES_128, key, b"").hex()
    'bb1d6929e95937287fa37d129b756746'
    """
    _length(algorithm, length)
    return Cmac(algorithm, key).generate(data, length)


def verify_cmac(algorithm: Algorithm, key: bytes, data: bytes, mac: bytes) -> None:
    """Raise ``VerificationFailed`` unless ``mac`` is the (truncated) CMAC."""
    computed = generate_cmac(algorithm, key, data, _length(algorithm, len(mac)))
    compare.require_eq(computed, mac, "mac")
