"""PIN use cases (ISO 9564-1, ANSI X9.8): translate, verify, store.

Issuance (offsets, PVVs) is in ``service/issuance.py`` and the batch moves of stored
PINs in ``service/storedpins.py``: separate duties, separate roles (``docs/architecture.md``).

A clear PIN never reaches this layer: every step runs in the backend on PIN
blocks under keys. What this layer adds is policy: who may use which key,
attempt limits and audit. Any fault found after a PIN block is decrypted is
one ``InvalidPinBlock`` ("PIN block invalid") and counts as a failed attempt,
in translation too, so neither the error nor its timing in the counters tells
a caller which check failed. A wrong PIN is a result (``False``), not an error.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

from hsmsvc.crypto import ibm3624
from hsmsvc.errors import (
    AttemptsExceeded,
    HsmsvcError,
    InvalidInput,
    InvalidPinBlock,
    KeyUsageViolation,
    VerificationFailed,
)
from hsmsvc.hsm.commands import (
    EncryptPinForStorage,
    TranslatePins,
    VerifyPinIbm3624,
    VerifyPinPvv,
    VerifyPinStored,
    VerifyPinsStored,
)
from hsmsvc.hsm.model import OneTimeKey, PinBatch, PinBlock, PinKey, PinTranslator, StoredPin
from hsmsvc.hsm.policy import Operation
from hsmsvc.keys.model import KeyRef, StoredKey
from hsmsvc.service.attempts import AttemptGuard, check_principal, count_failures, failures_left, settle_checks
from hsmsvc.service.cards import checked_pan, pan_field, pvv_digits, refused_pans
from hsmsvc.service.context import Caller, Services
from hsmsvc.types import Algorithm, KeyType, KeyUsage, PinBlockFormat

__all__ = [
    "OffsetCheck",
    "OneTimeKeyRef",
    "PinSource",
    "PinCheck",
    "PvvCheck",
    "StoredPinCheck",
    "TranslateRoute",
    "change_stored_pin",
    "encrypt_pin_for_storage",
    "psk_operation",
    "route_current",
    "require_translation_allowed",
    "route_translation",
    "translate_routed",
    "translate_pin_batch",
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


@dataclass(frozen=True)
class OneTimeKeyRef:
    """A terminal's one-time PIN key under a KTK's public half (bank design 004 clause 5.2.4(2))."""

    transport_key: KeyRef
    algorithm: Algorithm
    wrapped_key: bytes


PinSource = KeyRef | OneTimeKeyRef
"""What a PIN block arrives under: a stored TPK or ZPK, or a one-time key."""


def _source(s: Services, caller: Caller, source: PinSource, field: str) -> tuple[StoredKey, PinKey]:
    """The stored key to audit and count, and what the backend deciphers under."""
    if isinstance(source, OneTimeKeyRef):
        if not isinstance(source.algorithm, Algorithm) or not source.algorithm.is_block_cipher:
            raise InvalidInput(f"{field}.algorithm", "a block cipher (TDES, AES or SM4)")
        # Never stored, so only here does the mode see a one-time key's own algorithm.
        s.mode.require_key(source.algorithm, f"{field}.algorithm")
        ktk = s.key(caller, source.transport_key, Operation.KEY_TRANSPORT_DECRYPT, f"{field}.transport_key")
        return ktk, OneTimeKey(ktk.cryptogram, source.algorithm, bytes(source.wrapped_key))
    k = s.key(caller, source, Operation.PIN_DECRYPT, field)
    return k, k.cryptogram


def psk_operation(key: StoredKey) -> Operation:
    """What a PSK is used for: enciphering stored PINs, or digesting them."""
    usage = key.cryptogram.spec.usage
    return Operation.PIN_STORE_ENCRYPT if usage is KeyUsage.PIN_ENCRYPTION else Operation.PIN_STORE_DIGEST


def _card(pan: str | None, check: PinCheck) -> str:
    """What a verification counts against: the stored record's account, or the PAN digits the
    check binds (ISO 9564-1 clause 9.3.2 for a block's PAN field; a PVV's 11 digits)."""
    if isinstance(check, StoredPinCheck):
        return check.account
    if not pan:
        # Without a PAN nothing would keep this card's count (a format 1 block binds none).
        raise InvalidInput("pan", "required: a card's failed attempts are counted under it")
    return pvv_digits(pan) if isinstance(check, PvvCheck) else pan_field(pan)


def _translated_card(pan: str | None) -> str | None:
    # A failed translation counts against the PAN field the block was deciphered with.
    return pan_field(pan) if pan else None


@dataclass(frozen=True)
class TranslateRoute:
    """A translation's keys and formats, checked once (caller's access, usage, state, dates).

    A caller that translates between the same two keys call after call keeps
    its route and skips the checks while :func:`route_current` holds: the key
    cache has dropped or changed nothing since (a revocation, a new version, a
    use-count block) and no date it depends on has passed. The backend's
    translator checks each key's binding whenever it loads the key.
    """

    source: StoredKey
    """The stored key audited and counted: the TPK or ZPK, or the one-time key's KTK."""
    destination: StoredKey
    translate: PinTranslator
    """The backend's translation between the two keys and formats."""
    sign_on: bool
    """The source is a TPK due for a new version: the terminal should sign on again."""
    stamp: int
    until: float
    """POSIX time at which a date the checks relied on passes."""


