"""Card value use cases (issue 35): CVV, CVV2 and iCVV under a CVK; dCVV and CVC3 under an IMK.

Generation is issuance, a duty apart from verification (the issuer role, as PIN offsets and
PVVs are: ``service/authz.py``): an operator who could also generate would mint CVV2s for any
card. Verification is counted as PIN checks are, in counters of its own
(:data:`~hsmsvc.service.attempts.CARD_VALUES`): a wrong value counts against the principal and
the card, and past a limit every outcome is refused, match or not.

A card's counters follow what the cryptography binds, so that no change of input the computation
ignores reaches a fresh counter, and are kept per key (a value is a secret of its key):

* a CVV binds the digits PAN || expiry || service code, zero-padded to 32: two inputs whose
  digits differ only by where the PAN ends, or by trailing zeros, are one computation. A check is
  counted under the PAN (the card, across expiry dates and kinds) and under those digits with
  their trailing zeros dropped (the computation, across PAN lengths);
* a dCVV or CVC3 is made under the card's own key, derived from the 16 digits Y of EMV Book 2
  annex A1.4 (PAN and PSN): a check is counted under Y, which is the card key's only input
  besides the IMK, and under the transaction's whole input.

A right value resets only the computation's counter, never the card's: a value the caller already
knows (under a test key it may use, or a dCVV seen for an earlier ATC) must not buy fresh guesses
at another. The card's counter ages out with its window (an adversarial review found both).

A PAN here is 12 to 19 digits; its Luhn digit is not required, as the card schemes' and
payShield's CVV commands do not require it (the published vectors' PANs mostly fail it), and
the counters do not rest on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from hsmsvc.crypto import emv
from hsmsvc.crypto.cvv import CvvKind
from hsmsvc.errors import HsmsvcError, InvalidInput
from hsmsvc.hsm.commands import CardHashes, CvvData, DynamicCvvData, GenerateCvv, VerifyCvvs, VerifyDynamicCvvs
from hsmsvc.hsm.policy import Operation
from hsmsvc.keys.model import KeyRef, StoredKey
from hsmsvc.service.attempts import CARD_VALUES, AttemptGuard, key_value
from hsmsvc.service.cards import card_pan
from hsmsvc.service.context import Caller, Services
from hsmsvc.service.verification import Evaluated, release_pin, run_and_settle, unrefused

__all__ = ["CardValue", "generate_cvv", "verify_card_value", "verify_card_value_batch"]

CardValue = CvvData | DynamicCvvData
"""A static value's data (CVV, CVV2, iCVV) or a dynamic one's (dCVV, CVC3)."""


def _bindings(item: CardValue, key: StoredKey) -> list[bytes]:
    """What ``item``'s check under ``key`` binds, each to be counted under (module docstring), the one
    a match resets last; INVALID_ARGUMENT for a malformed card, before anything is counted or computed."""
    # The key's value first (its algorithm and KCV): a value is a secret of its key, a match under a key
    # the caller knows (a test CVK) must reset nothing kept for another, and one key stored under two
    # ids (a verify-only copy) must not double the guesses (an adversarial review found both).
    who = key_value(key)
    if isinstance(item, CvvData):
        if not isinstance(item.kind, CvvKind):
            raise InvalidInput("kind", "CVV, CVV2 or iCVV")
        pan = card_pan(item.pan)
        digits = pan + (item.expiry if isinstance(item.expiry, str) else "") + (
            item.kind.service_code or item.service_code or "")
        return [b"P" + who + pan.encode(), b"D" + who + digits.rstrip("0").encode("ascii", "replace")]
    if isinstance(item, DynamicCvvData):
        pan = card_pan(item.pan)
        y = emv.master_key_input(pan=pan, psn=item.psn, option=item.option)
        # The transaction's own computation: what the value is over besides the card key.
        fields = (item.kind.value.encode(), bytes(item.atc), item.expiry.encode("ascii", "replace"),
                  item.service_code.encode("ascii", "replace"), bytes(item.track), bytes(item.unpredictable_number),
                  pan[4:].encode())
        tx = b"".join(len(f).to_bytes(2, "big") + f for f in fields)
        return [b"Y" + who + y, b"X" + who + y + tx]
    raise InvalidInput("card", "a CVV or a dynamic value's data")


def _operation(item: CardValue) -> Operation:
    return Operation.CVV_VERIFY if isinstance(item, CvvData) else Operation.DYNAMIC_CVV_VERIFY


def _guards(s: Services, caller: Caller, key: StoredKey,
            items: Sequence[CardValue]) -> list[AttemptGuard | InvalidInput]:
    """A guard per item, every binding's keyed hash taken in one backend call; an item's own
    ``InvalidInput`` where its card is malformed. A match resets only the item's last binding."""
    bound: list[list[bytes] | InvalidInput] = []
    for item in items:
        try:
            bound.append(_bindings(item, key))
        except InvalidInput as e:
            bound.append(e)
    flat = [b for x in bound if not isinstance(x, InvalidInput) for b in x]
    hashes = iter(s.backend.execute(CardHashes(values=flat)) if flat else ())
    out: list[AttemptGuard | InvalidInput] = []
    for item, x in zip(items, bound):
        if isinstance(x, InvalidInput):
            out.append(x)
        else:
            out.append(AttemptGuard(s, caller, None, pan=item.pan, counted=CARD_VALUES,
                                    hashes=[next(hashes) for _ in x], clears=1))
    return out


