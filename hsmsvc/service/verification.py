"""PIN verification use cases (ISO 9564-1, ANSI X9.8; bank design 004 clauses 5.2.4, 6.2.3).

A check runs in two steps. :func:`evaluate_pin` runs the PIN block through the
backend and holds the outcome without releasing it; :func:`release_pin` releases
it once the attempt counters allow (:mod:`hsmsvc.service.attempts`): the counters
are read in their queue, which releases a match or refuses any outcome at a limit
(so a refused match and a refused guess cost the same), and the rest settle in a
write. :func:`verify_pin` is both steps in one call, which the api runs on one
executor thread: run apart, a match's read could go ahead of wrong guesses
evaluated before it (``docs/performance.md``, issue 34).

A check against a stored PIN along the same keys call after call keeps a
:class:`VerifyRoute`: its keys checked once and the backend's prepared verifier,
used while :func:`~hsmsvc.service.pinkeys.route_current` holds, as a translation's
route is (:mod:`hsmsvc.service.routes`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from hsmsvc.crypto import ibm3624
from hsmsvc.errors import AttemptsExceeded, HsmsvcError, InvalidInput, InvalidPinBlock, VerificationFailed
from hsmsvc.hsm.commands import (
    CardHashes, HsmCommand, VerifyPinIbm3624, VerifyPinPvv, VerifyPinStored, VerifyPinsStored,
)
from hsmsvc.hsm.model import PinBlock, PinKey, PinVerifier, StoredPin
from hsmsvc.hsm.policy import Operation
from hsmsvc.keys.model import KeyRef, StoredKey
from hsmsvc.service.attempts import AttemptGuard, key_value, settle_checks
from hsmsvc.service.cards import checked_pan, pan_field, pvv_digits, refused_pans
from hsmsvc.service.context import Caller, Services
from hsmsvc.service.pinkeys import DukptKeyRef, OneTimeKeyRef, PinSource, pin_source, posix, psk_operation
from hsmsvc.types import PinBlockFormat

__all__ = [
    "Evaluated",
    "OffsetCheck",
    "PinCheck",
    "PvvCheck",
    "StoredPinCheck",
    "VerifyRoute",
    "evaluate_pin",
    "release_pin",
    "route_verification",
    "run_and_settle",
    "unrefused",
    "settle_batch",
    "verify_pin",
    "verify_pin_batch",
]


@dataclass(frozen=True)
class StoredPinCheck:
    """Compare with a PIN stored under a PSK (encrypted or keyed digest)."""

    psk: KeyRef
    account: str
    stored: StoredPin


@dataclass(frozen=True)
class OffsetCheck:
    """IBM 3624 offset; the decimalization table is the PVK's own.

    An empty ``validation_data`` is the PAN's (:func:`hsmsvc.crypto.ibm3624.pan_validation_data`).
    """

    pvk: KeyRef
    validation_data: str
    offset: str


def _validation_data(check: OffsetCheck, pan: str | None) -> str:
    """The check's validation data; empty means hsmsvc's own rule, as GeneratePinOffset applies it."""
    if check.validation_data:
        return check.validation_data  # offsets an issuer made elsewhere, under its own rule
    if not pan:
        raise InvalidInput("pan", "required when the validation data is the PAN's")
    return ibm3624.pan_validation_data(pan)


@dataclass(frozen=True)
class PvvCheck:
    """Visa PIN verification value."""

    pvk: KeyRef
    pvki: int
    pvv: str


PinCheck = StoredPinCheck | OffsetCheck | PvvCheck


def _card(pan: str | None, check: PinCheck) -> str:
    """What a verification counts against: the stored record's account, or the PAN digits the
    check binds (ISO 9564-1 clause 9.3.2 for a block's PAN field; a PVV's 11 digits)."""
    if isinstance(check, StoredPinCheck):
        return check.account
    if not pan:
        # Without a PAN nothing would keep this card's count (a format 1 block binds none).
        raise InvalidInput("pan", "required: a card's failed attempts are counted under it")
    return pvv_digits(pan) if isinstance(check, PvvCheck) else pan_field(pan)


@dataclass(frozen=True)
class VerifyRoute:
    """A stored-PIN check's keys, checked once (caller's access, usage, state, dates), and the
    backend's verifier prepared for them; kept and dropped as a translation's route is."""

    key: StoredKey
    psk: StoredKey
    verify: PinVerifier
    stamp: int
    until: float
    """POSIX time at which a date the checks relied on passes."""


def route_verification(s: Services, caller: Caller, *, key: KeyRef, fmt: PinBlockFormat,
                       psk: KeyRef) -> VerifyRoute:
    """Look up and check a stored-PIN check's PIN key and PSK."""
    stamp = s.keys.stamp  # before the lookups, so a change made during them shows
    k = s.key(caller, key, Operation.PIN_DECRYPT, "key")
    p = s.key(caller, psk, psk_operation, "psk")
    until = min(posix(k.expires_at), posix(s.keys.until(key)), posix(p.expires_at), posix(s.keys.until(psk)))
    return VerifyRoute(k, p, s.backend.pin_verifier(key=k.cryptogram, fmt=fmt, psk=p.cryptogram), stamp, until)