def _posix(when: datetime | None) -> float:
    return math.inf if when is None else when.timestamp()


def require_translation_allowed(s: Services, source_format: PinBlockFormat,
                                destination_format: PinBlockFormat) -> None:
    """The deployment's ``[pin] allow_aes_to_tdes_translation``: format 4 (AES) to a TDES format or not.

    Checked on the formats before any key is looked up or block deciphered: the refusal depends on
    the request and the config alone.
    """
    if (not s.pin.allow_aes_to_tdes_translation and source_format is PinBlockFormat.ISO_4
            and destination_format.block_size == 8):
        raise KeyUsageViolation("destination_format", f"translation from ISO format 4 (AES) to "
                                f"{destination_format.value} (TDES) is not allowed in this deployment "
                                "([pin] allow_aes_to_tdes_translation = false)")


def route_translation(
    s: Services,
    caller: Caller,
    *,
    source: PinSource,
    source_format: PinBlockFormat,
    destination: KeyRef,
    destination_format: PinBlockFormat,
) -> TranslateRoute:
    """Look up and check both keys of a translation (ISO 9564-1 clause 9.3: decipher, re-encipher)."""
    require_translation_allowed(s, source_format, destination_format)
    stamp = s.keys.stamp  # before the lookups, so a change made during them shows
    field = "source_one_time_key" if isinstance(source, OneTimeKeyRef) else "source_key"
    src, src_key = _source(s, caller, source, field)
    dst = s.key(caller, destination, Operation.PIN_ENCRYPT, "destination_key")
    src_ref = source.transport_key if isinstance(source, OneTimeKeyRef) else source
    until = min(_posix(dst.expires_at), _posix(s.keys.until(destination)),
                _posix(src.expires_at), _posix(s.keys.until(src_ref)))
    sign_on = src.cryptogram.spec.key_type is KeyType.TPK and src.rotation_due
    if src.cryptogram.spec.key_type is KeyType.TPK and not sign_on:
        until = min(until, _posix(src.due_by_age_at))  # the terminal is told to sign on from then
    translate = s.backend.pin_translator(src=src_key, src_format=source_format, dst=dst.cryptogram,
                                         dst_format=destination_format)
    return TranslateRoute(src, dst, translate, sign_on, stamp, until)


def route_current(s: Services, route: TranslateRoute) -> bool:
    """Whether ``route``'s checks still hold."""
    return s.keys.current(route.stamp) and (route.until == math.inf or time.time() < route.until)


def translate_routed(s: Services, caller: Caller, *, route: TranslateRoute, pin_block: bytes,
                     pan: str | None) -> tuple[bytes, int, bool]:
    """Translate one PIN block along a checked route; returns it, the destination key's version,
    and whether the terminal should sign on again."""
    checked_pan(pan)  # before any state changes: this may run inline (loopguard)
    check_principal(s, caller)
    try:
        out = route.translate(pin_block, pan)
    except InvalidPinBlock:
        AttemptGuard(s, caller, _translated_card(pan), pan=pan).failed(route.source.key_id, route.source.version,
                                                                       "translate")
        raise
    s.observer.keys_used((route.source, route.destination))
    return out, route.destination.version, route.sign_on


