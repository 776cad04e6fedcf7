"""What a re-encryption job is: its modes, its spec, the crypto it calls, and what it reports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum, unique
from typing import Final, Protocol

from hsmsvc.errors import InvalidInput
from hsmsvc.hsm.backend import Backend
from hsmsvc.hsm.commands import CompareStoredPins, ReencryptStoredPins
from hsmsvc.hsm.model import KeyCryptogram

__all__ = ["MAX_CHUNK", "BackendMover", "DryRun", "JobSpec", "Mode", "Mover", "Plan", "Progress", "label"]

MAX_CHUNK: Final = 100_000
"""Rows per chunk at most: one backend call per chunk."""


@unique
class Mode(Enum):
    """What a job does; each mode names which keys it accepts."""

    PSK = "psk"
    """Enciphered under one PSK to enciphered under another (a PSK rotation, 004 clause 6.2.3(e))."""
    LMK = "lmk"
    """The source PSK taken under the LMK being retired, the target under the new one (payShield BG)."""
    DIGEST = "digest"
    """Enciphered to a keyed one-way digest (004 clause 6.2.4)."""
    LEGACY = "legacy"
    """A retiring system's PIN key, imported under a ZMK, to our PSK or digest (004 clause 6.3.2)."""


def label(key: KeyCryptogram) -> str:
    """What the key-version column holds for rows under ``key``."""
    return f"{key.spec.key_id}:{key.spec.version}"


class Mover(Protocol):
    """The crypto of one job: a backend in this process, or the service's batch RPC."""

    def move(self, rows: Sequence[tuple[bytes, str]]) -> list[bytes | None]:
        """(cryptogram under the source, account) to the target's cryptogram; ``None`` for a bad row."""
        ...

    def compare(self, rows: Sequence[tuple[bytes, bytes, str]]) -> list[bool]:
        """(old cryptogram, new cryptogram, account): whether both hold the same PIN."""
        ...


@dataclass(frozen=True)
class BackendMover:
    """Moves PINs through :meth:`Backend.reencrypt_stored_pins`: one call, and for TDES one ECB buffer, per chunk."""

    backend: Backend
    source: KeyCryptogram
    target: KeyCryptogram
    old_lmk: bool = False

    def move(self, rows: Sequence[tuple[bytes, str]]) -> list[bytes | None]:
        return self.backend.execute(ReencryptStoredPins(old_psk=self.source, new_psk=self.target, rows=rows,
                                                        old_lmk=self.old_lmk))

    def compare(self, rows: Sequence[tuple[bytes, bytes, str]]) -> list[bool]:
        return self.backend.execute(CompareStoredPins(old_psk=self.source, new_psk=self.target, rows=rows,
                                                      old_lmk=self.old_lmk))


@dataclass(frozen=True)
class JobSpec:
    name: str
    mode: Mode
    source: str
    """The key-version label of rows to move (``KEY_ID:VERSION``)."""
    target: str
    chunk_rows: int = 10_000

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not 1 <= len(self.name) <= 64:
            raise InvalidInput("job", "1 to 64 characters")
        if not 1 <= self.chunk_rows <= MAX_CHUNK:
            raise InvalidInput("chunk", f"1 to {MAX_CHUNK} rows")
        if self.source == self.target:
            raise InvalidInput("target", "a different key from the source")


@dataclass(frozen=True)
class Plan:
    total_rows: int
    """Rows under the source key when the job was planned."""
    chunks: int


@dataclass(frozen=True)
class Progress:
    chunks: int
    chunks_done: int
    moved: int
    rejected: int
    crypto_seconds: float


@dataclass(frozen=True)
class DryRun:
    rows: int
    would_move: int
    would_reject: int
    crypto_seconds: float