@dataclass(frozen=True)
class Evaluated:
    """A check the backend has run, its outcome held until :func:`release_pin` releases it."""

    guard: AttemptGuard
    key: StoredKey
    """The key audited and counted: the PIN key, or the one-time key's KTK."""
    matched: bool
    invalid: bool
    """The block failed a check after decryption: ``InvalidPinBlock`` once settled."""


def evaluate_pin(
    s: Services,
    caller: Caller,
    *,
    key: PinSource,
    fmt: PinBlockFormat,
    pin_block: bytes,
    pan: str | None,
    check: PinCheck,
    route: VerifyRoute | None = None,
) -> Evaluated:
    """Run a PIN block against a stored PIN, an IBM 3624 offset or a PVV; nothing is released.

    ``route``: the checked keys of a stored-PIN check, for ``key`` and ``check.psk``.
    Reads nothing from the store before the block is touched (the settlement decides),
    so on an in-process backend with its keys cached it needs no I/O.
    """
    card = _card(checked_pan(pan), check)
    run: Callable[[], None]
    if route is not None and isinstance(check, StoredPinCheck):
        guard = AttemptGuard(s, caller, card, pan=pan)
        guard.check_known()
        k, verify, account, stored = route.key, route.verify, check.account, check.stored

        def run() -> None:
            verify(pin_block, pan, account, stored)
    else:
        field = "one_time_key" if isinstance(key, OneTimeKeyRef) else "dukpt" if isinstance(key, DukptKeyRef) else "key"
        k, pk = pin_source(s, caller, key, field)
        guard = AttemptGuard(s, caller, card, pan=pan, hashes=_block_counter(s, k, check, pin_block))
        guard.check_known()
        run = _command(s, caller, check, PinBlock(pin_block, fmt, pan), pk)
    try:
        run()
    except VerificationFailed:
        return Evaluated(guard, k, False, False)
    except InvalidPinBlock:
        return Evaluated(guard, k, False, True)
    return Evaluated(guard, k, True, False)


def _block_counter(s: Services, k: StoredKey, check: PinCheck, pin_block: bytes) -> list[bytes]:
    """For an IBM 3624 check, a counter of the block itself under its key's value, besides the card's.

    The offset and validation data are the caller's, so the account a check is counted under
    does nothing but choose the counter: with one captured block, a format 3 block's fill bits
    gave 2^10 accounts that decode it alike, a format 0 block 4 (issue 36's third review). The
    block is what such guesses share, until translation enciphers it afresh (the fourth review):
    what bounds that is the principal's allowance. A counter under the caller's validation data
    was tried and withdrawn: it locked every card sharing it (a constant, or one with ``N``) and
    no right PIN cleared it (the fifth review; docs/host-commands.md, "Left"). A PVV binds the
    PAN's digits and a stored PIN its account, so their counters are what the cryptography binds.
    """
    if not isinstance(check, OffsetCheck) or not isinstance(pin_block, bytes) or len(pin_block) > 64:
        return []
    return s.backend.execute(CardHashes(values=[b"B" + key_value(k) + pin_block]))


