"""PIN-verify attempt limits, per card and per principal, kept in the store.

A card is counted under a keyed hash of its PAN (CMAC under the LMK), never
the PAN itself, so the table holds nothing a PAN can be read from. Every
failure is audited in the same transaction that counts it. A correct PIN
clears its card's counter, as a card's PIN try counter is reset; the
principal's counter only ages out, so a caller cannot hide a guessing run
behind the odd success.
"""

from __future__ import annotations

import time

from hsmsvc.errors import AttemptsExceeded
from hsmsvc.keys.model import AuditEvent
from hsmsvc.redact import mask_pan
from hsmsvc.service.context import Caller, Services

__all__ = ["AttemptGuard", "check_principal"]


def _principal_subject(name: str) -> str:
    return f"principal:{name}"


class AttemptGuard:
    """Check before a PIN is touched; count after it fails."""

    def __init__(self, services: Services, caller: Caller, pan: str | None) -> None:
        self._s = services
        self._caller = caller
        self._pan = pan
        self._subjects = [_principal_subject(caller.principal.name)]
        if pan:
            self._subjects.append("pan:" + services.backend.pan_hash(pan).hex())
        self._had_failures = False

    @property
    def subjects(self) -> list[str]:
        return self._subjects

    def check(self) -> None:
        self.check_counts(self._s.store.failures(self._subjects, self._s.limits.window))

    def check_counts(self, counts: dict[str, int]) -> None:
        """Refuse if either limit is reached, given counts read for several guards at once."""
        limits = self._s.limits
        self._had_failures = len(self._subjects) > 1 and self._subjects[1] in counts
        if counts.get(self._subjects[0], 0) >= limits.per_principal:
            raise AttemptsExceeded("principal", "too many failed PIN checks; try later")
        if len(self._subjects) > 1 and counts.get(self._subjects[1], 0) >= limits.per_pan:
            raise AttemptsExceeded("pan", "too many failed PIN checks for this card")

    def check_principal(self) -> None:
        """The principal's limit only (:func:`check_principal`)."""
        check_principal(self._s, self._caller)

    def failed(self, key_id: str, key_version: int, what: str) -> None:
        self._s.store.record_failure(
            self._subjects,
            self._s.limits.window,
            AuditEvent(
                self._caller.principal.name,
                f"pin.{what}.failed",
                key_id,
                key_version,
                (("method", self._caller.method), ("pan", mask_pan(self._pan)),
                 ("request_id", self._caller.request_id)),
            ),
        )
        self._s.attempt_cache.pop(self._caller.principal.name, None)

    def succeeded(self) -> None:
        if self._had_failures:
            self._s.store.clear_failures(self._subjects[1])


def check_principal(s: Services, caller: Caller) -> None:
    """The principal's limit only, for translation; a recent pass is trusted for a second.

    Failures are written through and drop that trust at once (:meth:`AttemptGuard.failed`),
    so only failures counted by another process can take up to a second to bite.
    """
    name = caller.principal.name
    if s.attempt_cache.get(name, 0.0) > time.monotonic():
        return
    subject = _principal_subject(name)
    if s.store.failures([subject], s.limits.window).get(subject, 0) >= s.limits.per_principal:
        raise AttemptsExceeded("principal", "too many failed PIN checks; try later")
    s.attempt_cache[name] = time.monotonic() + 1.0
