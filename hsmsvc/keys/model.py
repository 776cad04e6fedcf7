"""A stored key: its cryptogram under the LMK and its life-cycle fields."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from hsmsvc.hsm.backend import KeyCryptogram
from hsmsvc.types import KeyState

__all__ = ["AuditEvent", "StoredKey"]


@dataclass(frozen=True)
class StoredKey:
    """One version of a key as the store keeps it. Never holds clear material."""

    cryptogram: KeyCryptogram
    state: KeyState
    created_at: datetime
    alias: str | None = None
    activated_at: datetime | None = None
    expires_at: datetime | None = None
    use_count: int = 0
    max_uses: int | None = None

    @property
    def key_id(self) -> str:
        return self.cryptogram.spec.key_id

    @property
    def version(self) -> int:
        return self.cryptogram.spec.version


@dataclass(frozen=True)
class AuditEvent:
    """What happened, by whom, to which key. ``detail`` holds no secret: KCVs, states, reasons."""

    actor: str
    action: str
    key_id: str | None = None
    key_version: int | None = None
    detail: tuple[tuple[str, str], ...] = ()
