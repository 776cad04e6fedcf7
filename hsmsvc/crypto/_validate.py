"""Input checks shared by the crypto modules; messages never echo values."""

from __future__ import annotations

from hsmsvc.errors import InvalidInput
from hsmsvc.types import Algorithm

_DIGITS = frozenset("0123456789")


def digits(value: str, field: str, min_len: int, max_len: int) -> str:
    if not isinstance(value, str) or not min_len <= len(value) <= max_len:
        raise InvalidInput(field, f"{min_len} to {max_len} digits")
    if not _DIGITS.issuperset(value):
        raise InvalidInput(field, "digits only")
    return value


def key(algorithm: Algorithm, value: bytes, field: str = "key") -> bytes:
    if not isinstance(value, (bytes, bytearray)) or len(value) != algorithm.key_length:
        raise InvalidInput(field, f"{algorithm.key_length} bytes for {algorithm.value}")
    return bytes(value)


def length(value: bytes, field: str, allowed: tuple[int, ...]) -> bytes:
    if not isinstance(value, (bytes, bytearray)) or len(value) not in allowed:
        sizes = " or ".join(str(n) for n in allowed)
        raise InvalidInput(field, f"{sizes} bytes")
    return bytes(value)
