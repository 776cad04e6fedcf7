"""The messages of a key change between sites (bank design 004 clause 7.1) and their encodings.

Each message is MACed over a canonical, length-prefixed encoding of its fields
(``signed_bytes``), not over its protobuf bytes; the same encoding, with the
MAC, is how a site keeps a message in its sync row to answer a retry
identically.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from hsmsvc.types import Algorithm, KeyType, KeyUsage, ModeOfUse

__all__ = [
    "Acknowledgement",
    "Confirmation",
    "KeyChangeNotice",
    "NoticeKey",
    "decode_confirmation",
    "decode_notice",
    "digest",
    "encode",
    "parse_confirmation",
    "parse_notice",
]


@dataclass(frozen=True)
class NoticeKey:
    key_id: str
    version: int
    key_type: KeyType
    algorithm: Algorithm
    usage: KeyUsage
    mode_of_use: ModeOfUse
    wrapped: bytes
    kcv: bytes


@dataclass(frozen=True)
class KeyChangeNotice:
    zone: str
    sequence: int
    issued_at: datetime
    activate_at: datetime
    grace: timedelta
    keys: tuple[NoticeKey, ...]
    mac: bytes = b""

    def signed_bytes(self) -> bytes:
        """The canonical, length-prefixed encoding the MAC covers (not the protobuf bytes)."""
        out = [b"hsmsvc-kc-notice/1", _str(self.zone), struct.pack(">QqqQI", self.sequence, _us(self.issued_at),
               _us(self.activate_at), int(self.grace.total_seconds()), len(self.keys))]
        for k in self.keys:
            out += [_str(k.key_id), struct.pack(">I", k.version), _str(k.key_type.value), _str(k.algorithm.value),
                    _str(k.usage.value), _str(k.mode_of_use.value), _bytes(k.wrapped), _bytes(k.kcv)]
        return b"".join(out)


@dataclass(frozen=True)
class Confirmation:
    zone: str
    sequence: int
    kcvs: tuple[bytes, ...]
    mac: bytes = b""

    def signed_bytes(self) -> bytes:
        return b"".join([b"hsmsvc-kc-confirm/1", _str(self.zone), struct.pack(">QI", self.sequence, len(self.kcvs)),
                         *(_bytes(k) for k in self.kcvs)])


@dataclass(frozen=True)
class Acknowledgement:
    """The core's answer to a confirmation: it has the confirmation on record, so it makes under the
    new versions and no longer under the previous ones, and the branch may end their grace."""

    zone: str
    sequence: int
    mac: bytes = b""

    def signed_bytes(self) -> bytes:
        return b"".join([b"hsmsvc-kc-ack/1", _str(self.zone), struct.pack(">Q", self.sequence)])


def _str(s: str) -> bytes:
    return _bytes(s.encode())


def _bytes(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def _us(t: datetime) -> int:
    return int(t.timestamp() * 1_000_000)


def encode(obj: KeyChangeNotice | Confirmation) -> str:
    """How a notice or confirmation is kept in the sync row, to answer a retry identically:
    its signed bytes and its MAC, which are the whole message."""
    return base64.b64encode(_bytes(obj.signed_bytes()) + obj.mac).decode()


def digest(obj: KeyChangeNotice | Confirmation) -> str:
    return hashlib.sha256(obj.signed_bytes()).hexdigest()


# -- keeping messages in the sync row ------------------------------------------------------


def decode_notice(detail: str) -> KeyChangeNotice:
    signed, mac = _unframe(detail)
    return parse_notice(signed, mac)


def decode_confirmation(detail: str) -> Confirmation:
    signed, mac = _unframe(detail)
    return parse_confirmation(signed, mac)


def _unframe(detail: str) -> tuple[bytes, bytes]:
    raw = base64.b64decode(detail)
    (n,) = struct.unpack(">I", raw[:4])
    return raw[4 : 4 + n], raw[4 + n :]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("short")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def bytes_(self) -> bytes:
        (n,) = struct.unpack(">I", self.take(4))
        return self.take(n)

    def str_(self) -> str:
        return self.bytes_().decode()


def parse_notice(signed: bytes, mac: bytes) -> KeyChangeNotice:
    """Inverse of :meth:`KeyChangeNotice.signed_bytes` (for the sync row only)."""
    r = _Reader(signed)
    if r.take(18) != b"hsmsvc-kc-notice/1":
        raise ValueError("tag")
    zone = r.str_()
    seq, issued, activate, grace, n = struct.unpack(">QqqQI", r.take(36))
    keys = []
    for _ in range(n):
        key_id = r.str_()
        (version,) = struct.unpack(">I", r.take(4))
        keys.append(NoticeKey(key_id, version, KeyType(r.str_()), Algorithm(r.str_()), KeyUsage(r.str_()),
                              ModeOfUse(r.str_()), r.bytes_(), r.bytes_()))
    return KeyChangeNotice(zone, seq, _dt(issued), _dt(activate), timedelta(seconds=grace), tuple(keys), mac)


def parse_confirmation(signed: bytes, mac: bytes) -> Confirmation:
    r = _Reader(signed)
    if r.take(19) != b"hsmsvc-kc-confirm/1":
        raise ValueError("tag")
    zone = r.str_()
    seq, n = struct.unpack(">QI", r.take(12))
    return Confirmation(zone, seq, tuple(r.bytes_() for _ in range(n)), mac)


def _dt(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, timezone.utc)
