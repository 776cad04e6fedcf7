"""Which card a PIN check counts against, and the PAN checks made before any decryption.

A counter keyed by the PAN's text would let a caller reach a fresh counter by
changing digits the cryptography ignores: a format 0 block binds only the 12
rightmost digits before the check digit (ISO 9564-1 clause 9.3.2), a PVV only
11 of them. So a card is counted under exactly the digits its check binds,
and a check against a stored PIN under the stored record's account.
"""

from __future__ import annotations

from collections.abc import Sequence

from hsmsvc.errors import InvalidInput

__all__ = ["card_pan", "checked_pan", "luhn_valid", "pan_field", "pvv_digits", "refused_pans"]

# Each digit doubled, its two digits added: what the Luhn sum takes for every second digit.
_DOUBLED = bytes.maketrans(b"0123456789", b"0246813579")
# The same as values 0-9 rather than ASCII digits, for the column sums of a batch.
_VALUE = bytes.maketrans(b"0123456789", bytes(range(10)))
_DOUBLED_VALUE = bytes.maketrans(b"0123456789", bytes([0, 2, 4, 6, 8, 1, 3, 5, 7, 9]))
# 0 where a digit sum is a multiple of ten, else 1.
_NOT_MOD10 = bytes(0 if v % 10 == 0 else 1 for v in range(256))
_PAN_RULE = "12 to 19 digits ending in their Luhn check digit (ISO/IEC 7812-1)"


def luhn_valid(pan: str) -> bool:
    """Whether ``pan``'s last digit is its Luhn check digit (ISO/IEC 7812-1 annex B).

    On every PIN translation's path, so done by slicing and summing bytes rather than a loop
    over digits (``docs/performance.md``, issue 27).
    """
    b = pan.encode("ascii", "replace")
    if not b.isdigit():  # ASCII digits only: bytes.isdigit knows no others
        return False
    # From the right: the check digit and every second digit as they are, the others doubled.
    return (sum(b[::-2]) + sum(b[-2::-2].translate(_DOUBLED)) - 48 * len(b)) % 10 == 0


def checked_pan(pan: str | None) -> str | None:
    """``pan`` if absent or 12 to 19 digits passing its check digit; else INVALID_ARGUMENT ``pan``.

    Made before any decryption: it depends on nothing secret, so naming the field is no oracle.
    """
    if pan and not (12 <= len(pan) <= 19 and luhn_valid(pan)):
        raise InvalidInput("pan", _PAN_RULE)
    return pan


def card_pan(pan: str) -> str:
    """A card value's or cryptogram's PAN: 12 to 19 ASCII digits, its Luhn digit not required
    (``service/cardvalues.py`` says why); else INVALID_ARGUMENT ``pan``."""
    if not isinstance(pan, str) or not 12 <= len(pan) <= 19 or not (pan.isascii() and pan.isdigit()):
        raise InvalidInput("pan", "12 to 19 digits")
    return pan


def refused_pans(pans: Sequence[str | None]) -> dict[int, InvalidInput]:
    """For a batch, which items :func:`checked_pan` refuses, each to be answered alone."""
    bad = _luhn_failures(pans)
    if bad is not None:  # the usual batch: one length, all digits, checked column by column
        return {i: InvalidInput("pan", _PAN_RULE) for i in bad}
    out: dict[int, InvalidInput] = {}
    for i, p in enumerate(pans):
        try:
            checked_pan(p)
        except InvalidInput as e:
            out[i] = e
    return out


def _luhn_failures(pans: Sequence[str | None]) -> list[int] | None:
    """Which of a run of PANs fail :func:`luhn_valid`, if all are present, of one length from 12
    to 19 and all ASCII digits; else ``None`` (checked one by one).

    The run's digits are taken a column at a time (every PAN's k-th digit), each column's values
    held one byte per PAN in one integer: a PAN's digit sum is at most 19 x 9 = 171, so the column
    integers add without a carry crossing from one PAN's byte into the next.
    """
    if not pans or None in pans:
        return None
    size = len(pans[0])  # type: ignore[arg-type]
    joined = "".join(pans)  # type: ignore[arg-type]
    if not 12 <= size <= 19 or len(joined) != size * len(pans) or not joined.isascii():
        return None
    digits = joined.encode("ascii")
    if not digits.isdigit() or set(map(len, pans)) != {size}:  # type: ignore[arg-type]
        return None
    total = 0
    for k in range(size):
        # From the right: the check digit and every second digit as they are, the others doubled.
        table = _DOUBLED_VALUE if (size - 1 - k) % 2 else _VALUE
        total += int.from_bytes(digits[k::size].translate(table), "big")
    flags = total.to_bytes(len(pans), "big").translate(_NOT_MOD10)
    if not any(flags):
        return []
    return [i for i, f in enumerate(flags) if f]


def pan_field(pan: str) -> str:
    """The 12 rightmost digits excluding the check digit: what formats 0, 3 and 4 bind
    (ISO 9564-1 clause 9.3.2), and what the card's counter is kept under."""
    return pan[-13:-1]


def pvv_digits(pan: str) -> str:
    """The 11 rightmost digits excluding the check digit: all of the PAN a Visa PVV uses."""
    return pan[-12:-1]
