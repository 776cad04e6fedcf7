"""What every use case receives: the caller, and the shared components."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

from hsmsvc.errors import InvalidInput, KeyNotFound, KeyStateError, KeyUsageViolation

from hsmsvc.hsm.backend import Backend
from hsmsvc.hsm.policy import Operation
from hsmsvc.keys.cache import KeyCache
from hsmsvc.keys.hierarchy import KeyManager
from hsmsvc.keys.model import KeyRef, StoredKey
from hsmsvc.keys.national import CryptoMode
from hsmsvc.keys.store import KeyStore
from hsmsvc.service.auditqueue import AuditQueue
from hsmsvc.service.authz import NO_SUCH_KEY, Policy, Principal

if TYPE_CHECKING:
    from hsmsvc.service.routes import RouteCache

__all__ = ["AttemptLimits", "Caller", "Observer", "PinPolicy", "Services"]


@dataclass(frozen=True)
class Caller:
    """An authenticated principal and the request it is making."""

    principal: Principal
    method: str
    request_id: str


class Observer(Protocol):
    """Where use cases report what metrics count (key use, verification results)."""

    def key_used(self, key: StoredKey, n: int = 1) -> None: ...

    def keys_used(self, keys: Sequence[StoredKey], n: int = 1) -> None:
        """The uses of a call's several keys, counted together (``UseMeter.keys_used``)."""
        ...


class _NoObserver:
    def key_used(self, key: StoredKey, n: int = 1) -> None:
        return None

    def keys_used(self, keys: Sequence[StoredKey], n: int = 1) -> None:
        return None


@dataclass(frozen=True)
class AttemptLimits:
    """Failed PIN checks allowed within ``window`` before RESOURCE_EXHAUSTED."""

    per_pan: int = 3
    per_principal: int = 500
    window: timedelta = timedelta(hours=24)


@dataclass(frozen=True)
class PinPolicy:
    """Per-deployment PIN rules (``[pin]`` in the server config)."""

    allow_aes_to_tdes_translation: bool = True
    """Whether TranslatePin may take an ISO 9564-1 format 4 (AES) block to a TDES format (0, 1, 3).

    Allowed by default: card networks still take format 0 under TDES ZPKs, so an acquirer whose
    terminals send format 4 must translate down during the AES migration, and a default that
    refused would break it on upgrade. A bank whose links are all AES turns it off, and the
    downgrade is then FAILED_PRECONDITION.
    """


class Services:
    """The components every use case shares."""

    def __init__(
        self,
        store: KeyStore,
        backend: Backend,
        policy: Policy,
        limits: AttemptLimits = AttemptLimits(),
        observer: Observer | None = None,
        pin: PinPolicy = PinPolicy(),
        mode: CryptoMode = CryptoMode(),
    ) -> None:
        mode.require_lmk(backend.capabilities.lmk)
        self.store = store
        self.pin = pin
        self.mode = mode
        """``[crypto]``: national-only or not (:mod:`hsmsvc.keys.national`)."""
        self.backend = backend
        self.policy = policy
        self.limits = limits
        self.observer: Observer = observer or _NoObserver()
        self.keys = KeyCache(store)
        from hsmsvc.service.routes import RouteCache  # it builds on this module's types

        self.audit_queue = AuditQueue(store)
        """Group commit for the audit rows of co-signatures (:mod:`hsmsvc.service.auditqueue`)."""
        self.routes: RouteCache = RouteCache()
        """Checked TranslatePin routes (:mod:`hsmsvc.service.routes`)."""
        # principal name -> monotonic time until which its attempt count is trusted
        self.attempt_cache: dict[str, float] = {}
        # attempt counter -> monotonic time until which a check naming it is refused at once
        self.attempt_refusals: dict[str, float] = {}
        # (principal name, cryptogram) -> (key cache stamp, its stored key): host commands' key
        # fields found again without a lookup while the key cache changes nothing (service/keytokens.py)
        self.key_tokens: dict[tuple[str, bytes], tuple[int, StoredKey]] = {}

    def manager(self, caller: Caller) -> KeyManager:
        return KeyManager(self.store, self.backend, caller.principal.name, self.mode)

    def key(
        self,
        caller: Caller,
        ref: KeyRef,
        op: Operation | Callable[[StoredKey], Operation],
        field: str = "key",
    ) -> StoredKey:
        """Look up ``ref``, check the caller may use it, then that it may do ``op`` now."""
        if not isinstance(ref, KeyRef):
            raise InvalidInput(field, "a key id or alias")
        try:
            key = self.keys.lookup(ref)
        except KeyNotFound:
            raise KeyNotFound(field, NO_SUCH_KEY) from None
        # Outside the caller's patterns answers as above, word for word (issue 27).
        caller.principal.require_key(key, field)
        self.mode.require_key(key.cryptogram.spec.algorithm, field)
        try:
            return KeyManager.check_use(key, op if isinstance(op, Operation) else op(key))
        except (KeyUsageViolation, KeyStateError) as e:
            raise type(e)(field, e.reason) from None
