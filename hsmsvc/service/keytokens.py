"""A stored key named by its own cryptogram (a host command's ``S`` key field) or its label.

The cryptogram only finds the row: the whole of it must equal the stored version's, compared in
constant time, and the caller must be allowed the stored key's id and zone. Anything else answers
as a key that does not exist, word for word, as ``Services.key`` does (issue 27).

A cryptogram found is kept per principal (``Services.key_tokens``) while the key cache has
dropped or changed nothing (``KeyCache.stamp``): the same bytes then name the same key, which the
same principal may use, so the host door's hot path finds it without a lookup. Whether the key
may do what the command asks (state, dates, usage) is the use case's check, made on every call.
"""

from __future__ import annotations

import hmac
from typing import Final

from hsmsvc.errors import KeyNotFound
from hsmsvc.hsm import claims
from hsmsvc.keys.model import KeyRef, StoredKey
from hsmsvc.service.authz import NO_SUCH_KEY
from hsmsvc.service.context import Caller, Services

__all__ = ["labelled", "stored"]

_KEPT: Final = 4096
"""Cryptograms kept; past it the cache starts again (a flood of distinct ones costs lookups, not memory)."""


def stored(s: Services, caller: Caller, blob: bytes, field: str) -> StoredKey:
    """The stored key whose cryptogram is ``blob``."""
    kept = s.key_tokens.get((caller.principal.name, blob))
    if kept is not None and s.keys.current(kept[0]):
        return kept[1]
    stamp = s.keys.stamp  # before the lookup, so a change made during it shows
    ident = claims.claimed(blob)
    if ident is None:
        raise KeyNotFound(field, NO_SUCH_KEY)
    try:
        key = s.keys.lookup(KeyRef(key_id=ident[0], version=ident[1]))
    except KeyNotFound:
        raise KeyNotFound(field, NO_SUCH_KEY) from None
    if not hmac.compare_digest(key.cryptogram.blob, blob):
        raise KeyNotFound(field, NO_SUCH_KEY)
    caller.principal.require_key(key, field)
    if len(s.key_tokens) >= _KEPT:
        s.key_tokens.clear()
    s.key_tokens[(caller.principal.name, blob)] = (stamp, key)
    return key


def labelled(s: Services, caller: Caller, alias: str, field: str) -> StoredKey:
    """The stored key (its current version) whose label is ``alias``, if the caller may use it."""
    try:
        key = s.keys.lookup(KeyRef(alias=alias))
    except KeyNotFound:
        raise KeyNotFound(field, NO_SUCH_KEY) from None
    caller.principal.require_key(key, field)
    return key
