"""The host commands: each one's code, the policy method it needs, where it runs, and its handler.

A family module defines a command once with :func:`command`; the listener finds it here. A
command needs the same policy method as its gRPC counterpart (``CA`` needs
``PinService.TranslatePin``), so one policy file governs both doors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from hsmsvc.api.hostcmd.fields import Fields, KeyField
from hsmsvc.api.runner import Lane
from hsmsvc.keys.model import KeyRef, StoredKey
from hsmsvc.service import keytokens
from hsmsvc.service.context import Caller, Services

__all__ = ["COMMANDS", "Answer", "Command", "Handler", "command", "key_ref", "stored_key"]


@dataclass(frozen=True)
class Answer:
    """A reply other than ``00`` with its fields (a verification failure is ``01``, no fields)."""

    code: str
    fields: bytes = b""


Handler = Callable[[Services, Caller, Fields], "bytes | Answer"]


@dataclass(frozen=True)
class Command:
    code: bytes
    method: str | None
    """The policy method a principal needs: the gRPC method doing the same (None: any principal of
    the policy, as gRPC health is)."""
    lane: Lane
    handler: Handler
    destinations: frozenset[str]
    """Key fields whose refusal is the destination key's error (11), not the source's (10)."""
    needs_services: bool = True
    """False for diagnostics, which answer even while the LMK is sealed."""


COMMANDS: Final[dict[bytes, Command]] = {}


def command(code: str, method: str | None, lane: Lane = Lane.OTHER, *, destinations: tuple[str, ...] = (),
            needs_services: bool = True) -> Callable[[Handler], Handler]:
    """Register ``handler(services, caller, fields)`` as host command ``code``."""

    def deco(handler: Handler) -> Handler:
        key = code.encode("ascii")
        if key in COMMANDS:
            raise ValueError(f"host command {code} defined twice")
        COMMANDS[key] = Command(key, method, lane, handler, frozenset(destinations), needs_services)
        return handler

    return deco


def stored_key(s: Services, c: Caller, key: KeyField, field: str) -> tuple[KeyRef, StoredKey]:
    """The stored key a key field names (by label, or by its cryptogram: ``service/keytokens.py``),
    and the reference that names it to a use case: its id and version, or its label."""
    if key.alias is not None:
        return KeyRef(alias=key.alias), keytokens.labelled(s, c, key.alias, field)
    assert key.blob is not None
    found = keytokens.stored(s, c, key.blob, field)
    return KeyRef(key_id=found.key_id, version=found.version), found


def key_ref(s: Services, c: Caller, key: KeyField, field: str) -> KeyRef:
    """The reference a use case takes for the stored key a key field names (:func:`stored_key`)."""
    return stored_key(s, c, key, field)[0]
