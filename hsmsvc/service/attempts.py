"""Attempt limits, per card and per principal, kept in the store: PIN checks, and apart from them
card value checks (CVV, CVV2, iCVV, dCVV, CVC3: :data:`CARD_VALUES`).

A card is counted under a keyed hash of its PAN (CMAC under the LMK), never
the PAN itself, so the table holds nothing a PAN can be read from. Every
failure is audited in the same transaction that counts it. A correct PIN
clears its card's counter, as a card's PIN try counter is reset; the
principal's counter only ages out, so a caller cannot hide a guessing run
behind the odd success.

The counts are exact across processes: an outcome is released only once settled
in the store (:mod:`hsmsvc.keys.attempts`), in one queue with every other check
of the same counters (:mod:`hsmsvc.keys.store.counters`). A match is confirmed
by one read in that queue, writing nothing, so the usual verification costs one
round trip; a right PIN that did not queue would be answered ahead of the wrong
guesses in flight beside it, and a guess refused at settlement would be known
to be wrong (N guesses sent at once, N PINs tried). A single verification reads
nothing before the block is touched: a check refused at settlement counts
nothing, and what it refused is remembered for a second, so a flood at a locked
card is refused undeciphered after its first call in each process.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from hsmsvc.errors import AttemptsExceeded, InvalidInput
from hsmsvc.hsm.commands import PanHash, PanHashes
from hsmsvc.keys.attempts import Attempt, Settlement
from hsmsvc.keys.model import AuditEvent, StoredKey
from hsmsvc.redact import mask_pan
from hsmsvc.service.context import Caller, Services

__all__ = [
    "AttemptGuard", "CARD_VALUES", "Counted", "PINS", "check_principal", "count_failures", "failures_left",
    "key_value", "principal_subject", "settle_checks",
]


@dataclass(frozen=True)
class Counted:
    """What a guard's counters count, under which names: PIN checks, or card value checks.

    Kept apart so that a run of mistyped CVV2s at a web shop never locks a card's PIN, nor a
    principal's PIN checks; the limits (``[attempts]``) are the same numbers for both.
    """

    audit: str
    """The audit action's first word: ``pin.verify.failed``, ``cvv.verify.failed``."""
    card: str
    """The prefix of a card's counter, before the keyed hash."""
    principal: str
    """The prefix of a principal's counter, before its name."""
    checks: str
    """What a refusal says was failed too often."""


PINS: Final = Counted("pin", "pan:", "principal:", "PIN checks")
CARD_VALUES: Final = Counted("cvv", "cvv:", "cvv-principal:", "card value checks")


REMEMBERED: Final = 1.0
"""Seconds a process refuses a counter at once after a settlement found it at its limit."""
MAX_REMEMBERED: Final = 10_000
"""Counters remembered at most; forgetting one only costs its next check a store read."""


def key_value(key: StoredKey) -> bytes:
    """A key's value as counters name it (its algorithm and KCV), not its id: one key stored under two
    ids (a verify-only copy) is one set of counters."""
    c = key.cryptogram
    return f"{c.spec.algorithm.value}\x00{c.kcv.hex()}\x00".encode()


def principal_subject(name: str) -> str:
    """The counter a principal's failures are kept under."""
    return f"principal:{name}"