def _command(key: StoredKey, items: Sequence[CardValue], values: Sequence[str]) -> VerifyCvvs | VerifyDynamicCvvs:
    if all(isinstance(i, CvvData) for i in items):
        return VerifyCvvs(key=key.cryptogram, items=items, values=values)  # type: ignore[arg-type]
    return VerifyDynamicCvvs(key=key.cryptogram, items=items, values=values)  # type: ignore[arg-type]


def generate_cvv(s: Services, caller: Caller, *, key: KeyRef, data: CvvData, length: int = 3) -> tuple[str, int]:
    """A card's CVV, CVV2 or iCVV at issuance, and the CVK's version."""
    card_pan(data.pan)
    k = s.key(caller, key, Operation.CVV_GENERATE)
    value = s.backend.execute(GenerateCvv(key=k.cryptogram, data=data, length=length))
    s.observer.key_used(k)
    return value, k.version


def verify_card_value(s: Services, caller: Caller, *, key: KeyRef, item: CardValue, value: str) -> bool:
    """Whether ``value`` is ``item``'s card value; counted as a PIN check is, in its own counters."""
    k = s.key(caller, key, _operation(item))
    guard = _guards(s, caller, k, [item])[0]
    if isinstance(guard, InvalidInput):
        raise guard
    guard.check_known()
    result = s.backend.execute(_command(k, [item], [value]))[0]
    if isinstance(result, InvalidInput):
        raise result  # the value's form, checked before any computation: nothing to count
    return release_pin(s, caller, Evaluated(guard, k, result, False))


def verify_card_value_batch(
    s: Services, caller: Caller, *, key: KeyRef, items: Sequence[CardValue], values: Sequence[str],
) -> list[bool | HsmsvcError]:
    """Check many values under one key, with the answers one by one would give.

    As :func:`hsmsvc.service.verification.verify_pin_batch`: every counter read in one query and an
    item at a limit refused there, unchecked; the rest checked in one backend call and settled in
    order in one store transaction. One key means one kind of key: a batch is all CVK values or
    all IMK values.
    """
    n = len(items)
    if n != len(values):
        raise InvalidInput("values", "one per card")
    kinds = {isinstance(i, CvvData) for i in items}
    if len(kinds) > 1:
        raise InvalidInput("cards", "all static values (CVV, CVV2, iCVV) or all dynamic ones (dCVV, CVC3)")
    if not n:
        return []
    k = s.key(caller, key, _operation(items[0]))
    guards = _guards(s, caller, k, items)
    live = [g if isinstance(g, AttemptGuard) else None for g in guards]
    out: list[bool | HsmsvcError] = [False] * n
    todo = unrefused(s, live, {j: g for j, g in enumerate(guards) if isinstance(g, InvalidInput)}, out)
    run_and_settle(s, caller, k, live, out, todo,
                   lambda ix: s.backend.execute(_command(k, [items[j] for j in ix], [values[j] for j in ix])))
    s.observer.key_used(k, sum(1 for r in out if r is True))
    return out
