"""IBM 3624 PIN generation and offset (IBM CCA Basic Services, appendix E).

The PIN verification key (PVK) is a TDES key; a single-DES PVK of legacy systems
is carried as the two-key TDES key K||K. The decimalization table is an
attribute of the stored PVK, never a request field (it would be an oracle).
"""

from __future__ import annotations

from hsmsvc.crypto import compare, _validate
from hsmsvc.crypto._cipher import EcbCipher
from hsmsvc.errors import InvalidInput, VerificationFailed

__all__ = [
    "decimalize",
    "generate_natural_pin",
    "generate_offset",
    "pan_validation_data",
    "pin_from_offset",
    "check_request",
    "verify_offset",
]


def _dectab(table: str) -> str:
    _validate.digits(table, "decimalization_table", 16, 16)
    return table


def _validation_block(validation_data: str, pad: str) -> bytes:
    hexdigits = "0123456789ABCDEF"
    v = validation_data.upper() if isinstance(validation_data, str) else ""
    if not 4 <= len(v) <= 16 or any(c not in hexdigits for c in v):
        raise InvalidInput("validation_data", "4 to 16 hex digits")
    if not isinstance(pad, str) or len(pad) != 1 or pad.upper() not in hexdigits:
        raise InvalidInput("pad", "one hex digit")
    return bytes.fromhex(v.ljust(16, pad.upper()))


def pan_validation_data(pan: str) -> str:
    """hsmsvc's one validation-data rule: the PAN's 12 rightmost digits excluding the
    check digit (the account number field of ISO 9564-1 format 0), padded with F.

    IBM 3624 leaves the choice of validation data to the issuer; fixing it here
    means a caller never picks it, so two offsets share validation data only when
    they are for one account (issue 27). The PAN's check digit is the other
    engineer's (Luhn) check on the PIN path; this rule binds what format 0 binds.

    >>> pan_validation_data("4000001234567899")
    '000123456789'
    """
    return _validate.digits(pan, "pan", 13, 19)[-13:-1]


def decimalize(enciphered: bytes, table: str) -> str:
    """Map each hex digit of ``enciphered`` through the decimalization table.

    IBM CCA 2.54 appendix E, "IBM 3624 PIN-calculation method", example:

    >>> decimalize(bytes.fromhex("E5C1BD67B66AE7C6"), "8351296477461538")
    '3913656466643416'
    """
    t = _dectab(table)
    return "".join(t[int(c, 16)] for c in enciphered.hex())


def generate_natural_pin(
    pvk: EcbCipher, validation_data: str, table: str, pin_length: int, pad: str = "F"
) -> str:
    """The natural (intermediate) PIN: leftmost ``pin_length`` decimalized digits."""
    if not pvk.algorithm.is_tdes:
        raise InvalidInput("pvk", "a TDES key")
    if not 4 <= pin_length <= 12:
        raise InvalidInput("pin_length", "4 to 12")
    block = pvk.encrypt(_validation_block(validation_data, pad))
    return decimalize(block, table)[:pin_length]


def _sub(a: str, b: str) -> str:
    return "".join(str((int(x) - int(y)) % 10) for x, y in zip(a, b))


def _add(a: str, b: str) -> str:
    return "".join(str((int(x) + int(y)) % 10) for x, y in zip(a, b))


def generate_offset(
    pvk: EcbCipher,
    *,
    validation_data: str,
    table: str,
    pin: str,
    check_length: int | None = None,
    pad: str = "F",
) -> str:
    """PIN offset: customer PIN minus natural PIN, digit by digit modulo 10.

    The rightmost ``check_length`` digits form the offset (IBM z/OS ICSF, "PIN
    Offset Generation algorithm"). A single-DES PVK 0123456789ABCDEF, validation
    data 1234567890123445, table 0123456789012345, PIN 1234 gives 2298:

    >>> from hsmsvc.crypto._cipher import BlockCipher
    >>> from hsmsvc.types import Algorithm
    >>> pvk = bytes.fromhex("0123456789ABCDEF") * 2
    >>> generate_offset(BlockCipher(Algorithm.TDES_2KEY, pvk), validation_data="1234567890123445",
    ...                 table="0123456789012345", pin="1234")
    '2298'
    """
    p = _validate.digits(pin, "pin", 4, 12)
    m = len(p) if check_length is None else check_length
    if not 4 <= m <= len(p):
        raise InvalidInput("check_length", "4 to the PIN length")
    natural = generate_natural_pin(pvk, validation_data, table, len(p), pad)
    return _sub(p, natural)[-m:]


def pin_from_offset(
    pvk: EcbCipher, validation_data: str, table: str, offset: str, pad: str = "F"
) -> str:
    """The customer PIN that an offset (of full PIN length) encodes."""
    o = _validate.digits(offset, "offset", 4, 12)
    natural = generate_natural_pin(pvk, validation_data, table, len(o), pad)
    return _add(natural, o)


def check_request(*, validation_data: str, offset: str) -> None:
    """The checks of :func:`verify_offset` that need no PIN: the offset's digits, the validation data."""
    _validate.digits(offset, "offset", 4, 12)
    _validation_block(validation_data, "F")


def verify_offset(
    pvk: EcbCipher,
    *,
    validation_data: str,
    table: str,
    pin: str,
    offset: str,
    pad: str = "F",
) -> None:
    """Raise ``VerificationFailed`` unless ``pin`` matches ``offset``.

    An offset longer than the PIN is a mismatch like any other: a refusal of its own, told after
    the PIN is known, would tell the PIN's length (issue 36's third review)."""
    o = _validate.digits(offset, "offset", 4, 12)
    if len(o) > len(pin):
        raise VerificationFailed("pin", "does not verify")
    computed = generate_offset(pvk, validation_data=validation_data, table=table, pin=pin, check_length=len(o), pad=pad)
    compare.require_eq(computed.encode(), o.encode(), "pin")