class AttemptGuard:
    """Check before a PIN (or a card value) is touched; count after it fails."""

    def __init__(self, services: Services, caller: Caller, card: str | None, *, pan: str | None = None,
                 counted: Counted = PINS, hashes: Sequence[bytes] = (), clears: int | None = None) -> None:
        """``card``: the digits (or account) counted under; ``pan``: the PAN the audit row shows masked;
        ``hashes``: further card counters (keyed hashes) the check is also kept under; ``clears``: how many
        of the last card counters a match resets (all by default: a card's PIN try counter)."""
        own = [services.backend.execute(PanHash(pan=card))] if card else []
        self._start(services, caller, pan or card, [*own, *hashes], counted, clears)

    def _start(self, services: Services, caller: Caller, pan: str | None, hashes: Sequence[bytes],
               counted: Counted = PINS, clears: int | None = None) -> None:
        self._s = services
        self._caller = caller
        self._pan = pan
        self._counted = counted
        self._subjects = [counted.principal + caller.principal.name, *(counted.card + h.hex() for h in hashes)]
        # Made once: the hot path reads them on every check.
        self._cards = self._subjects[1:]
        self._clears = self._cards if clears is None else self._subjects[len(self._subjects) - clears:]

    @classmethod
    def for_cards(cls, services: Services, caller: Caller, pans: Sequence[str]) -> list[AttemptGuard | None]:
        """A guard per PAN (or account), their hashes taken in one backend call;
        ``None`` where one is malformed, for the caller to report as the command would."""
        present = [p for p in pans if p]
        try:
            hashes = iter(services.backend.execute(PanHashes(pans=present)))
        except InvalidInput:
            return [_guard_or_none(services, caller, p) for p in pans]
        out: list[AttemptGuard | None] = []
        for p in pans:
            g = cls.__new__(cls)
            g._start(services, caller, p, [next(hashes)] if p else [])
            out.append(g)
        return out

    @property
    def subjects(self) -> list[str]:
        return self._subjects

    @property
    def card(self) -> str | None:
        """The card's counter (a keyed hash of its PAN or account), if the check names one."""
        return self._subjects[1] if len(self._subjects) > 1 else None

    @property
    def cards(self) -> list[str]:
        """Every card counter of the check (a card value check also counts what its data binds)."""
        return self._cards

    @property
    def clears(self) -> list[str]:
        """The card counters a released match resets: only those the match shows the caller knew the
        answer to (a card value check keeps its card's counter, which ages out)."""
        return self._clears

    def check(self) -> None:
        self.check_counts(self._s.store.failures(self._subjects, self._s.limits.window))

    def check_counts(self, counts: dict[str, int]) -> None:
        """Refuse if either limit is reached, given counts read for several guards at once."""
        at = self.limited_by(counts)
        if at is not None:
            raise self._refusal(at)

    def check_known(self) -> None:
        """Refuse at once, reading nothing, a counter a settlement here found at its limit within
        the last :data:`REMEMBERED` seconds."""
        refused = self._s.attempt_refusals
        if refused:
            at = time.monotonic()
            for x in self._subjects:
                if refused.get(x, 0.0) > at:
                    raise self._refusal(x)

    def check_principal(self) -> None:
        """The principal's limit only (:func:`check_principal`)."""
        check_principal(self._s, self._caller)

    def failed(self, key_id: str, key_version: int, what: str) -> None:
        self._s.store.record_failure(
            self._subjects,
            self._s.limits.window,
            AuditEvent(
                self._caller.principal.name,
                f"{self._counted.audit}.{what}.failed",
                key_id,
                key_version,
                (("method", self._caller.method), ("pan", mask_pan(self._pan)),
                 ("request_id", self._caller.request_id)),
            ),
        )
        self._s.attempt_cache.pop(self._caller.principal.name, None)

    def settle(self, matched: bool, key: StoredKey, what: str) -> None:
        """Release this check's outcome, or refuse it (AttemptsExceeded) past a limit.

        A match is confirmed by one read in the counters' queue; only one whose card has
        failures to clear is settled in a write (:meth:`write`).
        """
        if matched and self.confirmed(self._s.store.confirm_attempts(self._subjects, self._s.limits.window)):
            return
        self.write(matched, key, what)

    def write(self, matched: bool, key: StoredKey, what: str) -> None:
        """Settle this check's outcome in a store write; AttemptsExceeded if it is refused there."""
        out = settle_checks(self._s, self._caller, [self], [matched], key=key, what=what)
        if not out.released[0]:
            raise self.exceeded(out)

    def confirmed(self, counts: dict[str, int]) -> bool:
        """Whether a match is released by ``counts``, read in its counters' queue: AttemptsExceeded
        if a counter is at its limit, ``False`` if its card has failures to clear (a write settles it)."""
        at = self.limited_by(counts)
        if at is not None:
            raise self.refused(at)
        for c in self._clears:
            if c in counts:
                return False
        return True

    def refused(self, subject: str) -> AttemptsExceeded:
        """The refusal for ``subject`` at its limit, remembered (:meth:`check_known`)."""
        refusals, now = self._s.attempt_refusals, time.monotonic()
        if len(refusals) >= MAX_REMEMBERED:  # a flood over many locked cards must not grow it without end
            for x in [x for x, until in refusals.items() if until <= now]:
                del refusals[x]
            if len(refusals) >= MAX_REMEMBERED:
                refusals.clear()
        refusals[subject] = now + REMEMBERED
        return self._refusal(subject)

    def limited_by(self, counts: dict[str, int]) -> str | None:
        """The first of this check's counters at its limit in ``counts``, if any."""
        limits = self._s.limits
        if counts.get(self._subjects[0], 0) >= limits.per_principal:
            return self._subjects[0]
        for c in self._cards:
            if counts.get(c, 0) >= limits.per_pan:
                return c
        return None

    def _refusal(self, subject: str) -> AttemptsExceeded:
        checks = self._counted.checks
        if subject in self.cards:
            return AttemptsExceeded("pan", f"too many failed {checks} for this card")
        return AttemptsExceeded("principal", f"too many failed {checks}; try later")

    def exceeded(self, out: Settlement, index: int = 0) -> AttemptsExceeded:
        """The refusal of outcome ``index`` of ``out``: the card's limit if that is what refused it."""
        # A refused outcome always names the counter that refused it (keys.attempts.settle).
        return self.refused(out.limited_by[index] or self._subjects[0])


