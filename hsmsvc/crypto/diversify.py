"""Key diversification: a user's key from a master key and the user's code (bank design 004 clause
6.2.2: the login key in each employee's USB-Key).

The derived key's purpose (its type and TR-31 usage) is bound into every derivation with the code,
so one code gives a user's MAC key and data key apart, and no code the caller chooses makes the
master encipher a value of the caller's choice (an adversarial review turned the raw form into EMV
card keys under a master of an IMK's value).

* TDES and SM4 masters, the EMV option A style (EMV 4.3 Book 2 annex A1.4.1): the master enciphers
  Y || (Y XOR FF..FF), Y the first 8 bytes of SHA-256(label || 00 || purpose || 00 || code) with
  the high bits of its first byte set (0xA0), so its first nibble is no decimal digit and Y is
  never an EMV card key's input (options A and B give 16 decimal digits); a TDES result takes odd
  parity. The backend enciphers with the master as a loaded key
  (:func:`option_a_block` gives the input), so its clear bytes never leave it.
* AES masters: NIST SP 800-108 rev. 1 KDF in counter mode with CMAC as the PRF, the 32-bit counter
  before the fixed data Label || 00 || Context || [L]32, Context = purpose || 00 || code, by
  pyca/cryptography's ``KBKDFCMAC``.

Pure functions of clear bytes; no key store, no I/O.
"""

from __future__ import annotations

import hashlib
from typing import Final

from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFCMAC, CounterLocation, Mode

from hsmsvc.crypto import _validate
from hsmsvc.errors import InvalidInput
from hsmsvc.types import Algorithm

__all__ = ["LABEL", "MAX_CODE", "option_a_block", "sp800_108"]

LABEL: Final = b"hsmsvc key diversification"
"""What the derived keys are for, so the same master and code in another protocol give another key."""
MAX_CODE: Final = 64
"""The longest user's code taken: a user id, not a document."""


def _code(code: bytes) -> bytes:
    if not isinstance(code, (bytes, bytearray)) or not 1 <= len(code) <= MAX_CODE:
        raise InvalidInput("diversification_data", f"1 to {MAX_CODE} bytes")
    return bytes(code)


def _purpose(purpose: bytes) -> bytes:
    if not isinstance(purpose, bytes) or not purpose or b"\x00" in purpose:
        raise InvalidInput("purpose", "the derived key's type and usage")
    return purpose


def option_a_block(*, code: bytes, purpose: bytes) -> bytes:
    r"""Y || (Y XOR FF..FF), Y the first 8 bytes of SHA-256(LABEL || 00 || purpose || 00 || code), its
    first byte OR A0 (a first nibble of A, B, E or F: no card key's digits).

    >>> y = option_a_block(code=b"EMP04217", purpose=b"MAK/M6")[:8]
    >>> y[0] >> 4 >= 0xA and y[1:] == hashlib.sha256(LABEL + b"\x00MAK/M6\x00EMP04217").digest()[1:8]
    True
    """
    y = bytearray(hashlib.sha256(LABEL + b"\x00" + _purpose(purpose) + b"\x00" + _code(code)).digest()[:8])
    y[0] |= 0xA0
    return bytes(y) + bytes(b ^ 0xFF for b in y)


def sp800_108(master: bytes, *, code: bytes, purpose: bytes, length: int) -> bytes:
    """``length`` bytes from an AES ``master`` by SP 800-108 counter mode with AES-CMAC."""
    key = _validate.key(_aes(master), master, "master")
    if length not in (16, 24, 32):
        raise InvalidInput("length", "16, 24 or 32 bytes")
    context = _purpose(purpose) + b"\x00" + _code(code)
    kdf = KBKDFCMAC(algorithms.AES, Mode.CounterMode, length, 4, 4, CounterLocation.BeforeFixed, LABEL, context, None)
    return kdf.derive(key)


def _aes(master: bytes) -> Algorithm:
    by_length = {16: Algorithm.AES_128, 24: Algorithm.AES_192, 32: Algorithm.AES_256}
    if not isinstance(master, (bytes, bytearray)) or len(master) not in by_length:
        raise InvalidInput("master", "an AES key")
    return by_length[len(master)]
