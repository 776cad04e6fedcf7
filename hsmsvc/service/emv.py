"""EMV issuer use cases (issue 35): ARQC verification, answered with an ARPC.

An ARQC is an 8-byte MAC under the card's session key: a wrong one is a declined
authorisation, not a guess worth counting (2^64 values), so no attempt counter is kept; the
result is ``verified = False`` with no ARPC. The card's keys are derived and used inside the
backend (``hsm/commands/emv.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

from hsmsvc.errors import HsmsvcError
from hsmsvc.hsm.commands import ArqcData, VerifyArqcs
from hsmsvc.hsm.policy import Operation
from hsmsvc.keys.model import KeyRef
from hsmsvc.service.cards import card_pan
from hsmsvc.service.context import Caller, Services

__all__ = ["verify_arqc", "verify_arqc_batch"]


def verify_arqc(s: Services, caller: Caller, *, key: KeyRef, item: ArqcData) -> tuple[bytes | None, int]:
    """The ARPC asked for (``b""`` for none) if ``item``'s ARQC verifies, else ``None``; and the IMK's version."""
    card_pan(item.pan)
    k = s.key(caller, key, Operation.ARQC_VERIFY)
    result = s.backend.execute(VerifyArqcs(key=k.cryptogram, items=[item]))[0]
    if isinstance(result, HsmsvcError):
        raise result
    if result is not None:
        s.observer.key_used(k)
    return result, k.version


def verify_arqc_batch(
    s: Services, caller: Caller, *, key: KeyRef, items: Sequence[ArqcData],
) -> tuple[list[bytes | None | HsmsvcError], int]:
    """:func:`verify_arqc` of each item under one IMK, checked and loaded once; an item's own
    error where its input is malformed."""
    k = s.key(caller, key, Operation.ARQC_VERIFY)
    out: list[bytes | None | HsmsvcError] = [None] * len(items)
    todo: list[int] = []
    for j, item in enumerate(items):
        try:
            card_pan(item.pan)
            todo.append(j)
        except HsmsvcError as e:
            out[j] = e
    if todo:
        for j, r in zip(todo, s.backend.execute(VerifyArqcs(key=k.cryptogram, items=[items[j] for j in todo]))):
            out[j] = r
    s.observer.key_used(k, sum(1 for r in out if isinstance(r, bytes)))
    return out, k.version
