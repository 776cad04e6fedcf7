"""PIN issuance: IBM 3624 offsets and Visa PVVs for a customer-selected PIN.

Not a use path: an offset or PVV is PIN-derived data, so these belong to the
issuer role alone, take their validation data from the PAN, never the caller,
and spend an attempt against the card and the principal each time
(``docs/architecture.md``, "PIN issuance is not a use path").
"""

from __future__ import annotations

from collections.abc import Callable

from hsmsvc.crypto import ibm3624
from hsmsvc.hsm.commands import GeneratePinOffset, GeneratePvv
from hsmsvc.hsm.model import PinBlock
from hsmsvc.hsm.policy import Operation
from hsmsvc.keys.model import KeyRef
from hsmsvc.service.attempts import AttemptGuard
from hsmsvc.service.cards import checked_pan, pan_field, pvv_digits
from hsmsvc.service.context import Caller, Services
from hsmsvc.types import PinBlockFormat

__all__ = ["generate_offset", "generate_pvv"]


def generate_offset(
    s: Services,
    caller: Caller,
    *,
    key: KeyRef,
    fmt: PinBlockFormat,
    pin_block: bytes,
    pan: str,
    pvk: KeyRef,
) -> str:
    """IBM 3624 offset for a customer-selected PIN (issuance, not a use path).

    The validation data is :func:`hsmsvc.crypto.ibm3624.pan_validation_data` of the
    PAN, never the caller's: with data of its choosing, the offsets of a captured
    block and of a known-PIN block give the captured PIN by digit arithmetic.
    """
    guard = _issuance_guard(s, caller, pan, pan_field)
    k = s.key(caller, key, Operation.PIN_DECRYPT)
    v = s.key(caller, pvk, Operation.PIN_GENERATE_IBM3624, "pvk")
    try:
        out = s.backend.execute(GeneratePinOffset(pin=PinBlock(pin_block, fmt, pan), key=k.cryptogram,
                                                  pvk=v.cryptogram,
                                                  validation_data=ibm3624.pan_validation_data(pan)))
    except Exception:
        guard.settle(False, k, "generate")
        raise
    guard.settle(False, k, "generate")
    return out


def generate_pvv(
    s: Services,
    caller: Caller,
    *,
    key: KeyRef,
    fmt: PinBlockFormat,
    pin_block: bytes,
    pan: str,
    pvk: KeyRef,
    pvki: int,
) -> str:
    """Visa PVV for a customer-selected PIN (issuance, not a use path); the TSP is the PAN's."""
    guard = _issuance_guard(s, caller, pan, pvv_digits)
    k = s.key(caller, key, Operation.PIN_DECRYPT)
    v = s.key(caller, pvk, Operation.PIN_GENERATE_PVV, "pvk")
    try:
        out = s.backend.execute(GeneratePvv(pin=PinBlock(pin_block, fmt, pan), key=k.cryptogram,
                                            pvk=v.cryptogram, pvki=pvki))
    except Exception:
        guard.settle(False, k, "generate")
        raise
    guard.settle(False, k, "generate")
    return out


def _issuance_guard(s: Services, caller: Caller, pan: str, bound: Callable[[str], str]) -> AttemptGuard:
    """Both limits, checked before the block is touched.

    Every generation, answered or not, is then counted as one attempt against the
    card and the principal and settled as a wrong guess is (:meth:`AttemptGuard.settle`):
    an answer is PIN-derived data, so it is spent like a guess, and a card gets at most
    ``per_pan`` answers per window, however many processes generate at once.
    The card is counted under the digits the result binds (``bound``: the PAN field
    for an offset, the PVV's 11 digits), as its verification is, so a prefixed PAN
    or another check digit reaches the same counter.
    """
    checked_pan(pan)  # Luhn, before any counter or decryption
    ibm3624.pan_validation_data(pan)  # a malformed PAN is named before any counter
    guard = AttemptGuard(s, caller, bound(pan), pan=pan)
    guard.check()
    return guard
