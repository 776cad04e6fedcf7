"""Legacy key forms under a ZMK or TMK: a key ECB-enciphered under the KEK (ANSI X9.17).

Three ways partners send a key outside a key block, chosen per KEK (``hsm.model.LegacyForm``):

* **X9.17 plain ECB**: each block of the key enciphered under the KEK itself,
  no variant (the practice of UnionPay and most partners); only the KCV checks it.
* **payShield variant (key schemes U and T)**: part *i* (8 bytes) of a double-
  or triple-length key is TDES-ECB enciphered under the KEK with the first byte of
  its second 8-byte part (a double-length KEK's right half) XORed with the scheme's
  *i*-th variant constant: ``A6 5A`` for scheme U (double length), ``6A DE 2B`` for
  scheme T (triple length) (Thales payShield Host Programmer's Manual, "variant"
  key schemes U and T). For a triple-length KEK the same byte is taken: our reading,
  to be confirmed against a payShield (docs/architecture.md).
* **hsmsvc variant**: hsmsvc's own key-type variant in the KEK's first byte
  (``hsm.policy.ECB_VARIANTS``); kept only for ZMKs formed before the other forms.

The functions here only encipher and decipher. Checking the result is
:func:`accept`, which answers every fault with the one :class:`InvalidKeyBlock`.
"""

from __future__ import annotations

from typing import Final

from hsmsvc.crypto import compare, components, kcv
from hsmsvc.crypto._cipher import ecb_decrypt, ecb_encrypt
from hsmsvc.errors import InvalidInput, InvalidKeyBlock
from hsmsvc.types import Algorithm, KcvMethod

__all__ = [
    "PAYSHIELD_VARIANTS",
    "accept",
    "payshield_decipher",
    "payshield_encipher",
    "x917_decipher",
    "x917_encipher",
]

# payShield's double- and triple-length key variants, by the key's length in bytes.
PAYSHIELD_VARIANTS: Final = {16: (0xA6, 0x5A), 24: (0x6A, 0xDE, 0x2B)}


def x917_encipher(algorithm: Algorithm, kek: bytes, key: bytes) -> bytes:
    """``key`` ECB-enciphered under ``kek`` (X9.17), block by block, no variant."""
    if len(key) % algorithm.block_size:
        raise InvalidInput("kek", "its block size does not divide the key's length")
    return ecb_encrypt(algorithm, kek, key)


def x917_decipher(algorithm: Algorithm, kek: bytes, wrapped: bytes) -> bytes:
    if len(wrapped) % algorithm.block_size:
        raise InvalidInput("wrapped_key", f"a multiple of {algorithm.block_size} bytes")
    return ecb_decrypt(algorithm, kek, wrapped)


def _payshield_keks(kek: bytes, length: int) -> list[bytes]:
    if len(kek) not in (16, 24):
        raise InvalidInput("kek", "a double- or triple-length TDES ZMK or TMK for the payShield variant form")
    variants = PAYSHIELD_VARIANTS.get(length)
    if variants is None:
        raise InvalidInput("key", "double (scheme U) or triple (scheme T) length TDES for the payShield form")
    return [kek[:8] + bytes([kek[8] ^ v]) + kek[9:] for v in variants]


def payshield_encipher(kek: bytes, key: bytes) -> bytes:
    """``key`` (16 or 24 bytes) under a TDES ``kek`` in payShield scheme U or T."""
    keks = _payshield_keks(kek, len(key))
    return b"".join(ecb_encrypt(_tdes(k), k, key[8 * i: 8 * i + 8]) for i, k in enumerate(keks))


def payshield_decipher(kek: bytes, wrapped: bytes) -> bytes:
    if len(wrapped) not in PAYSHIELD_VARIANTS:
        raise InvalidInput("wrapped_key", "16 (scheme U) or 24 (scheme T) bytes")
    keks = _payshield_keks(kek, len(wrapped))
    return b"".join(ecb_decrypt(_tdes(k), k, wrapped[8 * i: 8 * i + 8]) for i, k in enumerate(keks))


def _tdes(kek: bytes) -> Algorithm:
    return Algorithm.TDES_2KEY if len(kek) == 16 else Algorithm.TDES_3KEY


def accept(algorithm: Algorithm, clear: bytes, check: bytes | None, method: KcvMethod | None = None) -> bytes:
    """The deciphered key, parity adjusted, once it passes; else the one generic refusal.

    A partner's TDES key may arrive with its parity bits unadjusted: DES ignores
    them, so adjusting them changes neither the key nor its KCV, and an
    unadjusted key is taken rather than refused. Length, weak or equal parts and
    a KCV mismatch all raise the same :class:`InvalidKeyBlock` (as TR-31's
    refusal does), so the unwrap is no oracle for which check failed. ``method``: the form
    ``check`` is in (None: the algorithm's default, :func:`kcv.default_method`).
    """
    try:
        if len(clear) != algorithm.key_length:
            raise InvalidKeyBlock()
        if algorithm.is_tdes:
            clear = components.adjust_odd_parity(clear)
        components.check_key(algorithm, clear)
        ok = check is None or compare.bytes_eq(kcv.kcv(algorithm, clear, method=method)[: len(check)], check)
    except InvalidInput:
        ok = False
    if not ok:
        raise InvalidKeyBlock()
    return clear