def translate_pin_batch(
    s: Services,
    caller: Caller,
    *,
    source: KeyRef,
    source_format: PinBlockFormat,
    destination: KeyRef,
    destination_format: PinBlockFormat,
    pin_blocks: bytes,
    pans: Sequence[str | None],
) -> tuple[PinBatch, int]:
    """Translate blocks packed back to back, one per PAN, under one key pair.

    The backend gets runs of no more items than the principal has failures left,
    so a batch never takes it past its limit; each run's failures are counted in
    one store write before the next run is formed, and once the limit is reached
    the remaining items are refused without being deciphered.
    """
    require_translation_allowed(s, source_format, destination_format)
    bad = refused_pans(pans)  # answered alone, never deciphered
    src = s.key(caller, source, Operation.PIN_DECRYPT, "source_key")
    dst = s.key(caller, destination, Operation.PIN_ENCRYPT, "destination_key")
    size, out_size, n = source_format.block_size, destination_format.block_size, len(pans)
    if len(pin_blocks) != size * n:
        raise InvalidInput("pin_blocks", f"one {size}-byte block per PAN")
    out = bytearray()
    errors: list[tuple[int, HsmsvcError]] = []
    start = 0
    while start < n:
        if start in bad:
            errors.append((start, bad[start]))
            out += bytes(out_size)
            start += 1
            continue
        left = failures_left(s, caller)
        if left <= 0:
            refused = AttemptsExceeded("principal", "too many failed PIN checks; try later")
            errors.extend((i, refused) for i in range(start, n))
            out += bytes(out_size * (n - start))
            break
        end = min([n, start + left, *(i for i in bad if i > start)])
        run = s.backend.execute(TranslatePins(blocks=pin_blocks[start * size:end * size], src=src.cryptogram,
                                              src_format=source_format, dst=dst.cryptogram,
                                              dst_format=destination_format, pans=pans[start:end]))
        out += run.blocks
        errors.extend((start + i, e) for i, e in run.errors)
        failed = [start + i for i, e in run.errors if isinstance(e, InvalidPinBlock)]
        if failed:
            count_failures(s, caller, [_translated_card(pans[i]) for i in failed], key=src, what="translate")
        start = end
    n_ok = n - len(errors)
    s.observer.key_used(src, n_ok)
    s.observer.key_used(dst, n_ok)
    return PinBatch(bytes(out), tuple(errors)), dst.version


