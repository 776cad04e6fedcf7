"""A host-command client of the tests' own: frames built and read here, not by hsmsvc's parser.

Nothing here imports hsmsvc (house rule 1): a reply is checked against what the payShield
manual says a frame is, and its fields against pyca/cryptography in the tests.
"""

from __future__ import annotations

import socket
import ssl
import struct
from dataclasses import dataclass


@dataclass(frozen=True)
class Reply:
    header: bytes
    code: bytes
    """The response code, e.g. ``CB``."""
    error: bytes
    """The two-digit error code, e.g. ``00``."""
    fields: bytes
    trailer: bytes | None = None


class HostClient:
    """One TCP (or TLS) connection to the host-command port."""

    def __init__(self, port: int, *, tls: ssl.SSLContext | None = None, header_length: int = 4,
                 counts_header: bool = True, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
        raw = socket.create_connection((host, port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = tls.wrap_socket(raw, server_hostname="localhost") if tls is not None else raw
        self.header_length = header_length
        self.counts_header = counts_header
        self._buf = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> HostClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def frame(self, body: bytes, header: bytes = b"0001") -> bytes:
        """``body`` (command code and fields) framed: length, header, body."""
        assert len(header) == self.header_length
        n = len(header) + len(body) if self.counts_header else len(body)
        return struct.pack(">H", n) + header + body

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _exactly(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the server")
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def read(self) -> Reply:
        (n,) = struct.unpack(">H", self._exactly(2))
        if self.counts_header:
            body = self._exactly(n)
            header, rest = body[:self.header_length], body[self.header_length:]
        else:
            header = self._exactly(self.header_length)
            rest = self._exactly(n)
        trailer = None
        if b"\x19" in rest:
            rest, trailer = rest.split(b"\x19", 1)
        return Reply(header, rest[:2], rest[2:4], rest[4:], trailer)

    def call(self, body: bytes, header: bytes = b"0001") -> Reply:
        self.send(self.frame(body, header))
        reply = self.read()
        assert reply.header == header, "a reply carries its request's header"
        return reply
