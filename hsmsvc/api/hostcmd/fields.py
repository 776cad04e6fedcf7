"""Reading a command's fields: fixed lengths, hex, digits, delimiters and key fields.

Each read is recorded by name and length (never value) for discovery mode, and a field that is
short, malformed or not allowed raises :class:`~hsmsvc.api.hostcmd.codes.HostError` with
payShield's code for it.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from typing import Final

from hsmsvc.api.hostcmd import codes
from hsmsvc.api.hostcmd.codes import HostError
from hsmsvc.api.hostcmd.frames import END, MAX_TRAILER
from hsmsvc.hsm import claims
from hsmsvc.hsm.model import LegacyForm
from hsmsvc.keys.model import check_alias
from hsmsvc.errors import InvalidInput

__all__ = ["Fields", "KeyField", "Wrapped"]

_HEX: Final = frozenset(b"0123456789ABCDEFabcdef")


@dataclass(frozen=True)
class KeyField:
    """A stored key as a command names it: its cryptogram (``S``) or its label (``L``)."""

    blob: bytes | None = None
    alias: str | None = None


@dataclass(frozen=True)
class Wrapped:
    """A key under a ZMK or TMK as a command carries it: a TR-31 block (``R``) or a legacy ECB form."""

    data: bytes
    form: LegacyForm
    """``NONE`` for a TR-31 block; else the form its scheme letter names."""
    scheme: str


# Key scheme letters for a key under a ZMK or TMK (payShield: U/T variant, X/Y X9.17).
_LEGACY: Final = {b"U": (LegacyForm.PAYSHIELD_VARIANT, 32), b"T": (LegacyForm.PAYSHIELD_VARIANT, 48),
                  b"X": (LegacyForm.X917_ECB, 32), b"Y": (LegacyForm.X917_ECB, 48)}


class Fields:
    """A cursor over one command's payload."""

    __slots__ = ("data", "pos", "seen", "trailer")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.seen: list[tuple[str, int]] = []
        self.trailer: bytes | None = None
        """What followed X'19 after the last field, once :meth:`end` has read it."""

    def take(self, n: int, name: str, code: str = codes.INVALID_INPUT) -> bytes:
        out = self.data[self.pos:self.pos + n]
        if len(out) != n:
            raise HostError(code, name)
        self.pos += n
        self.seen.append((name, n))
        return out

    def digits(self, n: int, name: str, code: str = codes.INVALID_INPUT) -> str:
        raw = self.take(n, name, code)
        if not raw.isdigit() or not raw.isascii():
            raise HostError(code, name)
        return raw.decode("ascii")

    def number(self, n: int, name: str, code: str = codes.INVALID_INPUT) -> int:
        return int(self.digits(n, name, code))

    def hex(self, n: int, name: str, code: str = codes.INVALID_INPUT) -> bytes:
        """``n`` hex characters, as ``n // 2`` bytes."""
        raw = self.take(n, name, code)
        if n % 2 or not _HEX.issuperset(raw):
            raise HostError(code, name)
        return binascii.unhexlify(raw)

    def peek(self, n: int = 1) -> bytes:
        return self.data[self.pos:self.pos + n]

    def skip(self, marker: bytes) -> bool:
        """Consume ``marker`` if it is next."""
        if self.data.startswith(marker, self.pos):
            self.pos += len(marker)
            return True
        return False

    def until(self, delimiter: bytes, name: str, limit: int) -> bytes:
        """A delimited field of at most ``limit`` bytes, and its delimiter."""
        end = self.data.find(delimiter, self.pos, self.pos + limit + 1)
        if end < 0:
            raise HostError(codes.INVALID_INPUT, name)
        out = self.data[self.pos:end]
        self.pos = end + len(delimiter)
        self.seen.append((name, len(out)))
        return out

    def rest(self) -> int:
        return len(self.data) - self.pos

    def end(self) -> None:
        """Nothing may follow the last field but an LMK identifier (``%`` and 2N: hsmsvc has one
        LMK, so any is taken) and the end-message delimiter X'19 with the trailer."""
        if self.data.startswith(b"%", self.pos) and self.data[self.pos + 1:self.pos + 3].isdigit():
            self.pos += 3
        if self.data.startswith(END, self.pos) and len(self.data) - self.pos - 1 <= MAX_TRAILER:
            self.trailer = self.data[self.pos + 1:]
            self.pos = len(self.data)
        if self.pos != len(self.data):
            self.seen.append(("(trailing)", len(self.data) - self.pos))
            raise HostError(codes.INVALID_INPUT, "message length")

    # -- keys ---------------------------------------------------------------------------

    def stored_key(self, name: str, code: str = codes.SOURCE_KEY) -> KeyField:
        """A key under the LMK: ``S`` and hsmsvc's cryptogram, or ``L``, two digits and a label.

        A variant-LMK cryptogram (16H, ``U``/``T``/``X``/``Y``/``Z``) is another HSM's: it is refused
        as a key scheme error, and moves here by import under a ZMK (``docs/host-commands.md``).
        """
        tag = self.peek()
        if not tag:
            raise HostError(codes.INVALID_INPUT, name)
        if tag == b"S":
            self.pos += 1
            if self.peek() == b"P":
                head = self.data[self.pos:self.pos + 5]
                n = int(head[1:]) if head[1:].isdigit() and len(head) == 5 else -1
                size = 5 + n
            else:
                head = self.data[self.pos:self.pos + 5]
                size = int(head[1:]) if head[1:].isdigit() and len(head) == 5 else -1
            if size < 5:
                raise HostError(code, name)
            raw = self.take(size, name, code)
            try:
                return KeyField(blob=claims.from_text(raw))
            except ValueError:
                raise HostError(code, name) from None
        if tag == b"L":
            self.pos += 1
            n = self.number(2, f"{name} label length", code)
            try:
                return KeyField(alias=check_alias(self.take(n, name, code).decode("ascii")))
            except (InvalidInput, UnicodeDecodeError):
                raise HostError(code, name) from None
        raise HostError(codes.KEY_SCHEME, name)

    def wrapped_key(self, name: str) -> Wrapped:
        """A key under a ZMK or TMK: ``R`` and a TR-31 block, or ``U``/``T``/``X``/``Y`` and its hex."""
        tag = self.peek()
        if tag == b"R":
            self.pos += 1
            head = self.data[self.pos:self.pos + 5]
            if len(head) != 5 or not head[1:].isdigit():
                raise HostError(codes.INVALID_INPUT, name)
            raw = self.take(int(head[1:]), name)
            if not raw.isascii():
                raise HostError(codes.INVALID_INPUT, name)
            return Wrapped(raw, LegacyForm.NONE, "R")
        if tag in _LEGACY:
            form, n = _LEGACY[tag]
            self.pos += 1
            return Wrapped(self.hex(n, name), form, tag.decode())
        raise HostError(codes.KEY_SCHEME, name)
