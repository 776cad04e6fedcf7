"""PIN use cases (ISO 9564-1, ANSI X9.8): translate, verify, store.

Verification is in ``service/verification.py`` (re-exported here), issuance (offsets,
PVVs) in ``service/issuance.py`` and the batch moves of stored PINs in
``service/storedpins.py``: separate duties, separate roles (``docs/architecture.md``).

A clear PIN never reaches this layer: every step runs in the backend on PIN
blocks under keys. What this layer adds is policy: who may use which key,
attempt limits and audit. Any fault found after a PIN block is decrypted is
one ``InvalidPinBlock`` ("PIN block invalid") and counts as a failed attempt,
in translation too, so neither the error nor its timing in the counters tells
a caller which check failed. A wrong PIN is a result (``False``), not an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from hsmsvc.errors import AttemptsExceeded, HsmsvcError, InvalidInput, InvalidPinBlock, KeyUsageViolation
from hsmsvc.hsm.commands import EncryptPinForStorage, TranslatePins
from hsmsvc.hsm.model import PinBatch, PinBlock, PinTranslator, StoredPin
from hsmsvc.hsm.policy import Operation
from hsmsvc.keys.model import KeyRef, StoredKey
from hsmsvc.service.attempts import AttemptGuard, check_principal, count_failures, failures_left
from hsmsvc.service.cards import checked_pan, pan_field, refused_pans
from hsmsvc.service.context import Caller, Services
from hsmsvc.service.pinkeys import (
    DukptKeyRef,
    OneTimeKeyRef,
    PinSource,
    pin_source,
    posix,
    psk_operation,
    route_current,
)
from hsmsvc.service.verification import (
    OffsetCheck,
    PinCheck,
    PvvCheck,
    StoredPinCheck,
    verify_pin,
    verify_pin_batch,
)
from hsmsvc.types import KeyType, PinBlockFormat

__all__ = [
    "DukptKeyRef",
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


def require_translation_allowed(s: Services, source_format: PinBlockFormat,
                                destination_format: PinBlockFormat) -> None:
    """The deployment's ``[pin] allow_aes_to_tdes_translation``: format 4 (AES) to a TDES format or not.

    Checked on the formats before any key is looked up or block deciphered: the refusal depends on
    the request and the config alone.
    """
    # A 16-byte block (AES's format 4, or SM4's widened format 0) to an 8-byte TDES one is the same
    # downgrade to a 64-bit cipher (issue 36's third review: SM4 went around the switch).
    if (not s.pin.allow_aes_to_tdes_translation and source_format.block_size == 16
            and destination_format.block_size == 8):
        what = "ISO format 4 (AES)" if source_format is PinBlockFormat.ISO_4 else "SM4 format 0 (SM4)"
        raise KeyUsageViolation("destination_format", f"translation from {what} to {destination_format.value} "
                                "(TDES) is not allowed in this deployment ([pin] allow_aes_to_tdes_translation "
                                "= false)")


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
    src_ref: KeyRef
    if isinstance(source, OneTimeKeyRef):
        field, src_ref = "source_one_time_key", source.transport_key
    elif isinstance(source, DukptKeyRef):
        field, src_ref = "source_dukpt", source.bdk
    else:
        field, src_ref = "source_key", source
    src, src_key = pin_source(s, caller, source, field)
    dst = s.key(caller, destination, Operation.PIN_ENCRYPT, "destination_key")
    until = min(posix(dst.expires_at), posix(s.keys.until(destination)),
                posix(src.expires_at), posix(s.keys.until(src_ref)))
    sign_on = src.cryptogram.spec.key_type is KeyType.TPK and src.rotation_due
    if src.cryptogram.spec.key_type is KeyType.TPK and not sign_on:
        until = min(until, posix(src.due_by_age_at))  # the terminal is told to sign on from then
    translate = s.backend.pin_translator(src=src_key, src_format=source_format, dst=dst.cryptogram,
                                         dst_format=destination_format)
    return TranslateRoute(src, dst, translate, sign_on, stamp, until)


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
