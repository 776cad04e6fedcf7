"""Stored PINs moved between PSKs in batches, and the sample check of such a move.

The batch re-encryption's remote path (``hsmsvc reencrypt --server``) and its
``--verify-sample``; the reencryptor role's, not the operator's
(``docs/architecture.md``).
"""

from __future__ import annotations

from typing import Sequence

from hsmsvc.errors import AttemptsExceeded, HsmsvcError, InvalidInput
from hsmsvc.hsm.commands import CompareStoredPins, ReencryptStoredPins
from hsmsvc.keys.model import KeyRef
from hsmsvc.service.attempts import AttemptGuard, failures_left, settle_checks
from hsmsvc.service.context import Caller, Services
from hsmsvc.service.pinkeys import psk_operation

__all__ = ["compare_stored_pins", "reencrypt_stored_pins"]


def reencrypt_stored_pins(
    s: Services,
    caller: Caller,
    *,
    old_psk: KeyRef,
    new_psk: KeyRef,
    accounts: Sequence[str],
    stored: Sequence[bytes],
) -> tuple[list[bytes | HsmsvcError], int]:
    """Move enciphered stored PINs to another PSK, enciphering or digest (the batch tool's remote path)."""
    if len(accounts) != len(stored):
        raise InvalidInput("accounts", "one per stored PIN")
    old = s.key(caller, old_psk, psk_operation, "old_psk")
    new = s.key(caller, new_psk, psk_operation, "new_psk")
    moved = s.backend.execute(ReencryptStoredPins(old_psk=old.cryptogram, new_psk=new.cryptogram,
                                                  rows=list(zip(stored, accounts))))
    s.observer.key_used(new, sum(1 for r in moved if r is not None))
    # One answer for every refused row, as for a single PIN: no oracle.
    return [InvalidInput("stored_pins", "not a stored PIN under the old PSK for its account") if r is None else r
            for r in moved], new.version


def compare_stored_pins(
    s: Services,
    caller: Caller,
    *,
    old_psk: KeyRef,
    new_psk: KeyRef,
    accounts: Sequence[str],
    old_stored: Sequence[bytes],
    new_stored: Sequence[bytes],
) -> list[bool]:
    """Whether each pair of stored PINs holds one PIN: the batch re-encryption's sample check.

    Row *i* pairs account *i*'s value under the old PSK with its value under the new
    one; nothing is compared across rows. The two PSKs must differ (the check is of
    a move between keys). Each mismatch counts as one failure against the principal,
    not the account: a mismatch means the job is wrong, which should not lock the
    customer out. Rows go to the backend in runs of no more than the principal has
    failures left, and each run's mismatches are settled in the store (as a wrong PIN
    is, :func:`settle_checks`); once one is past the limit, or the principal has no
    failures left, the call is refused (AttemptsExceeded), the mismatches counted.
    """
    if not len(accounts) == len(old_stored) == len(new_stored):
        raise InvalidInput("accounts", "one per pair of stored PINs")
    old = s.key(caller, old_psk, psk_operation, "old_psk")
    new = s.key(caller, new_psk, psk_operation, "new_psk")
    if old.key_id == new.key_id:
        raise InvalidInput("new_psk", "a different PSK from old_psk")
    out: list[bool] = []
    n = len(accounts)
    while len(out) < n:
        left = failures_left(s, caller)
        if left <= 0:
            raise AttemptsExceeded("principal", "too many failed PIN checks; try later")
        start, end = len(out), min(n, len(out) + left)
        same = s.backend.execute(CompareStoredPins(old_psk=old.cryptogram, new_psk=new.cryptogram,
                                                   rows=list(zip(old_stored[start:end], new_stored[start:end],
                                                                 accounts[start:end]))))
        if not all(same):
            guards = [AttemptGuard(s, caller, None) for _ in same]
            if not all(settle_checks(s, caller, guards, same, key=new, what="compare").released):
                raise AttemptsExceeded("principal", "too many failed PIN checks; try later")
        out += same
    return out