def verify_pin(
    s: Services,
    caller: Caller,
    *,
    key: PinSource,
    fmt: PinBlockFormat,
    pin_block: bytes,
    pan: str | None,
    check: PinCheck,
) -> bool:
    """Check a PIN block against a stored PIN, an IBM 3624 offset or a PVV."""
    guard = AttemptGuard(s, caller, _card(checked_pan(pan), check), pan=pan)
    guard.check_known()  # read nothing before the block is touched: the settlement decides
    k, pk = _source(s, caller, key, "one_time_key" if isinstance(key, OneTimeKeyRef) else "key")
    b = s.backend
    try:
        if isinstance(check, StoredPinCheck):
            psk = s.key(caller, check.psk, psk_operation, "psk")
            b.execute(VerifyPinStored(pin=PinBlock(pin_block, fmt, pan), key=pk, psk=psk.cryptogram,
                                      account=check.account, stored=check.stored))
        elif isinstance(check, OffsetCheck):
            pvk = s.key(caller, check.pvk, Operation.PIN_VERIFY_IBM3624, "pvk")
            b.execute(VerifyPinIbm3624(pin=PinBlock(pin_block, fmt, pan), key=pk, pvk=pvk.cryptogram,
                                       validation_data=_validation_data(check, pan), offset=check.offset))
        elif isinstance(check, PvvCheck):
            if not pan:
                raise InvalidInput("pan", "required for a PVV check")
            pvk = s.key(caller, check.pvk, Operation.PIN_VERIFY_PVV, "pvk")
            b.execute(VerifyPinPvv(pin=PinBlock(pin_block, fmt, pan), key=pk, pvk=pvk.cryptogram,
                                   pvki=check.pvki, pvv=check.pvv))
        else:
            raise InvalidInput("check", "a stored PIN, IBM 3624 offset or PVV check")
    except VerificationFailed:
        guard.settle(False, k, "verify")  # AttemptsExceeded past a limit: the answer is not released
        return False
    except InvalidPinBlock:
        guard.settle(False, k, "verify")
        raise
    guard.settle(True, k, "verify")
    s.observer.key_used(k)
    return True


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
    backend in one call (:meth:`Backend.verify_pins_stored`), and their outcomes are
    settled in order in one store transaction (:func:`settle_checks`), so an item
    another item of the batch, or another process, took past a limit is refused as
    it would have been one by one. A batch of matches on cards without failures
    is confirmed by one read in the counters' queue and writes nothing.
    """
    n = len(pin_blocks)
    if not n == len(pans) == len(accounts) == len(stored):
        raise InvalidInput("pans", "one PAN, account and stored PIN per PIN block")
    k = s.key(caller, key, Operation.PIN_DECRYPT)
    p = s.key(caller, psk, psk_operation, "psk")
    bad = refused_pans(pans)  # answered alone, never deciphered
    # Each counted under its stored record's account; None for a malformed one: the backend names it.
    guards = AttemptGuard.for_cards(s, caller, accounts)
    counts = s.store.failures(sorted({x for g in guards if g for x in g.subjects}), s.limits.window)
    out: list[bool | HsmsvcError] = [False] * n
    todo: list[int] = []
    for j in range(n):
        g = guards[j]
        if j in bad:
            out[j] = bad[j]
            continue
        if g is not None:
            try:
                g.check_counts(counts)
            except AttemptsExceeded as e:
                out[j] = e
                continue
        todo.append(j)
    if todo:
        results = s.backend.execute(VerifyPinsStored(blocks=b"".join([pin_blocks[j] for j in todo]),
                                                     key=k.cryptogram, format=fmt,
                                                     pans=[pans[j] for j in todo], psk=p.cryptogram,
                                                     accounts=[accounts[j] for j in todo],
                                                     stored=[stored[j] for j in todo]))
        out_todo = dict(zip(todo, results))
        _settle_batch(s, caller, k, guards, out_todo)
        for j, r in out_todo.items():
            out[j] = r
    s.observer.key_used(k, sum(1 for r in out if r is True))
    return out


def _settle_batch(s: Services, caller: Caller, k: StoredKey, guards: Sequence[AttemptGuard | None],
                  results: dict[int, bool | HsmsvcError]) -> None:
    """Settle a batch's evaluated outcomes; those refused at a limit become AttemptsExceeded in ``results``."""
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
        counts = s.store.confirm_attempts(sorted({x for _, g, _ in checked for x in g.subjects}), s.limits.window)
        if all(g.limited_by(counts) is None and g.card not in counts for _, g, _ in checked):
            return
    settled = settle_checks(s, caller, [g for _, g, _ in checked], [m for _, _, m in checked], key=k, what="verify")
    for i, (j, g, _) in enumerate(checked):
        if not settled.released[i]:
            results[j] = g.exceeded(settled, i)


def encrypt_pin_for_storage(
    s: Services,
    caller: Caller,
    *,
    key: KeyRef,
    fmt: PinBlockFormat,
    pin_block: bytes,
    pan: str | None,
    psk: KeyRef,
    account: str,
) -> tuple[StoredPin, int]:
    """Take a customer's PIN into storage under the PSK; returns it and the PSK version."""
    guard = AttemptGuard(s, caller, account)
    checked_pan(pan)
    guard.check_principal()
    k = s.key(caller, key, Operation.PIN_DECRYPT)
    p = s.key(caller, psk, psk_operation, "psk")
    try:
        stored = s.backend.execute(EncryptPinForStorage(pin=PinBlock(pin_block, fmt, pan), key=k.cryptogram,
                                                        psk=p.cryptogram, account=account))
    except InvalidPinBlock:
        guard.failed(k.key_id, k.version, "store")
        raise
    s.observer.key_used(p)
    return stored, p.version


def change_stored_pin(
    s: Services,
    caller: Caller,
    *,
    key: KeyRef,
    fmt: PinBlockFormat,
    pan: str | None,
    old_pin_block: bytes,
    new_pin_block: bytes,
    check: StoredPinCheck,
) -> tuple[StoredPin | None, int]:
    """Verify the old PIN against the stored one, then store the new; ``None`` if the old is wrong."""
    if not verify_pin(s, caller, key=key, fmt=fmt, pin_block=old_pin_block, pan=pan, check=check):
        return None, 0
    return encrypt_pin_for_storage(s, caller, key=key, fmt=fmt, pin_block=new_pin_block, pan=pan, psk=check.psk,
                                   account=check.account)
