"""The ceremony terminal: prompts, hidden entry of components, and zeroized buffers.

Everything is read unbuffered from standard input, one byte at a time, so a
person at a keyboard (echo off for secrets) and a test script feeding a pipe or
a pseudo-terminal see the same program. Secrets are read into ``bytearray``
buffers that :func:`zeroize` overwrites after use; Python may still have
copied a value (an ``int`` in an XOR, a ``bytes`` handed to OpenSSL), which
the caller cannot wipe: this is "where Python allows".
"""

from __future__ import annotations

import os
import sys
import termios
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from hsmsvc.errors import InvalidInput

__all__ = ["Console", "group", "parse_hex", "zeroize"]

_HEX = {c: i for i, c in enumerate(b"0123456789abcdef")} | {c: i + 10 for i, c in enumerate(b"ABCDEF")}


def zeroize(buf: bytearray) -> None:
    """Overwrite ``buf`` in place."""
    buf[:] = bytes(len(buf))


def parse_hex(text: bytearray, field: str) -> bytearray:
    """Hex digits (spaces and dashes allowed between groups) into a new buffer."""
    digits = bytearray()
    try:
        for c in text:
            if c in b" -\t":
                continue
            if c not in _HEX:
                raise InvalidInput(field, "hex digits")
            digits.append(_HEX[c])
        if len(digits) % 2:
            raise InvalidInput(field, "an even number of hex digits")
        return bytearray((digits[i] << 4) | digits[i + 1] for i in range(0, len(digits), 2))
    finally:
        zeroize(digits)


def group(data: bytes | bytearray, size: int = 4) -> str:
    """Hex in groups of ``size`` digits, as mailers print components."""
    h = data.hex().upper()
    return " ".join(h[i : i + size] for i in range(0, len(h), size))


class Console:
    """Prompts on ``out``; answers from file descriptor ``fd`` (standard input)."""

    def __init__(self, fd: int | None = None, out: TextIO | None = None) -> None:
        self.fd = sys.stdin.fileno() if fd is None else fd
        self.out = out or sys.stdout

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def _readline(self) -> bytearray:
        line = bytearray()
        while True:
            b = os.read(self.fd, 1)
            if not b:
                if not line:
                    raise InvalidInput("input", "ended before the ceremony finished")
                return line
            if b in (b"\n", b"\r"):
                return line
            line += b

    @contextmanager
    def _no_echo(self) -> Iterator[None]:
        if not os.isatty(self.fd):
            yield
            self.out.write("\n")  # a script's answer is not echoed either
            return
        old = termios.tcgetattr(self.fd)
        new = termios.tcgetattr(self.fd)
        new[3] &= ~termios.ECHO
        termios.tcsetattr(self.fd, termios.TCSAFLUSH, new)
        try:
            yield
        finally:
            termios.tcsetattr(self.fd, termios.TCSAFLUSH, old)
            self.out.write("\n")

    def ask(self, prompt: str) -> str:
        self.out.write(prompt)
        self.out.flush()
        line = self._readline()
        if not os.isatty(self.fd):
            self.out.write("\n")
        try:
            return line.decode("utf-8", "replace").strip()
        finally:
            zeroize(line)

    def secret(self, prompt: str) -> bytearray:
        """A line typed with echo off; the caller zeroizes it."""
        self.out.write(prompt)
        self.out.flush()
        with self._no_echo():
            return self._readline()

    def passphrase(self, prompt: str, confirm: bool = False) -> bytes:
        """A passphrase typed with echo off; ``confirm``: typed twice, and refused if they differ."""
        first = self.secret(prompt)
        try:
            if confirm:
                again = self.secret("again: ")
                try:
                    if again != first:
                        raise InvalidInput("passphrase", "the two entries differ")
                finally:
                    zeroize(again)
            return bytes(first)
        finally:
            zeroize(first)

    def confirm(self, prompt: str) -> bool:
        return self.ask(f"{prompt} [y/N] ").lower() in ("y", "yes")

    def _tty(self) -> bool:
        try:
            return os.isatty(self.out.fileno())
        except (AttributeError, OSError, ValueError):
            return False

    def clear(self) -> None:
        """Clear a terminal screen, then its scrollback, after a component was shown.

        In that order: a terminal that keeps what a screen clear removes (tmux's
        ``scroll-on-clear``, xterm's ``saveLines``) moves the screen into its history
        at ``ESC[2J``, and ``ESC[3J`` then clears that history too.
        """
        if self._tty():
            self.out.write("\x1b[H\x1b[2J\x1b[3J")
        else:
            self.out.write("\n" * 3)
        self.out.flush()
