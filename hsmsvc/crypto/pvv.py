"""Visa PIN Verification Value (Visa PIN security; IBM CCA "VISA-PVV" method).

TSP = 11 rightmost PAN digits excluding the check digit, the PVKI, and the 4
leftmost PIN digits; the PVV is the first 4 decimal digits of its TDES
encipherment under the PVK pair, then A-F mapped to 0-5 if fewer than 4.
"""

from __future__ import annotations

from hsmsvc.crypto import compare, _validate
from hsmsvc.crypto._cipher import EcbCipher
from hsmsvc.errors import InvalidInput
from hsmsvc.types import Algorithm

__all__ = ["generate_pvv", "verify_pvv"]


def _tsp(pan: str, pvki: int, pin: str) -> bytes:
    p = _validate.digits(pan, "pan", 13, 19)
    pin = _validate.digits(pin, "pin", 4, 12)
    if not isinstance(pvki, int) or not 0 <= pvki <= 6:
        raise InvalidInput("pvki", "0 to 6")
    return bytes.fromhex(p[-12:-1] + str(pvki) + pin[:4])


def _extract(hexed: str) -> str:
    digits = [c for c in hexed if c.isdigit()]
    if len(digits) < 4:
        digits += [str(int(c, 16) - 10) for c in hexed if not c.isdigit()]
    return "".join(digits[:4])


def generate_pvv(pvk: EcbCipher, pan: str, pvki: int, pin: str) -> str:
    """The 4-digit PVV of ``pin`` for ``pan`` under PVK pair ``pvk`` and index ``pvki``.

    >>> from hsmsvc.crypto._cipher import BlockCipher
    >>> pvk = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    >>> generate_pvv(BlockCipher(Algorithm.TDES_2KEY, pvk), "1122334455667788", 1, "4524")
    '8523'
    """
    if pvk.algorithm is not Algorithm.TDES_2KEY:
        raise InvalidInput("pvk", "a two-key TDES PVK pair")
    block = pvk.encrypt(_tsp(pan, pvki, pin))
    return _extract(block.hex().upper())


def verify_pvv(pvk: EcbCipher, pan: str, pvki: int, pin: str, pvv: str) -> None:
    """Raise ``VerificationFailed`` unless ``pvv`` is the PVV of ``pin``."""
    _validate.digits(pvv, "pvv", 4, 4)
    computed = generate_pvv(pvk, pan, pvki, pin)
    compare.require_eq(computed.encode(), pvv.encode(), "pin")
