"""Keyed one-way digest of a PIN for storage (bank design 004, clause 6.2.4).

The design asks for SHA-256; a plain unsalted hash of a 4-to-12 digit PIN is
brute-forced in microseconds, so we key it: HMAC (RFC 2104) under a PIN storage
key held by the backend, over a domain label, the account reference and the PIN,
each length-prefixed so no two inputs share an encoding.
"""

from __future__ import annotations

from hsmsvc.crypto import compare, _validate, mac
from hsmsvc.types import HashAlgorithm

__all__ = ["message", "pin_digest", "verify_pin_digest"]

_LABEL = b"hsmsvc/pin-digest/v1"


def message(account: str, pin: str) -> bytes:
    """The HMAC input: length-prefixed label, account and PIN, so no two inputs collide."""
    a = _validate.digits(account, "pan", 6, 19).encode()
    p = _validate.digits(pin, "pin", 4, 12).encode()
    return b"".join(len(x).to_bytes(1, "big") + x for x in (_LABEL, a, p))


def pin_digest(algorithm: HashAlgorithm, key: bytes, account: str, pin: str) -> bytes:
    """HMAC-SHA256 or HMAC-SM3 of (label, account, PIN): 32 bytes."""
    return mac.generate_hmac(algorithm, key, message(account, pin))


def verify_pin_digest(
    algorithm: HashAlgorithm, key: bytes, account: str, pin: str, digest: bytes
) -> None:
    """Raise ``VerificationFailed`` unless ``digest`` is the stored digest of ``pin``."""
    compare.require_eq(pin_digest(algorithm, key, account, pin), digest, "pin")