def _guard_or_none(s: Services, caller: Caller, pan: str) -> AttemptGuard | None:
    try:
        return AttemptGuard(s, caller, pan)
    except InvalidInput:
        return None


def check_principal(s: Services, caller: Caller) -> None:
    """The principal's limit only, for translation; a recent pass is trusted for a second.

    Failures are written through and drop that trust at once (:meth:`AttemptGuard.failed`),
    so only failures counted by another process can take up to a second to bite.
    """
    name = caller.principal.name
    if s.attempt_cache.get(name, 0.0) > time.monotonic():
        return
    subject = principal_subject(name)
    if s.store.failures([subject], s.limits.window).get(subject, 0) >= s.limits.per_principal:
        raise AttemptsExceeded("principal", "too many failed PIN checks; try later")
    s.attempt_cache[name] = time.monotonic() + 1.0


def failures_left(s: Services, caller: Caller) -> int:
    """How many more failures the principal may have now, read from the store (not trusted)."""
    subject = principal_subject(caller.principal.name)
    return s.limits.per_principal - s.store.failures([subject], s.limits.window).get(subject, 0)


def count_failures(s: Services, caller: Caller, pans: Sequence[str | None], *, key: StoredKey, what: str) -> None:
    """Count a run's failed items in one store write: each against the principal and its card,
    with one audit row for the run."""
    name = caller.principal.name
    counts = {principal_subject(name): len(pans)}
    present = [p for p in pans if p]
    for h in s.backend.execute(PanHashes(pans=present)) if present else ():
        card = "pan:" + h.hex()
        counts[card] = counts.get(card, 0) + 1
    s.store.record_failures(
        counts, s.limits.window,
        AuditEvent(name, f"pin.{what}.failed", key.key_id, key.version,
                   (("method", caller.method), ("failures", str(len(pans))), ("request_id", caller.request_id))),
    )
    s.attempt_cache.pop(name, None)


def settle_checks(
    s: Services,
    caller: Caller,
    guards: Sequence[AttemptGuard],
    matched: Sequence[bool],
    *,
    key: StoredKey,
    what: str,
) -> Settlement:
    """Settle evaluated checks, in order, in one store transaction with one audit row for what it counted."""
    limits = s.limits
    attempts = [Attempt(tuple(g.subjects), m, tuple(g.clears)) for g, m in zip(guards, matched)]
    cards = {c for g in guards for c in g.cards}
    per = {x: limits.per_pan if x in cards else limits.per_principal for a in attempts for x in a.subjects}
    audit_name = guards[0]._counted.audit if guards else PINS.audit
    detail: list[tuple[str, str]] = [("method", caller.method)]
    if len(guards) == 1:
        detail.append(("pan", mask_pan(guards[0]._pan)))

    def audit(out: Settlement) -> AuditEvent:
        return AuditEvent(caller.principal.name, f"{audit_name}.{what}.failed", key.key_id, key.version,
                          (*detail, ("failures", str(out.failures)), ("refused", str(out.refused)),
                           ("request_id", caller.request_id)))

    out = s.store.settle_attempts(attempts, limits=per, window=limits.window, audit=audit)
    if out.failures:
        s.attempt_cache.pop(caller.principal.name, None)
    return out
