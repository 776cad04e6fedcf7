"""Which principal a client certificate names.

A certificate must carry the clientAuth extended key usage. Its names are, in this order, the
subject's common names, then its DNS and URI subject alternative names; each is compared with the
policy's principal names exactly (case and all). E-mail and IP address SANs and other subject
attributes never name a principal. A certificate whose names reach two different principals is
refused rather than resolved by order. A refusal is logged (WARNING, ``hsmsvc.identity``) with the
certificate's subject and the client's address, once a minute at most per certificate.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Final

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hsmsvc.errors import PermissionDenied
from hsmsvc.service.authz import Policy, Principal

__all__ = ["certificate_names", "principal_resolver"]

log = logging.getLogger("hsmsvc.identity")

_CACHED: Final = 4096
"""Certificates remembered (by their PEM): parsing one costs far more than the call it guards."""
_QUIET: Final = 60.0
"""Seconds between two log lines about one refused certificate (a client retrying in a loop)."""


def _subject(pem: bytes) -> str:
    try:
        return x509.load_pem_x509_certificate(pem).subject.rfc4514_string()
    except ValueError:
        return "(unparsable)"


class _Refusals:
    """Logs a refused client, at most once per :data:`_QUIET` seconds per certificate."""

    def __init__(self) -> None:
        self._last: dict[bytes, tuple[float, int]] = {}

    def note(self, pem: bytes, refusal: PermissionDenied, context: Any) -> None:
        now = time.monotonic()
        last, since = self._last.get(pem, (-_QUIET, 0))
        if now - last < _QUIET:
            self._last[pem] = (last, since + 1)
            return
        if len(self._last) >= _CACHED:
            self._last.clear()
        self._last[pem] = (now, 0)
        try:
            peer = str(context.peer())
        except Exception:  # a context without a transport (none in grpc.aio): the refusal still counts
            peer = "-"
        log.warning("client refused", extra={
            "subject": _subject(pem) if pem else "(no certificate)", "peer": peer,
            "reason": f"{refusal.field}: {refusal.reason}", "refused_since_last_line": since})


def certificate_names(cert: x509.Certificate) -> list[str]:
    """The names a principal may be matched by; raises PermissionDenied without clientAuth."""
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        raise PermissionDenied("certificate", "no extended key usage: clientAuth is required") from None
    if ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
        raise PermissionDenied("certificate", "its extended key usage lacks clientAuth")
    names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return names
    return names + san.get_values_for_type(x509.DNSName) + san.get_values_for_type(x509.UniformResourceIdentifier)


def _resolve(policy: Policy, pem: bytes) -> Principal | PermissionDenied:
    try:
        names = certificate_names(x509.load_pem_x509_certificate(pem))
    except PermissionDenied as e:
        return e
    except ValueError:
        return PermissionDenied("certificate", "cannot be parsed")
    found: dict[str, Principal] = {}
    for n in names:
        try:
            p = policy.principal(n)
        except PermissionDenied:
            continue
        found[p.name] = p
    if len(found) > 1:
        return PermissionDenied("principal", "the client certificate names more than one principal")
    if not found:
        return PermissionDenied("principal", "the client certificate names no principal of the policy")
    return next(iter(found.values()))


def principal_resolver(policy: Policy) -> Callable[[Any], Principal]:
    """``context -> Principal`` for a grpc call over mTLS, remembering each certificate's answer."""
    cache: dict[bytes, Principal | PermissionDenied] = {}
    refusals = _Refusals()

    def resolve(context: Any) -> Principal:
        pems = (context.auth_context() or {}).get("x509_pem_cert") or [b""]
        pem = pems[0]
        answer = cache.get(pem)
        if answer is None:
            answer = _resolve(policy, pem) if pem else PermissionDenied("certificate", "none presented")
            if len(cache) >= _CACHED:
                cache.clear()  # a bound, not an LRU: distinct client certificates are few
            cache[pem] = answer
        if isinstance(answer, PermissionDenied):
            refusals.note(pem, answer, context)
            # A fresh exception each time: one raised object would collect every call's traceback.
            raise PermissionDenied(answer.field, answer.reason)
        return answer

    return resolve
