"""PIN commands: translation (ISO 9564-1 clause 9.3) and verification (IBM 3624 offsets, Visa PVV).

Every PIN block is deciphered and checked inside the command; a block that
fails any check after decryption is the one generic ``InvalidPinBlock``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

from hsmsvc.crypto import ibm3624, pinblock
from hsmsvc.crypto import pvv as _pvv
from hsmsvc.crypto._cipher import xor
from hsmsvc.errors import HsmsvcError, InvalidInput, InvalidPinBlock, KeyUsageViolation
from hsmsvc.hsm.commands.base import DEBUG, HsmCommand, KeptKeys, LoadedKey, debugging, observe
from hsmsvc.hsm.model import Command, KeyCryptogram, PinBatch, PinBlock, PinKey
from hsmsvc.hsm.policy import Operation
from hsmsvc.types import PinBlockFormat

if TYPE_CHECKING:
    from hsmsvc.hsm.commands.core import CommandBackend

__all__ = [
    "GeneratePinOffset",
    "GeneratePvv",
    "TranslatePin",
    "TranslatePins",
    "Translator",
    "VerifyPinIbm3624",
    "VerifyPinPvv",
]


def _iso0_blocks(s: LoadedKey, d: LoadedKey, blocks: bytes,
                 pans: Sequence[str]) -> tuple[bytes, list[bool]] | None:
    """Format 0 blocks deciphered under ``s``, checked, re-enciphered under ``d``
    (:func:`_run`); ``None`` for a malformed PAN anywhere."""
    plain = s.decrypt(blocks)
    try:
        good = pinblock.check_iso0_blocks(plain, pans)
    except (InvalidInput, TypeError):
        return None
    return d.encrypt(plain), good


def _iso4_blocks(s: LoadedKey, d: LoadedKey, blocks: bytes,
                 pans: Sequence[str]) -> tuple[bytes, list[bool]] | None:
    """Format 4 blocks deciphered under ``s``, checked, enciphered again under ``d`` with a fresh
    random half (ISO 9564-1 clause 9.3.6.4, P = D(K, D(K, C) XOR A), for a run); ``None`` for a
    malformed PAN anywhere."""
    try:
        a = pinblock.iso4_pan_fields(pans)
    except (InvalidInput, TypeError):
        return None
    plain = s.decrypt(xor(s.decrypt(blocks), a))
    good = pinblock.check_iso4_pin_fields(plain)
    return d.encrypt(xor(d.encrypt(pinblock.renew_iso4_pin_fields(plain)), a)), good


_Run = Callable[[LoadedKey, LoadedKey, bytes, Sequence[str]], "tuple[bytes, list[bool]] | None"]


def _run_form(src_format: PinBlockFormat, dst_format: PinBlockFormat, src: object, dst: object) -> _Run | None:
    """The whole-run translation for this pair, if it has one: format 0 between TDES keys, or
    format 4 between 128-bit block cipher keys, the PAN unchanged."""
    if src_format is not dst_format or type(src) is not KeyCryptogram or type(dst) is not KeyCryptogram:
        return None
    a, b = src.spec.algorithm, dst.spec.algorithm
    if src_format is PinBlockFormat.ISO_0 and a.is_tdes and b.is_tdes:
        return _iso0_blocks
    if src_format is PinBlockFormat.ISO_4 and a.block_size == 16 and b.block_size == 16:
        return _iso4_blocks
    return None


def _run(
    b: CommandBackend, *, form: _Run, fmt: PinBlockFormat, blocks: bytes, src: KeyCryptogram, dst: KeyCryptogram,
    pans: Sequence[str],
) -> tuple[bytes, list[bool]] | None:
    """A run of blocks of one format, one per PAN, translated whole (:func:`_run_form`).

    With the PAN unchanged the PIN field is unchanged, so the run is a few
    ECB passes and one check of every field. Returns the enciphered run and
    whether each block passed; a malformed PAN anywhere gives ``None``, and
    the caller goes block by block to name it.
    """
    b._check_translation(fmt, fmt)
    with b._guard():
        return form(b._use(src, Operation.PIN_DECRYPT), b._use(dst, Operation.PIN_ENCRYPT), blocks, pans)


def _translate_one(b: CommandBackend, pin: PinBlock, src: PinKey, dst: KeyCryptogram,
                   dst_format: PinBlockFormat) -> bytes:
    b._check_translation(pin.format, dst_format)
    with b._guard():
        clear = b._pin(pin, src)
        d = b._use(dst, Operation.PIN_ENCRYPT)
        return pinblock.encipher(dst_format, d, clear, pin.pan)


@dataclass(frozen=True, kw_only=True, repr=False)
class TranslatePin(HsmCommand[bytes]):
    """Decipher under ``src``, check, re-encipher under ``dst`` (ISO 9564-1 clause 9.3)."""

    pin: PinBlock
    src: PinKey
    dst: KeyCryptogram
    dst_format: PinBlockFormat

    def run(self, b: CommandBackend) -> bytes:
        pin, src, dst = self.pin, self.src, self.dst
        src_format, block, pan = pin.format, pin.block, pin.pan
        form = _run_form(src_format, self.dst_format, src, dst)
        if form is not None and type(block) is bytes and len(block) == src_format.block_size and type(pan) is str:
            run = _run(b, form=form, fmt=src_format, blocks=block, src=src, dst=dst, pans=(pan,))  # type: ignore[arg-type]
            if run is not None:
                if not run[1][0]:
                    raise InvalidPinBlock()
                return run[0]
        return _translate_one(b, pin, src, dst, self.dst_format)


class Translator:
    """``CommandBackend.pin_translator``: a route's two loaded keys, kept while the backend keeps them.

    The keys' bindings are checked when they are loaded (``CommandBackend._use``),
    which happens again after the backend drops any loaded key (a PKCS#11 object
    may be destroyed and its handle reused). A pair with a whole-run form
    (:func:`_run_form`) runs here; anything else, or a block or PAN that is not
    plainly well formed, takes :class:`TranslatePin`, which names the fault.
    Each call is observed as a ``TranslatePin`` when the backend observes commands.
    """

    __slots__ = ("_backend", "_dst", "_dst_format", "_form", "_keys", "_size", "_src", "_src_format")

    def __init__(self, backend: CommandBackend, src: PinKey, src_format: PinBlockFormat, dst: KeyCryptogram,
                 dst_format: PinBlockFormat) -> None:
        backend._check_translation(src_format, dst_format)
        self._backend = backend
        self._src, self._src_format, self._dst, self._dst_format = src, src_format, dst, dst_format
        self._form = _run_form(src_format, dst_format, src, dst)
        self._size = src_format.block_size
        # Only a pair with a whole-run form uses them, and only such a pair is two cryptograms.
        self._keys = KeptKeys((src, Operation.PIN_DECRYPT), (dst, Operation.PIN_ENCRYPT))  # type: ignore[arg-type]

    def __call__(self, block: bytes, pan: str | None) -> bytes:
        b = self._backend
        if b.timing is not None or debugging(DEBUG):
            return observe(self._command(block, pan), lambda: self._translate(block, pan), b.timing)
        return self._translate(block, pan)

    def _command(self, block: bytes, pan: str | None) -> TranslatePin:
        return TranslatePin(pin=PinBlock(block, self._src_format, pan), src=self._src, dst=self._dst,
                            dst_format=self._dst_format)

    def _translate(self, block: bytes, pan: str | None) -> bytes:
        b = self._backend
        form = self._form
        if form is not None and type(block) is bytes and len(block) == self._size and type(pan) is str:
            with b._guard_cm:
                keys = self._keys.get(b)
                run = form(keys[0], keys[1], block, (pan,))
            if run is not None:
                if not run[1][0]:
                    raise InvalidPinBlock()
                return run[0]
        return self._command(block, pan).run(b)


@dataclass(frozen=True, kw_only=True, repr=False)
class TranslatePins(HsmCommand[PinBatch]):
    """:class:`TranslatePin` for blocks packed back to back, one per PAN, under one key pair.

    Format 0 to format 0 between TDES keys, and format 4 to format 4
    between AES (or SM4) keys, take the whole run at once (:func:`_run`).
    Every other case, or a run with a malformed PAN, goes block by block.
    A block that fails any check is ``InvalidPinBlock``, as for one block.
    """

    blocks: bytes
    src: KeyCryptogram
    src_format: PinBlockFormat
    dst: KeyCryptogram
    dst_format: PinBlockFormat
    pans: Sequence[str | None]

    def run(self, b: CommandBackend) -> PinBatch:
        blocks, src, src_format, dst, dst_format, pans = (
            self.blocks, self.src, self.src_format, self.dst, self.dst_format, self.pans)
        size, n = src_format.block_size, len(pans)
        if not isinstance(blocks, bytes) or len(blocks) != size * n:
            raise InvalidInput("pin_blocks", f"one {size}-byte block per PAN")
        out_size = dst_format.block_size
        form = _run_form(src_format, dst_format, src, dst) if n and None not in pans else None
        if form is not None:
            run = _run(b, form=form, fmt=src_format, blocks=blocks, src=src, dst=dst, pans=pans)  # type: ignore[arg-type]
            if run is not None:
                out, good = run
                if all(good):
                    return PinBatch(out)
                bad = [i for i, g in enumerate(good) if not g]
                packed = bytearray(out)
                for i in bad:
                    packed[i * out_size:(i + 1) * out_size] = bytes(out_size)
                return PinBatch(bytes(packed), tuple((i, InvalidPinBlock()) for i in bad))
        parts: list[bytes] = []
        errors: list[tuple[int, HsmsvcError]] = []
        for i, pan in enumerate(pans):
            try:
                parts.append(_translate_one(b, PinBlock(blocks[i * size:(i + 1) * size], src_format, pan), src,
                                            dst, dst_format))
            except (InvalidPinBlock, InvalidInput) as e:
                parts.append(bytes(out_size))
                errors.append((i, e))
        return PinBatch(b"".join(parts), tuple(errors))


def _table(pvk: LoadedKey) -> str:
    if not pvk.spec.decimalization_table:
        raise KeyUsageViolation("pvk", "has no decimalization table bound")
    return pvk.spec.decimalization_table


@dataclass(frozen=True, kw_only=True, repr=False)
class VerifyPinIbm3624(HsmCommand[None]):
    """IBM 3624 offset verification with the decimalization table bound to ``pvk``."""

    pin: PinBlock
    key: PinKey
    pvk: KeyCryptogram
    validation_data: str
    offset: str

    def run(self, b: CommandBackend) -> None:
        b._capabilities.require(Command.VERIFY_PIN_IBM3624)
        # The request's own fields, checked before the block is deciphered: a refusal after it
        # must depend on nothing but the PIN's match (one generic answer).
        ibm3624.check_request(validation_data=self.validation_data, offset=self.offset)
        with b._guard():
            pin = b._pin(self.pin, self.key)
            v = b._use(self.pvk, Operation.PIN_VERIFY_IBM3624)
            ibm3624.verify_offset(v, validation_data=self.validation_data, table=_table(v), pin=pin, offset=self.offset)


@dataclass(frozen=True, kw_only=True, repr=False)
class GeneratePinOffset(HsmCommand[str]):
    """IBM 3624 offset for a customer-selected PIN, as long as the PIN."""

    pin: PinBlock
    key: PinKey
    pvk: KeyCryptogram
    validation_data: str

    def run(self, b: CommandBackend) -> str:
        b._capabilities.require(Command.GENERATE_PIN_OFFSET)
        with b._guard():
            pin = b._pin(self.pin, self.key)
            v = b._use(self.pvk, Operation.PIN_GENERATE_IBM3624)
            return ibm3624.generate_offset(v, validation_data=self.validation_data, table=_table(v), pin=pin)


@dataclass(frozen=True, kw_only=True, repr=False)
class GeneratePvv(HsmCommand[str]):
    """Visa PIN verification value for a PIN (PVKI selects the PVK pair); ``pin.pan`` is required."""

    pin: PinBlock
    key: PinKey
    pvk: KeyCryptogram
    pvki: int

    def run(self, b: CommandBackend) -> str:
        b._capabilities.require(Command.GENERATE_PVV)
        with b._guard():
            pin = b._pin(self.pin, self.key)
            v = b._use(self.pvk, Operation.PIN_GENERATE_PVV)
            # A missing PAN is refused there as any malformed one is.
            return _pvv.generate_pvv(v, self.pin.pan, self.pvki, pin)  # type: ignore[arg-type]


@dataclass(frozen=True, kw_only=True, repr=False)
class VerifyPinPvv(HsmCommand[None]):
    """Visa PVV verification; ``pin.pan`` is required."""

    pin: PinBlock
    key: PinKey
    pvk: KeyCryptogram
    pvki: int
    pvv: str

    def run(self, b: CommandBackend) -> None:
        b._capabilities.require(Command.VERIFY_PIN_PVV)
        with b._guard():
            pin = b._pin(self.pin, self.key)
            v = b._use(self.pvk, Operation.PIN_VERIFY_PVV)
            # A missing PAN is refused there as any malformed one is.
            _pvv.verify_pvv(v, self.pin.pan, self.pvki, pin, self.pvv)  # type: ignore[arg-type]
