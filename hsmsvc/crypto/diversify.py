"""Key diversification: a user's key from a master key and the user's code (bank design 004 clause
6.2.2: the login key in each employee's USB-Key).

* TDES and SM4 masters, the EMV option A style (EMV 4.3 Book 2 annex A1.4.1, used there for card keys):
  the master enciphers the 8-byte diversification data Y and its complement, Y || (Y XOR FF..FF);
  a TDES result takes odd parity. The backend enciphers with the master as a loaded key
  (:func:`option_a_block` gives the input), so the master's clear bytes are never taken out.
* AES masters: NIST SP 800-108 rev. 1 KDF in counter mode with CMAC as the PRF, the 32-bit counter
  before the fixed data Label || 00 || Context || [L]32, by pyca/cryptography's ``KBKDFCMAC``.

Pure functions of clear bytes; no key store, no I/O.
"""

from __future__ import annotations

from typing import Final

from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFCMAC, CounterLocation, Mode

from hsmsvc.crypto import _validate
from hsmsvc.errors import InvalidInput
from hsmsvc.types import Algorithm

__all__ = ["DATA_LENGTH", "LABEL", "MAX_CONTEXT", "option_a_block", "sp800_108"]

DATA_LENGTH: Final = 8
"""The option A style's diversification data: one 8-byte block Y."""
LABEL: Final = b"hsmsvc key diversification"
"""SP 800-108's Label: what the derived keys are for, so the same master and context in another
purpose give another key."""
MAX_CONTEXT: Final = 64
"""The longest Context (the user's code) taken: a user id, not a document."""


def option_a_block(data: bytes) -> bytes:
    """Y || (Y XOR FF..FF) for the 8-byte diversification data Y.

    >>> option_a_block(bytes.fromhex("3456789012345600")).hex().upper()
    '3456789012345600CBA9876FEDCBA9FF'
    """
    y = _validate.length(data, "diversification_data", (DATA_LENGTH,))
    return y + bytes(b ^ 0xFF for b in y)


def sp800_108(master: bytes, *, context: bytes, length: int) -> bytes:
    """``length`` bytes from an AES ``master`` by SP 800-108 counter mode with AES-CMAC, the user's code
    as the Context (1 to :data:`MAX_CONTEXT` bytes) and :data:`LABEL` as the Label."""
    key = _validate.key(_aes(master), master, "master")
    if not isinstance(context, (bytes, bytearray)) or not 1 <= len(context) <= MAX_CONTEXT:
        raise InvalidInput("diversification_data", f"1 to {MAX_CONTEXT} bytes")
    if length not in (16, 24, 32):
        raise InvalidInput("length", "16, 24 or 32 bytes")
    kdf = KBKDFCMAC(algorithms.AES, Mode.CounterMode, length, 4, 4, CounterLocation.BeforeFixed, LABEL,
                    bytes(context), None)
    return kdf.derive(key)


def _aes(master: bytes) -> Algorithm:
    by_length = {16: Algorithm.AES_128, 24: Algorithm.AES_192, 32: Algorithm.AES_256}
    if not isinstance(master, (bytes, bytearray)) or len(master) not in by_length:
        raise InvalidInput("master", "an AES key")
    return by_length[len(master)]
