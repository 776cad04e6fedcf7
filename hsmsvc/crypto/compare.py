"""The one constant-time comparison every tag, KCV and digest check uses."""

from __future__ import annotations

import hmac

from hsmsvc.errors import InvalidInput, VerificationFailed


def bytes_eq(a: bytes, b: bytes) -> bool:
    """Compare in time independent of where the inputs differ."""
    return hmac.compare_digest(a, b)


def require_eq(computed: bytes, presented: bytes, what: str) -> None:
    """Raise :class:`VerificationFailed` naming ``what`` unless equal."""
    if not isinstance(presented, (bytes, bytearray)):
        raise InvalidInput(what, "bytes")
    if not hmac.compare_digest(computed, bytes(presented)):
        raise VerificationFailed(what, "does not verify")