def _command(s: Services, caller: Caller, check: PinCheck, pin: PinBlock, pk: PinKey) -> Callable[[], None]:
    """The backend command of ``check``, its keys looked up and checked."""
    b = s.backend
    if isinstance(check, StoredPinCheck):
        psk = s.key(caller, check.psk, psk_operation, "psk")
        c: HsmCommand[None] = VerifyPinStored(pin=pin, key=pk, psk=psk.cryptogram, account=check.account,
                                              stored=check.stored)
    elif isinstance(check, OffsetCheck):
        pvk = s.key(caller, check.pvk, Operation.PIN_VERIFY_IBM3624, "pvk")
        c = VerifyPinIbm3624(pin=pin, key=pk, pvk=pvk.cryptogram, validation_data=_validation_data(check, pin.pan),
                             offset=check.offset)
    elif isinstance(check, PvvCheck):
        if not pin.pan:
            raise InvalidInput("pan", "required for a PVV check")
        pvk = s.key(caller, check.pvk, Operation.PIN_VERIFY_PVV, "pvk")
        c = VerifyPinPvv(pin=pin, key=pk, pvk=pvk.cryptogram, pvki=check.pvki, pvv=check.pvv)
    else:
        raise InvalidInput("check", "a stored PIN, IBM 3624 offset or PVV check")
    return lambda: b.execute(c)


def _confirmations(s: Services, subjects: list[str]) -> dict[str, int]:
    """The counters of ``subjects``, read in their queue: the read that releases matches and
    refuses outcomes at a limit."""
    return s.store.confirm_attempts(subjects, s.limits.window)


def _released_without_write(s: Services, ev: Evaluated, counts: dict[str, int]) -> bool:
    """Whether ``ev`` is a match its counters, read in their queue (``counts``), release without a
    write. AttemptsExceeded if a counter is at its limit, match or not: a refused match and a refused
    guess cost one read each, so neither the answer nor its timing tells them apart. ``False``:
    :func:`release_pin` settles it in a write."""
    if not ev.matched:
        at = ev.guard.limited_by(counts)
        if at is not None:
            raise ev.guard.refused(at)
        return False
    if ev.guard.confirmed(counts):
        s.observer.key_used(ev.key)
        return True
    return False


def release_pin(s: Services, caller: Caller, ev: Evaluated) -> bool:
    """Release an evaluated check's outcome once settled: ``True`` for a match, ``False`` for a
    wrong PIN, ``InvalidPinBlock`` for a block that failed a check; AttemptsExceeded past a limit,
    the outcome not released. The counters are read in their queue first, which releases a match
    or refuses any outcome at a limit; the rest settle in a write."""
    if _released_without_write(s, ev, _confirmations(s, ev.guard.subjects)):
        return True
    ev.guard.write(ev.matched, ev.key, "verify")
    if ev.invalid:
        raise InvalidPinBlock()
    if ev.matched:
        s.observer.key_used(ev.key)
    return ev.matched


def verify_pin(
    s: Services,
    caller: Caller,
    *,
    key: PinSource,
    fmt: PinBlockFormat,
    pin_block: bytes,
    pan: str | None,
    check: PinCheck,
    route: VerifyRoute | None = None,
) -> bool:
    """Check a PIN block against a stored PIN, an IBM 3624 offset or a PVV: both steps in one call."""
    return release_pin(s, caller, evaluate_pin(s, caller, key=key, fmt=fmt, pin_block=pin_block, pan=pan,
                                               check=check, route=route))


