"""LMK commands: backup components, key change storage, the LMK's own CMACs (audit, PAN tokens,
audit anchors) and dropping cached keys. Domains: :mod:`hsmsvc.hsm.domains`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from hsmsvc.crypto import compare, _validate
from hsmsvc.errors import InvalidInput, KeyUsageViolation, PermissionDenied
from hsmsvc.hsm.commands.base import MAX_BATCH_PINS, HsmCommand
from hsmsvc.hsm.domains import ANCHOR_DOMAIN, AUDIT_DOMAIN, CARD_DOMAIN, PAN_DOMAIN, STORE_ANCHOR_DOMAIN
from hsmsvc.hsm.model import Command, KeyCryptogram

if TYPE_CHECKING:
    from hsmsvc.hsm.commands.core import CommandBackend

__all__ = [
    "AuditMac",
    "CardHashes",
    "Forget",
    "LmkComponents",
    "PanHash",
    "PanHashes",
    "ReadAuditAnchor",
    "TranslateLmk",
    "WriteAuditAnchor",
]

_PAN_HASH_LENGTHS = frozenset(range(11, 20))  # 11: the digits a PVV uses


@dataclass(frozen=True, kw_only=True, repr=False)
class LmkComponents(HsmCommand[list[bytes]]):
    """The LMK as ``n`` fresh random components (a backup ceremony)."""

    pool_refusal = "back up the LMK from one member's own backend, not through the pool"
    n: int

    def run(self, b: CommandBackend) -> list[bytes]:
        b._capabilities.require(Command.LMK_BACKUP)
        if not isinstance(self.n, int) or not 2 <= self.n <= 9:
            raise InvalidInput("custodians", "2 to 9")
        with b._guard():
            return b._lmk_split(self.n)


@dataclass(frozen=True, kw_only=True, repr=False)
class TranslateLmk(HsmCommand[KeyCryptogram]):
    """``key`` moved from the old LMK (loaded for a migration) to the current one."""

    pool_refusal = "migrate the LMK with one backend holding both LMKs, not through the pool"
    key: KeyCryptogram

    def run(self, b: CommandBackend) -> KeyCryptogram:
        b._capabilities.require(Command.LMK_TRANSLATE)
        key = self.key
        if not isinstance(key, KeyCryptogram):
            raise InvalidInput("key", "a KeyCryptogram")
        with b._guard():
            out = b._translate_lmk(key)
        if out.spec != key.spec or not compare.bytes_eq(out.kcv, key.kcv):
            raise KeyUsageViolation("key", "changed in translation")
        return out


@dataclass(frozen=True, kw_only=True, repr=False)
class AuditMac(HsmCommand[bytes]):
    """CMAC under the LMK of a domain-separated audit message."""

    data: bytes

    def run(self, b: CommandBackend) -> bytes:
        b._capabilities.require(Command.AUDIT_MAC)
        with b._guard():
            return b._lmk_cmac(AUDIT_DOMAIN + bytes(self.data))


@dataclass(frozen=True, kw_only=True, repr=False)
class AuditMacs(HsmCommand[list[bytes]]):
    """:class:`AuditMac` of each item, under one hold of the backend (a group commit's rows)."""

    items: Sequence[bytes]

    def run(self, b: CommandBackend) -> list[bytes]:
        b._capabilities.require(Command.AUDIT_MAC)
        with b._guard():
            return [b._lmk_cmac(AUDIT_DOMAIN + bytes(x)) for x in self.items]


@dataclass(frozen=True, kw_only=True, repr=False)
class PanHash(HsmCommand[bytes]):
    """A keyed one-way token of a PAN (CMAC under the LMK), for counters keyed by card."""

    pan: str

    def run(self, b: CommandBackend) -> bytes:
        b._capabilities.require(Command.PAN_HASH)
        _validate.digits(self.pan, "pan", 11, 19)
        with b._guard():
            return b._lmk_cmac(PAN_DOMAIN + self.pan.encode("ascii"))


@dataclass(frozen=True, kw_only=True, repr=False)
class PanHashes(HsmCommand[list[bytes]]):
    """:class:`PanHash` of each PAN; ``InvalidInput`` if any is not 11 to 19 digits."""

    pans: Sequence[str]

    def run(self, b: CommandBackend) -> list[bytes]:
        b._capabilities.require(Command.PAN_HASH)
        pans = self.pans
        if not isinstance(pans, Sequence) or len(pans) > MAX_BATCH_PINS:
            raise InvalidInput("pans", f"at most {MAX_BATCH_PINS} per call")
        # The whole run checked at once, as PanHash checks one (bytes.isdigit: ASCII digits only).
        if not (set(map(type, pans)) <= {str} and set(map(len, pans)) <= _PAN_HASH_LENGTHS):
            raise InvalidInput("pan", "11 to 19 digits")
        joined = "".join(pans)
        if pans and not (joined.isascii() and joined.encode("ascii").isdigit()):
            raise InvalidInput("pan", "digits only")
        with b._guard():
            return [b._lmk_cmac(PAN_DOMAIN + p.encode("ascii")) for p in pans]


@dataclass(frozen=True, kw_only=True, repr=False)
class CardHashes(HsmCommand[list[bytes]]):
    """A keyed one-way token (CMAC under the LMK) of each thing a card value check binds, for
    counters keyed by what the cryptography binds; each at most 512 bytes."""

    values: Sequence[bytes]

    def run(self, b: CommandBackend) -> list[bytes]:
        b._capabilities.require(Command.PAN_HASH)
        values = self.values
        if not isinstance(values, Sequence) or len(values) > 2 * MAX_BATCH_PINS:
            raise InvalidInput("values", f"at most {2 * MAX_BATCH_PINS} per call")
        if not all(isinstance(v, bytes) and len(v) <= 512 for v in values):
            raise InvalidInput("values", "bytes, at most 512 each")
        with b._guard():
            return [b._lmk_cmac(CARD_DOMAIN + v) for v in values]


def _anchor_name(store: str) -> None:
    """A store id is 32 lowercase hex digits (it names a file or a token object), or "" (the legacy anchor)."""
    if store and not (len(store) == 32 and all(c in "0123456789abcdef" for c in store)):
        raise InvalidInput("store", "a store id of 32 lowercase hex digits")


def _anchor_message(store: str, seq: int, head: bytes) -> bytes:
    # The legacy anchor keeps its message, so an anchor written before store ids still verifies.
    if not store:
        return ANCHOR_DOMAIN + seq.to_bytes(8, "big") + head
    return STORE_ANCHOR_DOMAIN + bytes.fromhex(store) + seq.to_bytes(8, "big") + head


def _read_anchor(b: CommandBackend, store: str) -> tuple[int, bytes] | None:
    raw = b._anchor_load(store)
    if raw is None:
        return None
    try:
        seq_s, head_h, tag_h = raw.decode().split(":")
        seq, head, tag = int(seq_s), bytes.fromhex(head_h), bytes.fromhex(tag_h)
    except ValueError:
        raise PermissionDenied("audit_anchor", "malformed") from None
    with b._guard():
        want = b._lmk_cmac(_anchor_message(store, seq, head))
    if not compare.bytes_eq(want, tag):
        raise PermissionDenied("audit_anchor", "MAC does not verify under this LMK for this store")
    return seq, head


@dataclass(frozen=True, kw_only=True, repr=False)
class WriteAuditAnchor(HsmCommand[None]):
    """Keep the audit chain head of ``store`` outside the database, MACed under the LMK (never moves back).

    Each store has its own anchor (one LMK may serve several stores), and the
    MAC binds the store's id, so one store's anchor never stands for another's.
    The anchor's storage is read and written without the backend's lock (a
    file lock may wait on another process, and every command would wait
    with it); anchor writes in this process go one at a time. A pool writes
    it on every member.
    """

    broadcast = True
    seq: int
    head: bytes
    store: str = ""

    def run(self, b: CommandBackend) -> None:
        store, seq, head = self.store, self.seq, self.head
        _anchor_name(store)
        with b._anchor_lock:
            current = _read_anchor(b, store)
            if current is not None and current[0] >= seq:
                return
            with b._guard():
                tag = b._lmk_cmac(_anchor_message(store, seq, head))
            b._anchor_store(f"{seq}:{head.hex()}:{tag.hex()}".encode(), store)


@dataclass(frozen=True, kw_only=True, repr=False)
class ReadAuditAnchor(HsmCommand[tuple[int, bytes] | None]):
    """The last anchored (sequence, head hash) of ``store``; ``PermissionDenied`` if it was altered.

    A pool reads every member's and answers the furthest.
    """

    broadcast = True
    store: str = ""

    def run(self, b: CommandBackend) -> tuple[int, bytes] | None:
        _anchor_name(self.store)
        return _read_anchor(b, self.store)

    def combine(self, answers: Sequence[Any]) -> tuple[int, bytes] | None:
        found = [a for a in answers if a is not None]
        return max(found, key=lambda a: int(a[0])) if found else None


@dataclass(frozen=True, kw_only=True, repr=False)
class Forget(HsmCommand[None]):
    """Drop every cached unwrapped version of ``key_id`` (rotation, revocation); on every pool member."""

    broadcast = True
    key_id: str

    def run(self, b: CommandBackend) -> None:
        b._forget(self.key_id)

    def key_ids(self) -> list[str]:
        return [self.key_id]
