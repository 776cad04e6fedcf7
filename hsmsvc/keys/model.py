"""A stored key: its cryptogram under the LMK and its life-cycle fields."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from datetime import datetime
from enum import Enum, unique
from typing import Final

from hsmsvc.errors import InvalidInput
from hsmsvc.hsm.model import KeyCryptogram, KeySpec, LegacyForm
from hsmsvc.types import KeyState, KeyType

__all__ = ["AuditEvent", "Ceremony", "CeremonyState", "KeyRef", "StoredKey", "SyncState"]


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
    """The rotation trigger: at this many uses a new version is made; use stops at twice it."""
    activates_at: datetime | None = None
    """Not usable before this time (a key change's activation time)."""
    legacy_types: frozenset[KeyType] = frozenset()
    """K0 KEKs: the key types this KEK may carry in the legacy ECB form (opt-in)."""
    legacy_form: LegacyForm = LegacyForm.NONE
    """K0 KEKs: the legacy form it carries them in (X9.17 ECB, payShield variant, ...)."""

    @property
    def key_id(self) -> str:
        return self.cryptogram.spec.key_id

    @property
    def due_by_age_at(self) -> datetime | None:
        """When half its life is gone, for a version that expires."""
        start = self.activated_at or self.created_at
        if self.expires_at is None or self.expires_at <= start:
            return None
        return start + (self.expires_at - start) / 2

    @property
    def rotation_due(self) -> bool:
        """At its rotation limit: ``max_uses`` reached, or half its life gone (use stops at twice either)."""
        if self.max_uses is not None and self.use_count >= self.max_uses:
            return True
        due = self.due_by_age_at
        return due is not None and datetime.now(due.tzinfo) >= due

    @property
    def version(self) -> int:
        return self.cryptogram.spec.version

    @cached_property
    def ident(self) -> tuple[str, int]:
        """(key id, version): what use counts and metrics are kept by, worked out once."""
        return (self.cryptogram.spec.key_id, self.cryptogram.spec.version)


@dataclass(frozen=True)
class AuditEvent:
    """What happened, by whom, to which key. ``detail`` holds no secret: KCVs, states, reasons."""

    actor: str
    action: str
    key_id: str | None = None
    key_version: int | None = None
    detail: tuple[tuple[str, str], ...] = ()


NAME: Final = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_ALIAS: Final = re.compile(r"[A-Za-z0-9._:/-]{1,128}")


def check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not _ALIAS.fullmatch(alias):
        raise InvalidInput("alias", "1-128 of A-Z a-z 0-9 . _ : / -")
    return alias


@dataclass(frozen=True)
class KeyRef:
    """How a caller names a key: its id or its alias, and optionally a version."""

    key_id: str = ""
    alias: str = ""
    version: int | None = None

    def __post_init__(self) -> None:
        if bool(self.key_id) == bool(self.alias):
            raise InvalidInput("key", "either key_id or alias")
        if self.key_id and not NAME.fullmatch(self.key_id):
            raise InvalidInput("key.key_id", "1-64 of A-Z a-z 0-9 . _ : -")
        if self.alias:
            check_alias(self.alias)
        if self.version is not None and not 1 <= self.version <= 99_999:
            raise InvalidInput("key.version", "1 to 99999")

    def __str__(self) -> str:
        name = self.key_id or f"alias:{self.alias}"
        return f"{name} v{self.version}" if self.version else name


@dataclass(frozen=True)
class SyncState:
    """Where a zone's key changes stand at this site (one row per zone and role)."""

    zone: str
    role: str
    sequence: int
    state: str
    digest: str
    detail: str
    updated_at: datetime


@unique
class CeremonyState(Enum):
    OPEN = "OPEN"
    """Waiting for its second officer's approval or its custodians' components."""
    FORMED = "FORMED"
    """The key is stored; the components are gone."""
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"


@dataclass(frozen=True)
class Ceremony:
    """A key being formed from custodians' components under dual control.

    ``components`` lists who gave each component and its KCV; the wrapped
    components themselves are read only to form the key, then erased.
    """

    ceremony_id: str
    spec: KeySpec
    alias: str | None
    legacy_types: frozenset[KeyType]
    ctk_id: str
    ctk_version: int
    required: int
    state: CeremonyState
    started_by: str
    approved_by: str | None
    created_at: datetime
    expires_at: datetime
    components: tuple[tuple[str, str], ...] = ()
    kcv: str | None = None
    """The formed key's KCV, once FORMED."""
    legacy_form: LegacyForm = LegacyForm.NONE
    """K0 KEKs: the legacy form the formed key will carry ``legacy_types`` in."""

    @property
    def ready(self) -> bool:
        """Approved by a second officer and holding every component."""
        return self.approved_by is not None and len(self.components) == self.required
