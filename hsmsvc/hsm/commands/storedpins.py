"""PINs at rest under a PSK: storing, verifying, and moving them to a new PSK (bank design 004 clause 6.2).

An enciphered stored PIN is ISO 9564-1 format 4 under an AES or SM4 PSK, or
format 0 under a TDES PSK, bound to its account; a digest is a keyed one-way
HMAC of (label, account, PIN). A stored value that does not decode is a
mismatch, never a second error, so no answer tells the two apart.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from hsmsvc.crypto import compare, _validate, pindigest, pinblock
from hsmsvc.errors import HsmsvcError, InvalidInput, InvalidPinBlock, KeyUsageViolation, VerificationFailed
from hsmsvc.hsm.commands.base import (
    DEBUG,
    MAX_BATCH_PINS,
    HsmCommand,
    KeptKeys,
    LoadedKey,
    columns,
    debugging,
    hmac_for,
    observe,
)
from hsmsvc.hsm.model import Command, KeyCryptogram, PinBlock, PinKey, StoredPin, StoredPinMethod
from hsmsvc.hsm.policy import Operation
from hsmsvc.types import KeyUsage, Padding, PinBlockFormat

if TYPE_CHECKING:
    from hsmsvc.hsm.commands.core import CommandBackend

__all__ = [
    "CompareStoredPins",
    "EncryptPinForStorage",
    "ReencryptStoredPin",
    "ReencryptStoredPins",
    "StoredVerifier",
    "VerifyPinStored",
    "VerifyPinsStored",
]


def _storage_format(psk: LoadedKey) -> PinBlockFormat:
    return PinBlockFormat.ISO_4 if psk.algorithm.block_size == 16 else PinBlockFormat.ISO_0


def _digest(psk: LoadedKey, account: str, pin: str) -> bytes:
    """The keyed one-way digest a digest PSK stores for (account, PIN)."""
    return psk.mac(hmac_for(psk), Padding.METHOD_1, pindigest.message(account, pin))


def _store(psk: LoadedKey, pin: str, account: str) -> StoredPin:
    if psk.spec.usage is KeyUsage.PIN_ENCRYPTION:
        fmt = _storage_format(psk)
        return StoredPin(StoredPinMethod.ENCRYPTED, pinblock.encipher(fmt, psk, pin, account))
    return StoredPin(StoredPinMethod.DIGEST, _digest(psk, account, pin))


def _use_psk(b: CommandBackend, psk: KeyCryptogram, old_lmk: bool = False) -> LoadedKey:
    op = (
        Operation.PIN_STORE_ENCRYPT
        if psk.spec.usage is KeyUsage.PIN_ENCRYPTION
        else Operation.PIN_STORE_DIGEST
    )
    return b._use(psk, op, old_lmk=old_lmk)


def _check_stored(psk: LoadedKey, stored: StoredPin) -> None:
    if not isinstance(stored, StoredPin) or not isinstance(stored.value, bytes):
        raise InvalidInput("stored_pin", "a StoredPin")
    want = (
        StoredPinMethod.ENCRYPTED
        if psk.spec.usage is KeyUsage.PIN_ENCRYPTION
        else StoredPinMethod.DIGEST
    )
    if stored.method is not want:
        raise KeyUsageViolation("psk", f"bound to {want.value} stored PINs")
    size = psk.algorithm.block_size if want is StoredPinMethod.ENCRYPTED else 32
    if len(stored.value) != size:
        raise InvalidInput("stored_pin", f"{size} bytes for this PSK")


def _stored_pin(psk: LoadedKey, value: bytes, account: str) -> str | None:
    """The PIN in one enciphered stored value, or ``None``: no reason given."""
    if not isinstance(value, bytes) or len(value) != psk.algorithm.block_size:
        return None
    try:
        return pinblock.decipher(_storage_format(psk), psk, value, account)
    except InvalidInput:
        return None


def _holds(psk: LoadedKey, value: bytes, account: str, pin: str) -> bool:
    """Whether a stored value (enciphered or digest) holds ``pin``, compared in constant time."""
    if psk.spec.usage is KeyUsage.PIN_ENCRYPTION:
        kept = _stored_pin(psk, value, account)
        return kept is not None and compare.bytes_eq(kept.encode(), pin.encode())
    return isinstance(value, bytes) and compare.bytes_eq(_digest(psk, account, pin), value)


def _shaped(values: Sequence[object], accounts: Sequence[object], size: int, min_account: int) -> list[bool]:
    """Per row: a stored PIN of ``size`` bytes and an account of digits. The whole batch is checked at
    once first (C-level ``map``), and row by row only when it has a bad row."""
    lengths = range(min_account, 20)
    if (
        set(map(type, values)) <= {bytes} and set(map(type, accounts)) <= {str}
        and set(map(len, values)) <= {size} and set(map(len, accounts)) <= set(lengths)  # type: ignore[arg-type]
    ):
        joined = "".join(accounts)  # type: ignore[arg-type]
        # bytes.isdigit: ASCII digits only, and far quicker than str.isdigit on a long run.
        if joined.isascii() and joined.encode("ascii").isdigit():
            return [True] * len(values)
    return [
        isinstance(v, bytes) and len(v) == size and isinstance(a, str) and len(a) in lengths
        and a.isascii() and a.isdigit()
        for v, a in zip(values, accounts)
    ]


@dataclass(frozen=True, kw_only=True, repr=False)
class EncryptPinForStorage(HsmCommand[StoredPin]):
    """A PIN block under ``key`` put at rest under ``psk`` for ``account``."""

    pin: PinBlock
    key: PinKey
    psk: KeyCryptogram
    account: str

    def run(self, b: CommandBackend) -> StoredPin:
        b._capabilities.require(Command.ENCRYPT_PIN_FOR_STORAGE)
        _validate.digits(self.account, "account", 12, 19)
        with b._guard():
            pin = b._pin(self.pin, self.key)
            return _store(_use_psk(b, self.psk), pin, self.account)


@dataclass(frozen=True, kw_only=True, repr=False)
class VerifyPinStored(HsmCommand[None]):
    """A PIN block checked against a stored PIN; ``VerificationFailed`` if it does not hold it."""

    pin: PinBlock
    key: PinKey
    psk: KeyCryptogram
    account: str
    stored: StoredPin

    def run(self, b: CommandBackend) -> None:
        b._capabilities.require(Command.VERIFY_PIN_STORED)
        _validate.digits(self.account, "account", 12, 19)
        with b._guard():
            pin = b._pin(self.pin, self.key)
            p = _use_psk(b, self.psk)
            _check_stored(p, self.stored)
            # A stored block that does not decode is reported as a mismatch:
            # no second error to tell the two apart.
            if not _holds(p, self.stored.value, self.account, pin):
                raise VerificationFailed("pin", "does not verify")


class StoredVerifier:
    """``CommandBackend.pin_verifier``: :class:`VerifyPinStored` for one PIN key, format and PSK,
    the two keys loaded once and kept while the backend keeps them (:class:`KeptKeys`).

    Format 0 under a TDES key against a PIN stored in format 0 under a TDES PSK runs
    here as :meth:`VerifyPinsStored._iso0_run` does for one item: the two PIN fields
    compared in constant time. Anything else, or an item that is not plainly well
    formed, takes :class:`VerifyPinStored`, which names the fault. Each call is
    observed as a ``VerifyPinStored`` when the backend observes commands.
    """

    __slots__ = ("_backend", "_fast", "_format", "_key", "_keys", "_psk")

    def __init__(self, backend: CommandBackend, key: PinKey, fmt: PinBlockFormat, psk: KeyCryptogram) -> None:
        backend._capabilities.require(Command.VERIFY_PIN_STORED)
        self._backend, self._key, self._format, self._psk = backend, key, fmt, psk
        self._fast = (fmt is PinBlockFormat.ISO_0 and type(key) is KeyCryptogram and key.spec.algorithm.is_tdes
                      and type(psk) is KeyCryptogram and psk.spec.usage is KeyUsage.PIN_ENCRYPTION
                      and psk.spec.algorithm.is_tdes)
        op = Operation.PIN_STORE_ENCRYPT if self._fast else Operation.PIN_STORE_DIGEST  # used on the fast path only
        self._keys = KeptKeys((key, Operation.PIN_DECRYPT), (psk, op))  # type: ignore[arg-type]

    def __call__(self, block: bytes, pan: str | None, account: str, stored: StoredPin) -> None:
        b = self._backend
        if b.timing is not None or debugging(DEBUG):
            return observe(self._command(block, pan, account, stored),
                           lambda: self._verify(block, pan, account, stored), b.timing)
        return self._verify(block, pan, account, stored)

    def _command(self, block: bytes, pan: str | None, account: str, stored: StoredPin) -> VerifyPinStored:
        return VerifyPinStored(pin=PinBlock(block, self._format, pan), key=self._key, psk=self._psk,
                               account=account, stored=stored)

    def _verify(self, block: bytes, pan: str | None, account: str, stored: StoredPin) -> None:
        if (self._fast and type(block) is bytes and len(block) == 8 and type(pan) is str
                and type(stored) is StoredPin and stored.method is StoredPinMethod.ENCRYPTED
                and type(stored.value) is bytes and len(stored.value) == 8
                and type(account) is str and 13 <= len(account) <= 19 and account.isascii() and account.isdigit()):
            b = self._backend
            with b._guard_cm:
                key, psk = self._keys.get(b)
                try:
                    fields, good = pinblock.iso0_pin_fields(key.decrypt(block), (pan,))
                except (InvalidInput, TypeError):
                    fields = b""  # a malformed PAN: the command names it
                else:
                    kept, kept_good = pinblock.iso0_pin_fields(psk.decrypt(stored.value), (account,))
            if fields:
                if not good[0]:
                    raise InvalidPinBlock()
                # A stored block that does not decode is a mismatch, as in the command: no second error.
                if not (compare.bytes_eq(fields, kept) and kept_good[0]):
                    raise VerificationFailed("pin", "does not verify")
                return
        self._command(block, pan, account, stored).run(self._backend)


@dataclass(frozen=True, kw_only=True, repr=False)
class VerifyPinsStored(HsmCommand[list[bool | HsmsvcError]]):
    """:class:`VerifyPinStored` for blocks packed back to back, one per (PAN, account, stored PIN).

    Per item: ``True`` (verified), ``False`` (does not verify) or the error a
    single check gives (``InvalidPinBlock``, ``InvalidInput``); a key error
    refuses the whole batch. Format 0 under a TDES key against PINs stored in
    format 0 under a TDES PSK is vectorised: one ECB decipherment of each run,
    one check of each, and the PIN fields compared in constant time.
    """

    blocks: bytes
    key: KeyCryptogram
    format: PinBlockFormat
    pans: Sequence[str | None]
    psk: KeyCryptogram
    accounts: Sequence[str]
    stored: Sequence[StoredPin]

    def run(self, b: CommandBackend) -> list[bool | HsmsvcError]:
        b._capabilities.require(Command.VERIFY_PIN_STORED)
        blocks, fmt, pans, accounts, stored = self.blocks, self.format, self.pans, self.accounts, self.stored
        size, n = fmt.block_size, len(pans)
        if n > MAX_BATCH_PINS:
            raise InvalidInput("pans", f"at most {MAX_BATCH_PINS} per call")
        if not isinstance(blocks, bytes) or len(blocks) != size * n or not len(accounts) == len(stored) == n:
            raise InvalidInput("pin_blocks", f"one {size}-byte block per PAN, account and stored PIN")
        with b._guard():
            run = self._iso0_run(b) if n else None
            if run is not None:
                return run
            out: list[bool | HsmsvcError] = []
            for i in range(n):
                try:
                    VerifyPinStored(pin=PinBlock(blocks[i * size:(i + 1) * size], fmt, pans[i]), key=self.key,
                                    psk=self.psk, account=accounts[i], stored=stored[i]).run(b)
                except VerificationFailed:
                    out.append(False)
                except (InvalidPinBlock, InvalidInput) as e:
                    out.append(e)
                else:
                    out.append(True)
            return out

    def _iso0_run(self, b: CommandBackend) -> list[bool | HsmsvcError] | None:
        """The vectorised case, or ``None`` where the run does not qualify (another format or
        algorithm, a digest PSK, a malformed item): :meth:`run` then goes item by item."""
        key, pans, stored, accounts = self.key, self.pans, self.stored, self.accounts
        if self.format is not PinBlockFormat.ISO_0 or not isinstance(key, KeyCryptogram) or None in pans:
            return None
        k = b._use(key, Operation.PIN_DECRYPT)
        p = _use_psk(b, self.psk)
        if not (k.algorithm.is_tdes and p.spec.usage is KeyUsage.PIN_ENCRYPTION
                and _storage_format(p) is PinBlockFormat.ISO_0):
            return None
        if set(map(type, stored)) != {StoredPin} or {x.method for x in stored} != {StoredPinMethod.ENCRYPTED}:
            return None
        values = [x.value for x in stored]
        if not all(_shaped(values, accounts, 8, 13)):
            return None
        try:
            fields, good = pinblock.iso0_pin_fields(k.decrypt(self.blocks), pans)  # type: ignore[arg-type]
        except (InvalidInput, TypeError):
            return None  # a malformed PAN: the item-by-item path names it
        kept, kept_good = pinblock.iso0_pin_fields(p.decrypt(b"".join(values)), accounts)
        if all(good) and all(kept_good) and compare.bytes_eq(fields, kept):
            return [True] * len(values)
        # A stored block that does not decode is a mismatch, as for one PIN: no second error.
        return [
            (kept_good[i] and compare.bytes_eq(fields[8 * i:8 * i + 8], kept[8 * i:8 * i + 8])) if good[i]
            else InvalidPinBlock()
            for i in range(len(values))
        ]


@dataclass(frozen=True, kw_only=True, repr=False)
class ReencryptStoredPin(HsmCommand[StoredPin]):
    """One enciphered stored PIN moved from ``old_psk`` to ``new_psk`` (a digest cannot move)."""

    stored: StoredPin
    old_psk: KeyCryptogram
    new_psk: KeyCryptogram
    account: str

    def run(self, b: CommandBackend) -> StoredPin:
        b._capabilities.require(Command.REENCRYPT_STORED_PIN)
        _validate.digits(self.account, "account", 12, 19)
        with b._guard():
            old = _use_psk(b, self.old_psk)
            new = _use_psk(b, self.new_psk)
            _check_stored(old, self.stored)
            if self.stored.method is StoredPinMethod.DIGEST:
                raise KeyUsageViolation("stored_pin", "a keyed digest is one-way and cannot move to a new key")
            pin = pinblock.decipher(_storage_format(old), old, self.stored.value, self.account)
            return _store(new, pin, self.account)


def _pin_move(
    b: CommandBackend, *, old_psk: KeyCryptogram, new_psk: KeyCryptogram, values: Sequence[object],
    accounts: Sequence[object], old_lmk: bool,
) -> tuple[LoadedKey, LoadedKey, list[bool]]:
    if old_lmk:
        b._capabilities.require(Command.LMK_TRANSLATE)
    old = _use_psk(b, old_psk, old_lmk)
    new = _use_psk(b, new_psk)
    if old.spec.usage is not KeyUsage.PIN_ENCRYPTION:
        raise KeyUsageViolation("old_psk", "a keyed digest is one-way; only enciphered PINs move")
    formats = {_storage_format(old)}
    if new.spec.usage is KeyUsage.PIN_ENCRYPTION:
        formats.add(_storage_format(new))
    # Format 0 binds a PAN (13 to 19 digits); format 4 and digests take any account of 12 or more.
    return old, new, _shaped(values, accounts, old.algorithm.block_size,
                             13 if PinBlockFormat.ISO_0 in formats else 12)


def _reencrypt_iso0(
    old: LoadedKey, new: LoadedKey, values: Sequence[bytes], accounts: Sequence[str], shaped: list[bool]
) -> list[bytes | None]:
    if all(shaped):
        blocks = old.decrypt(b"".join(values))
        good = pinblock.check_iso0_blocks(blocks, accounts)
    else:
        filler = bytes(8)
        blocks = old.decrypt(b"".join([v if ok else filler for v, ok in zip(values, shaped)]))
        pans = [a if ok else "0000000000000" for a, ok in zip(accounts, shaped)]
        good = [ok and g for ok, g in zip(shaped, pinblock.check_iso0_blocks(blocks, pans))]
    moved: list[bytes | None] = list(struct.unpack("8s" * len(values), new.encrypt(blocks)))
    if not all(good):
        moved = [m if g else None for m, g in zip(moved, good)]
    return moved


@dataclass(frozen=True, kw_only=True, repr=False)
class ReencryptStoredPins(HsmCommand[list[bytes | None]]):
    """Stored PINs (enciphered, each with its account) moved from one PSK to another, as a batch.

    ``new_psk`` may be a digest PSK: the PINs then become keyed one-way
    digests (bank design 004 clause 6.2.4). ``old_lmk`` takes ``old_psk``
    as a cryptogram under the LMK being retired (payShield BG's half of an
    LMK change). ``None`` where a row is not a well-formed stored PIN under
    ``old_psk`` for its account: one answer for every fault, as for a
    single PIN. Two TDES PSKs (format 0 storage) take the vectorised path:
    one ECB decipherment of the whole run, one check, one encipherment,
    since the plain block does not change when the account does not.
    """

    old_psk: KeyCryptogram
    new_psk: KeyCryptogram
    rows: Sequence[tuple[bytes, str]]
    old_lmk: bool = False

    def run(self, b: CommandBackend) -> list[bytes | None]:
        b._capabilities.require(Command.REENCRYPT_STORED_PIN)
        values, accounts = columns(self.rows, 2)
        with b._guard():
            old, new, shaped = _pin_move(b, old_psk=self.old_psk, new_psk=self.new_psk, values=values,
                                         accounts=accounts, old_lmk=self.old_lmk)
            fmt_old = _storage_format(old)
            if new.spec.usage is KeyUsage.PIN_ENCRYPTION and fmt_old is _storage_format(new) is PinBlockFormat.ISO_0:
                return _reencrypt_iso0(old, new, values, accounts, shaped)
            out: list[bytes | None] = []
            for value, account, ok in zip(values, accounts, shaped):
                pin = _stored_pin(old, value, account) if ok else None
                out.append(None if pin is None else _store(new, pin, account).value)
            return out


@dataclass(frozen=True, kw_only=True, repr=False)
class CompareStoredPins(HsmCommand[list[bool]]):
    """Per (value under ``old_psk``, value under ``new_psk``, account): whether both hold one PIN.

    A batch job's sample check after :class:`ReencryptStoredPins`; the
    PINs themselves never leave the backend.
    """

    old_psk: KeyCryptogram
    new_psk: KeyCryptogram
    rows: Sequence[tuple[bytes, bytes, str]]
    old_lmk: bool = False

    def run(self, b: CommandBackend) -> list[bool]:
        b._capabilities.require(Command.REENCRYPT_STORED_PIN)
        values, kept_values, accounts = columns(self.rows, 3)
        with b._guard():
            old, new, shaped = _pin_move(b, old_psk=self.old_psk, new_psk=self.new_psk, values=values,
                                         accounts=accounts, old_lmk=self.old_lmk)
            out = []
            for value, kept, account, ok in zip(values, kept_values, accounts, shaped):
                pin = _stored_pin(old, value, account) if ok else None
                out.append(pin is not None and _holds(new, kept, account, pin))
            return out
