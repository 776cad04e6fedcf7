"""Host-command message framing: a two-byte length, the application's header, the command code.

A request is ``length(2, big-endian) || header || command(2) || payload [|| 0x19 || trailer]``.
Firmware differs on what the length counts: the header, command and payload (payShield's own
rule), or, on older hosts, the command and payload only, the header following the length
uncounted. The reply echoes the header and trailer, and its code is the request's with the
second character advanced by one (``CA`` → ``CB``), followed by a two-digit error code.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final

__all__ = ["END", "MAX_TRAILER", "Frame", "Framing", "reply_code"]

END: Final = b"\x19"
"""The end-message delimiter: what follows it is the application's trailer, echoed back."""
MAX_TRAILER: Final = 32


@dataclass(frozen=True)
class Framing:
    """What this deployment's applications send (``[hostcommands]`` in the server config)."""

    header_length: int = 4
    length_counts_header: bool = True
    """True: the length counts header, command and payload. False: the header follows the length uncounted."""

    def __post_init__(self) -> None:
        if not 0 <= self.header_length <= 255:
            raise ValueError("header_length: 0 to 255")

    async def read(self, reader: asyncio.StreamReader) -> Frame | None:
        """The next frame, or None at a clean end of stream; ``IncompleteReadError`` if cut mid-frame."""
        prefix = await reader.read(2)
        if not prefix:
            return None
        if len(prefix) == 1:
            prefix += await reader.readexactly(1)
        n = int.from_bytes(prefix, "big")
        if self.length_counts_header:
            body = await reader.readexactly(n)
            return Frame.split(body, self.header_length)
        header = await reader.readexactly(self.header_length)
        body = await reader.readexactly(n)
        return Frame.split(header + body, self.header_length)

    def encode(self, header: bytes, body: bytes) -> bytes:
        """One reply: ``body`` is the response code, the error code and the fields (and trailer)."""
        n = len(header) + len(body) if self.length_counts_header else len(body)
        if n > 0xFFFF:
            raise ValueError("reply too long for a two-byte length")
        return n.to_bytes(2, "big") + header + body


@dataclass(frozen=True)
class Frame:
    """One request as received: the header, the command code and the rest.

    The rest holds the fields and, after the last of them, an optional X'19 and trailer: only
    the command's own reading knows where its fields end (a binary field may hold X'19), so
    :meth:`hsmsvc.api.hostcmd.fields.Fields.end` finds the trailer.
    """

    header: bytes
    command: bytes
    payload: bytes

    @classmethod
    def split(cls, body: bytes, header_length: int) -> Frame:
        header, rest = body[:header_length], body[header_length:]
        return cls(header, rest[:2], rest[2:])

    def trailer_guess(self) -> bytes | None:
        """The trailer of a request whose fields were not all read (a refusal): what follows the
        last X'19 if that is within a trailer's 32 characters of the end."""
        end = self.payload.rfind(END)
        if end < 0 or len(self.payload) - end - 1 > MAX_TRAILER:
            return None
        return self.payload[end + 1:]


def reply_code(command: bytes) -> bytes:
    """The response code for ``command``: its second character advanced by one (``CA`` → ``CB``).

    A code that is not two letters or digits gets ``ZZ``: there is nothing to advance.
    """
    if len(command) != 2 or not command.isalnum() or not command.isascii() or command[1:] in (b"Z", b"z", b"9"):
        return b"ZZ"
    return command[:1] + bytes([command[1] + 1])
