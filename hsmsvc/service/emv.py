"""EMV issuer use cases (issue 35): ARQC verification answered with an ARPC; issuer scripts and
the offline PIN change.

An ARQC is an 8-byte MAC under the card's session key: a wrong one is a declined
authorisation, not a guess worth counting (2^64 values), so no attempt counter is kept; the
result is ``verified = False`` with no ARPC. The card's keys are derived and used inside the
backend (``hsm/commands/emv.py``, ``hsm/commands/scripts.py``).

Scripts are the authorisation host's, so the operator's: a script is MACed for the card the
request names, its data in clear, and a PIN change is a translation of the customer's PIN block to
its own card's key, counted as a translation is when the block fails (``hsm/commands/scripts.py``
says why nothing else is enciphered under that key).
"""

from __future__ import annotations

from collections.abc import Sequence

from hsmsvc.crypto import emv
from hsmsvc.errors import AttemptsExceeded, HsmsvcError, InvalidInput, InvalidPinBlock
from hsmsvc.hsm.commands import (
    ArqcData,
    CardHashes,
    GenerateIssuerScript,
    GeneratePinChangeScript,
    ScriptData,
    VerifyArqcs,
)
from hsmsvc.hsm.model import PinBlock
from hsmsvc.hsm.policy import Operation
from hsmsvc.keys.attempts import Attempt
from hsmsvc.keys.model import AuditEvent, KeyRef, StoredKey
from hsmsvc.redact import mask_pan
from hsmsvc.service.attempts import AttemptGuard, check_principal, key_value
from hsmsvc.service.cards import card_pan, pan_field
from hsmsvc.service.context import Caller, Services
from hsmsvc.types import PinBlockFormat

__all__ = ["generate_issuer_script", "generate_pin_change_script", "verify_arqc", "verify_arqc_batch"]


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


def generate_issuer_script(s: Services, caller: Caller, *, integrity: KeyRef, script: ScriptData) -> bytes:
    """An issuer script command for one card, its data in clear and MACed (Book 2 section 9)."""
    card_pan(script.pan)
    smi = s.key(caller, integrity, Operation.SCRIPT_MAC, "integrity_key")
    out = s.backend.execute(GenerateIssuerScript(smi=smi.cryptogram, script=script))
    s.observer.key_used(smi)
    return out


def generate_pin_change_script(
    s: Services, caller: Caller, *, integrity: KeyRef, confidentiality: KeyRef, script: ScriptData, pin_key: KeyRef,
    fmt: PinBlockFormat, pin_block: bytes, pan: str | None, ac: KeyRef | None, current_pin_block: bytes | None,
) -> bytes:
    """The offline PIN change command from the customer's new PIN block: counted as a translation is,
    a block that fails after its decryption being the one generic error and a failed attempt; and
    every PIN change counted against its card (:func:`_count_pin_change`)."""
    card_pan(script.pan)
    if pan != script.pan:
        # A PIN changes only on its own card (the review's codebook took PINs onto made-up cards).
        raise InvalidInput("pan", "the script's card's PAN: a PIN changes only on its own card")
    check_principal(s, caller)
    smi = s.key(caller, integrity, Operation.SCRIPT_MAC, "integrity_key")
    smc = s.key(caller, confidentiality, Operation.SCRIPT_ENCRYPT, "confidentiality_key")
    k = s.key(caller, pin_key, Operation.PIN_DECRYPT, "pin_key")
    mask = None if ac is None else s.key(caller, ac, Operation.VISA_PIN_CHANGE_MASK, "ac_key")
    current = None if current_pin_block is None else PinBlock(current_pin_block, fmt, pan)
    try:
        out = s.backend.execute(GeneratePinChangeScript(
            pin=PinBlock(pin_block, fmt, pan), key=k.cryptogram, smi=smi.cryptogram, smc=smc.cryptogram,
            script=script, ac=None if mask is None else mask.cryptogram, current=current))
    except InvalidPinBlock:
        AttemptGuard(s, caller, pan_field(script.pan), pan=pan).failed(k.key_id, k.version, "pin_change")
        raise
    _count_pin_change(s, caller, smc, script)
    s.observer.keys_used((smi, smc, k))
    return out


def _count_pin_change(s: Services, caller: Caller, smc: StoredKey, script: ScriptData) -> None:
    """Count a made PIN change against its card, released only within ``[attempts] per_pan`` a window.

    Any chosen PIN's block reaches a ZPK (a one-time key under a KTK whose public half is given out),
    and a PIN change's output is fixed for one PIN and session key: without a limit, PIN changes of
    every candidate onto a card are a codebook for that card's genuine one (an adversarial review
    recovered PINs so). A card changes its PIN a few times a year; ``per_pan`` a day allows that and
    makes a codebook take years. It also counts against the card's PIN-try counter (the one a failed
    PIN check counts against), so PIN changes and PIN checks together make no more guesses at a
    card's PIN than PIN checks alone (a review found a VIS change's current PIN made each change a
    guess). The count is settled in the store as attempts are, exactly across processes, and the row
    audits the change (``card.pin_change``)."""
    y = emv.master_key_input(pan=script.pan, psn=script.psn, option=script.option)
    subject = "pinchange:" + s.backend.execute(CardHashes(values=[b"C" + key_value(smc) + y]))[0].hex()
    subjects = (subject, *AttemptGuard(s, caller, pan_field(script.pan)).cards)
    limits = s.limits
    detail = (("method", caller.method), ("pan", mask_pan(script.pan)), ("request_id", caller.request_id))
    out = s.store.settle_attempts(
        [Attempt(subjects, False)], limits={x: limits.per_pan for x in subjects}, window=limits.window,
        audit=lambda settled: AuditEvent(caller.principal.name, "card.pin_change", smc.key_id, smc.version,
                                         (*detail, ("refused", str(settled.refused)))))
    if not out.released[0]:
        raise AttemptsExceeded("pan", "too many PIN changes or failed PIN checks for this card; try later")
