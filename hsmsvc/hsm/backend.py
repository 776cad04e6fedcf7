"""The backend interface: payment-HSM commands on key cryptograms.

Inputs and outputs are keys under the LMK (:class:`~hsmsvc.hsm.model.KeyCryptogram`),
keys under a ZMK or TMK, PIN blocks under keys, MACs and ciphertexts: never a
clear key or a clear PIN. Clear key material exists only below this interface,
inside a backend. Every backend raises only :mod:`hsmsvc.errors` exceptions.

The commands are values (:mod:`hsmsvc.hsm.commands`), each run by
:meth:`Backend.execute`; a new command adds no method here.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from hsmsvc.hsm.commands.base import HsmCommand, TimingHook
from hsmsvc.hsm.model import Capabilities, KeyCryptogram, PinKey, PinTranslator, PinVerifier
from hsmsvc.types import PinBlockFormat

__all__ = ["Backend"]

T = TypeVar("T")


class Backend(Protocol):
    """A payment-HSM command set. Implementations: soft, pkcs11 (``CommandBackend``), pool."""

    timing: TimingHook | None
    """Told of every command's class name, duration and error, if set."""

    @property
    def capabilities(self) -> Capabilities: ...

    def lmk_kcv(self) -> bytes:
        """The LMK's key check value, which every pool member must share."""
        ...

    def execute(self, command: HsmCommand[T]) -> T:
        """Run one command; the one place every command is logged (DEBUG) and timed."""
        ...

    def pin_translator(
        self, *, src: PinKey, src_format: PinBlockFormat, dst: KeyCryptogram, dst_format: PinBlockFormat,
    ) -> PinTranslator:
        """:class:`~hsmsvc.hsm.commands.pin.TranslatePin` prepared for one key pair and format pair,
        for a caller that translates along the same route call after call; each call gives what the
        command would, error for error, and is observed as one."""
        ...

    def pin_verifier(self, *, key: PinKey, fmt: PinBlockFormat, psk: KeyCryptogram) -> PinVerifier:
        """:class:`~hsmsvc.hsm.commands.storedpins.VerifyPinStored` prepared for one PIN key, format and
        PSK; each call gives what the command would, error for error, and is observed as one."""
        ...

    def close(self) -> None: ...
