"""Typed errors for every rejection hsmsvc makes.

Messages name the field and the rule that was broken, never the value: no PIN
digits, no key bytes, no full PAN. This module imports nothing from the layers
and knows nothing of gRPC; ``hsmsvc.api.status`` maps classes to status codes.
"""

from __future__ import annotations


class HsmsvcError(Exception):
    """Base class. ``field`` names the offending input, ``reason`` the rule."""

    default_reason = "rejected"

    def __init__(self, field: str | None = None, reason: str = "") -> None:
        self.field = field
        self.reason = reason or self.default_reason
        super().__init__(f"{field}: {self.reason}" if field else self.reason)

    def __reduce__(self) -> tuple[type[HsmsvcError], tuple[str | None, str]]:
        # Rebuilt from field and reason, not the joined message (a pool member's batch answer holds these).
        return (type(self), (self.field, self.reason))


class InvalidInput(HsmsvcError):
    """Malformed request data (INVALID_ARGUMENT)."""

    default_reason = "invalid"


class InvalidPinBlock(InvalidInput):
    """A PIN block failed a check after decryption.

    Always the same message whatever check failed, so it is no oracle.
    """

    default_reason = "PIN block invalid"

    def __init__(self) -> None:
        super().__init__("pin_block", self.default_reason)

    def __reduce__(self) -> tuple[type[InvalidPinBlock], tuple[()]]:  # type: ignore[override]
        return (InvalidPinBlock, ())


class InvalidKeyBlock(InvalidInput):
    """A key block (TR-31) failed its MAC or a check after decryption.

    One message for every failure after the header, so it is no oracle.
    """

    default_reason = "key block invalid"

    def __init__(self, reason: str = "") -> None:
        super().__init__("key_block", reason or self.default_reason)

    def __reduce__(self) -> tuple[type[InvalidKeyBlock], tuple[str]]:  # type: ignore[override]
        return (InvalidKeyBlock, (self.reason,))


class VerificationFailed(HsmsvcError):
    """A MAC, PIN, KCV or signature did not verify."""

    default_reason = "verification failed"


class KeyNotFound(HsmsvcError):
    """No key with that id, alias or version (NOT_FOUND)."""

    default_reason = "key not found"


class KeyUsageViolation(HsmsvcError):
    """The key is not bound to the requested use (FAILED_PRECONDITION)."""

    default_reason = "key usage does not permit this operation"


class KeyStateError(HsmsvcError):
    """The key's state forbids the request (FAILED_PRECONDITION)."""

    default_reason = "key state does not permit this operation"


class Unsupported(HsmsvcError):
    """The backend lacks the command or algorithm (FAILED_PRECONDITION)."""

    default_reason = "not supported by this backend"


class ModeRefused(HsmsvcError):
    """The deployment's cryptographic mode (national-only) refuses the algorithm (FAILED_PRECONDITION)."""

    default_reason = "not allowed in this deployment's cryptographic mode"


class PermissionDenied(HsmsvcError):
    """The principal may not do this (PERMISSION_DENIED)."""

    default_reason = "permission denied"


class AttemptsExceeded(HsmsvcError):
    """Too many failed attempts (RESOURCE_EXHAUSTED)."""

    default_reason = "attempt limit reached"


class BackendUnavailable(HsmsvcError):
    """No backend can serve the request now (UNAVAILABLE)."""

    default_reason = "backend unavailable"


class Overloaded(HsmsvcError):
    """More calls wait for the server's executor than it queues (RESOURCE_EXHAUSTED)."""

    default_reason = "too many calls waiting; retry with backoff"


class AlreadyFinalized(HsmsvcError):
    """A one-shot context was used twice: a bug in our code (INTERNAL)."""

    default_reason = "context already finalized"


class AlreadyExists(HsmsvcError):
    """A key with that id and version, or alias and version, exists (ALREADY_EXISTS)."""

    default_reason = "already exists"


def unreadable(field: str, path: object, error: OSError) -> InvalidInput:
    """A file that could not be read, as one line naming it and why: ``tls.cert /etc/x.pem: cannot be read
    (permission denied)``. A path is no secret; the file's content never appears."""
    reason = (error.strerror or type(error).__name__).lower()
    return InvalidInput(f"{field} {path}", f"cannot be read ({reason})")
