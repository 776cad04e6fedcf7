"""Key components and TDES key hygiene (ANSI X9.24-1:2017; ISO 11568-2).

Policy, applied to every TDES key we form, generate or import:

* odd parity on every byte (FIPS 46-3); XOR of an even number of
  odd-parity components has even parity, so a combined key is parity-adjusted;
* no 8-byte part may be a DES weak or semi-weak key (FIPS 74);
* the parts must differ: a two-key key with K1 = K2, or a three-key key with any
  two parts equal, is single DES or two-key in disguise and is refused.

A key is formed from at least two components (dual control), each of the key's
full length; every component gets its own KCV so a custodian can check it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from hsmsvc.crypto import kcv as _kcv
from hsmsvc.errors import InvalidInput
from hsmsvc.types import Algorithm

__all__ = [
    "adjust_odd_parity",
    "check_key",
    "check_tdes_key",
    "combine",
    "component_kcvs",
    "has_odd_parity",
    "split",
]

_WEAK_DES: Final = frozenset(
    bytes.fromhex(h)
    for h in (
        "0101010101010101", "FEFEFEFEFEFEFEFE", "E0E0E0E0F1F1F1F1", "1F1F1F1F0E0E0E0E",
        "01FE01FE01FE01FE", "FE01FE01FE01FE01", "1FE01FE00EF10EF1", "E01FE01FF10EF10E",
        "01E001E001F101F1", "E001E001F101F101", "1FFE1FFE0EFE0EFE", "FE1FFE1FFE0EFE0E",
        "011F011F010E010E", "1F011F010E010E01", "E0FEE0FEF1FEF1FE", "FEE0FEE0FEF1FEF1",
    )
)


def _odd(b: int) -> int:
    return (b & 0xFE) | (((b >> 1).bit_count() + 1) & 1)


# Each byte value with its low bit set for odd parity: one C call per key rather than a byte loop
# (card and session keys are made on every EMV and DUKPT command).
_ODD_TABLE = bytes(_odd(b) for b in range(256))


def adjust_odd_parity(key: bytes) -> bytes:
    """Set the low bit of every byte so the byte has odd parity.

    >>> adjust_odd_parity(bytes.fromhex("0000FFFE")).hex()
    '0101fefe'
    """
    return bytes(key).translate(_ODD_TABLE)


def has_odd_parity(key: bytes) -> bool:
    return all((b).bit_count() % 2 == 1 for b in key)


def check_tdes_key(key: bytes) -> None:
    """Apply the TDES policy of the module docstring; raise ``InvalidInput``."""
    if len(key) not in (16, 24):
        raise InvalidInput("key", "16 or 24 bytes for TDES")
    if not has_odd_parity(key):
        raise InvalidInput("key", "odd parity on every byte")
    parts = [key[i : i + 8] for i in range(0, len(key), 8)]
    if any(p in _WEAK_DES for p in parts):
        raise InvalidInput("key", "no weak or semi-weak DES part")
    if len(set(parts)) != len(parts):
        raise InvalidInput("key", "distinct parts")


def check_key(algorithm: Algorithm, key: bytes) -> None:
    """Length for every algorithm; the TDES policy for TDES keys."""
    if not isinstance(key, (bytes, bytearray)) or len(key) != algorithm.key_length:
        raise InvalidInput("key", f"{algorithm.key_length} bytes for {algorithm.value}")
    if algorithm.is_tdes:
        check_tdes_key(bytes(key))


def combine(algorithm: Algorithm, components: Sequence[bytes | bytearray]) -> bytes:
    """XOR ``components`` into a key of ``algorithm``; TDES keys get odd parity.

    >>> a = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    >>> b = bytes.fromhex("1C1C1C1C1C1C1C1C2A2A2A2A2A2A2A2A")
    >>> combine(Algorithm.TDES_2KEY, [a, b]).hex().upper()
    '1C3E587A94B6D0F2D5F791B35D7F193B'
    """
    if len(components) < 2:
        raise InvalidInput("components", "at least 2 (dual control)")
    if len(components) > 9:
        raise InvalidInput("components", "at most 9")
    for c in components:
        if not isinstance(c, (bytes, bytearray)) or len(c) != algorithm.key_length:
            raise InvalidInput("component", f"{algorithm.key_length} bytes for {algorithm.value}")
    key = _xor(algorithm, components)
    if algorithm.is_tdes:
        key = adjust_odd_parity(key)
    check_key(algorithm, key)
    return key


def _xor(algorithm: Algorithm, parts: Sequence[bytes | bytearray]) -> bytes:
    acc = 0
    for c in parts:
        acc ^= int.from_bytes(c, "big")
    return acc.to_bytes(algorithm.key_length, "big")


def variant(key: bytes, value: int) -> bytes:
    """``key`` with ``value`` XORed into its first byte (a key-type variant).

    >>> variant(bytes.fromhex("0123456789ABCDEF"), 0xA6).hex().upper()
    'A723456789ABCDEF'
    """
    if not isinstance(key, (bytes, bytearray)) or not key or not 0 <= value <= 0xFF:
        raise InvalidInput("variant", "a key and a byte")
    return bytes([key[0] ^ value]) + bytes(key[1:])


def component_kcvs(algorithm: Algorithm, components: Sequence[bytes | bytearray]) -> list[bytes]:
    """The KCV of each component, for each custodian to check their own."""
    return [_kcv.kcv(algorithm, bytes(c)) for c in components]


def split(algorithm: Algorithm, key: bytes, randoms: Sequence[bytes]) -> list[bytes]:
    """``key`` as ``randoms`` plus one last component, so that :func:`combine` gives it back.

    TDES components get odd parity (which DES ignores), so each passes a
    custodian's parity check.

    >>> k = bytes.fromhex("1C3E587A94B6D0F2D5F791B35D7F193B")
    >>> r = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    >>> combine(Algorithm.TDES_2KEY, split(Algorithm.TDES_2KEY, k, [r])) == k
    True
    """
    if not 1 <= len(randoms) <= 8:
        raise InvalidInput("components", "2 to 9")
    for c in (key, *randoms):
        if not isinstance(c, (bytes, bytearray)) or len(c) != algorithm.key_length:
            raise InvalidInput("component", f"{algorithm.key_length} bytes for {algorithm.value}")
    parts = [bytes(c) for c in randoms] + [_xor(algorithm, [key, *randoms])]
    return [adjust_odd_parity(p) for p in parts] if algorithm.is_tdes else parts
