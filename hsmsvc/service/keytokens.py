"""A stored key named by its own cryptogram (a host command's ``S`` key field).

The cryptogram only finds the row: the whole of it must equal the stored version's, compared in
constant time, and the caller must be allowed the stored key's id and zone. Anything else answers
as a key that does not exist, word for word, as ``Services.key`` does (issue 27).
"""

from __future__ import annotations

import hmac

from hsmsvc.errors import KeyNotFound
from hsmsvc.hsm import claims
from hsmsvc.keys.model import KeyRef
from hsmsvc.service.authz import NO_SUCH_KEY
from hsmsvc.service.context import Caller, Services

__all__ = ["stored_ref"]


def stored_ref(s: Services, caller: Caller, blob: bytes, field: str) -> KeyRef:
    """The id and version of the stored key whose cryptogram is ``blob``."""
    ident = claims.claimed(blob)
    if ident is None:
        raise KeyNotFound(field, NO_SUCH_KEY)
    ref = KeyRef(key_id=ident[0], version=ident[1])
    try:
        key = s.keys.lookup(ref)
    except KeyNotFound:
        raise KeyNotFound(field, NO_SUCH_KEY) from None
    if not hmac.compare_digest(key.cryptogram.blob, blob):
        raise KeyNotFound(field, NO_SUCH_KEY)
    caller.principal.require_key(key, field)
    return ref