def verify_pin_batch(
    s: Services,
    caller: Caller,
    *,
    key: KeyRef,
    fmt: PinBlockFormat,
    pin_blocks: Sequence[bytes],
    pans: Sequence[str | None],
    psk: KeyRef,
    accounts: Sequence[str],
    stored: Sequence[StoredPin],
) -> list[bool | HsmsvcError]:
    """Check many PIN blocks against stored PINs under one PSK, with the answers one by one would give.

    Keys are looked up once and every card's counter is read in one query; an item
    whose counters are at a limit is refused there, undeciphered. The rest go to the
    backend in one call (:class:`VerifyPinsStored`), and their outcomes are settled in
    order in one store transaction (:func:`settle_checks`), so an item another item of
    the batch, or another process, took past a limit is refused as it would have been
    one by one. A batch of matches on cards without failures is confirmed by one read
    in the counters' queue and writes nothing.
    """
    n = len(pin_blocks)
    if not n == len(pans) == len(accounts) == len(stored):
        raise InvalidInput("pans", "one PAN, account and stored PIN per PIN block")
    k = s.key(caller, key, Operation.PIN_DECRYPT)
    p = s.key(caller, psk, psk_operation, "psk")
    bad = refused_pans(pans)  # answered alone, never deciphered
    # Each counted under its stored record's account; None for a malformed one: the backend names it.
    guards = AttemptGuard.for_cards(s, caller, accounts)
    # Read before the blocks are touched: an item at a limit is refused undeciphered, so a batch
    # at a locked card costs the same whatever its PINs (a match would cost a read, a guess a write).
    out: list[bool | HsmsvcError] = [False] * n
    todo = unrefused(s, guards, bad, out)
    run_and_settle(s, caller, k, guards, out, todo, lambda ix: s.backend.execute(VerifyPinsStored(
        blocks=b"".join([pin_blocks[j] for j in ix]), key=k.cryptogram, format=fmt, pans=[pans[j] for j in ix],
        psk=p.cryptogram, accounts=[accounts[j] for j in ix], stored=[stored[j] for j in ix])))
    s.observer.key_used(k, sum(1 for r in out if r is True))
    return out


def unrefused(s: Services, guards: Sequence[AttemptGuard | None], refused: Mapping[int, HsmsvcError],
              out: list[bool | HsmsvcError]) -> list[int]:
    """The items of a batch to check: those neither refused already (``refused``, answered alone) nor
    at a limit in their counters, read once now for the whole batch; the others' answers go in ``out``."""
    subjects = sorted({x for g in guards if g for x in g.subjects})
    counts = s.store.failures(subjects, s.limits.window) if subjects else {}
    todo: list[int] = []
    for j, g in enumerate(guards):
        if j in refused:
            out[j] = refused[j]
            continue
        if g is not None:
            try:
                g.check_counts(counts)
            except AttemptsExceeded as e:
                out[j] = e
                continue
        todo.append(j)
    return todo


def run_and_settle(s: Services, caller: Caller, k: StoredKey, guards: Sequence[AttemptGuard | None],
                   out: list[bool | HsmsvcError], todo: Sequence[int],
                   run: Callable[[Sequence[int]], Sequence[bool | HsmsvcError]]) -> None:
    """Run a batch's checks ``todo`` names in one backend call (``run`` of their indices), settle their
    outcomes in order (:func:`settle_batch`), and put each answer in ``out``."""
    if not todo:
        return
    results: dict[int, bool | HsmsvcError] = dict(zip(todo, run(todo)))
    settle_batch(s, caller, k, guards, results)
    for j, r in results.items():
        out[j] = r


def settle_batch(s: Services, caller: Caller, k: StoredKey, guards: Sequence[AttemptGuard | None],
                  results: dict[int, bool | HsmsvcError]) -> None:
    """Settle a batch's evaluated outcomes (PIN or card value checks); those refused at a limit become
    AttemptsExceeded in ``results``."""
    checked: list[tuple[int, AttemptGuard, bool]] = []
    for j, r in results.items():
        g = guards[j]
        if g is not None and (r is True or r is False or isinstance(r, InvalidPinBlock)):
            checked.append((j, g, r is True))
    if not checked:
        return
    if all(m for _, _, m in checked):
        # Every one a match: confirmed by one read in the counters' queue, writing nothing,
        # unless a card has failures to clear or a counter is at its limit.
        counts = _confirmations(s, sorted({x for _, g, _ in checked for x in g.subjects}))
        if not counts or all(g.limited_by(counts) is None and not any(c in counts for c in g.clears)
                              for _, g, _ in checked):
            return
    settled = settle_checks(s, caller, [g for _, g, _ in checked], [m for _, _, m in checked], key=k, what="verify")
    for i, (j, g, _) in enumerate(checked):
        if not settled.released[i]:
            results[j] = g.exceeded(settled, i)
