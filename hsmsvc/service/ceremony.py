"""Forming a key from custodians' components under dual control (ISO 11568-1 clause 4.4; 004 clause 7.1.1).

A key manager starts the ceremony with the key's template, the CTK the
components travel under and how many there are (2 to 9). A second, different
manager approves it. Each custodian sends one component, enciphered under the
CTK's public half by the ceremony client, with the component's KCV; the backend
checks it at once, so a wrong component is refused with its KCV before it is
kept. When the approval and every component are in, the backend unwraps and
XORs them and the key is stored under the LMK, in the transaction that erases
the wrapped components. Nobody but the backend ever holds the clear key, and no
single principal can complete a ceremony. Every step is audited with who did it.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta, timezone
from typing import Final

from hsmsvc.errors import AlreadyExists, InvalidInput, KeyNotFound, KeyStateError, KeyUsageViolation, PermissionDenied
from hsmsvc.hsm.commands import CheckComponent, FormKeyWrapped
from hsmsvc.hsm.model import Command, KeySpec, LegacyForm
from hsmsvc.hsm.commands.base import STRENGTH
from hsmsvc.hsm.policy import KEY_PAIRS, Operation
from hsmsvc.keys.hierarchy import KeyManager, check_legacy_types
from hsmsvc.keys.model import AuditEvent, Ceremony, CeremonyState, KeyRef, StoredKey, check_alias
from hsmsvc.keys.store import SEPARATION
from hsmsvc.service.context import Caller, Services
from hsmsvc.service.keys import may_create
from hsmsvc.types import KeyState, KeyType

__all__ = ["CEREMONY_TTL", "add_component", "approve", "cancel", "get", "start"]

_ID: Final = re.compile(r"c-[0-9a-f]{16}")
CEREMONY_TTL: Final = timedelta(hours=1)
"""An open ceremony ends unformed after this; its wrapped components are erased."""


def _detail(c: Ceremony, **extra: str) -> tuple[tuple[str, str], ...]:
    base = {"ceremony": c.ceremony_id, "key_type": c.spec.key_type.value, "algorithm": c.spec.algorithm.value,
            "ctk": f"{c.ctk_id} v{c.ctk_version}", **extra}
    return tuple(sorted(base.items()))


def _event(caller: Caller, action: str, c: Ceremony, **extra: str) -> AuditEvent:
    return AuditEvent(caller.principal.name, action, c.spec.key_id, c.spec.version, _detail(c, **extra))


def start(
    s: Services, caller: Caller, *, spec: KeySpec, alias: str | None, legacy_types: frozenset[KeyType],
    ctk: KeyRef, required: int, ttl: timedelta = CEREMONY_TTL, legacy_form: LegacyForm = LegacyForm.NONE,
) -> Ceremony:
    """The first officer's step: what key, under which CTK, from how many components."""
    if not 2 <= required <= 9:
        raise InvalidInput("component_count", "2 to 9 (dual control)")
    if spec.key_type in KEY_PAIRS:
        raise InvalidInput("template.key_type", "a key pair is generated, never formed from components")
    if alias is not None:
        check_alias(alias)
    check_legacy_types(spec, legacy_types, legacy_form)
    s.mode.require_key(spec.algorithm, "template.algorithm")
    may_create(s, caller, spec)
    transport = s.key(caller, ctk, Operation.COMPONENT_DECRYPT, "transport_key")
    s.backend.capabilities.require(Command.FORM_KEY_WRAPPED, spec.algorithm)
    if STRENGTH[spec.algorithm] > STRENGTH[transport.cryptogram.spec.algorithm]:
        raise KeyUsageViolation("transport_key", f"weaker than the {spec.algorithm.value} key it would carry "
                                                 "(X9.24-1): use RSA_3072 or SM2 for AES-128, TDES or SM4 keys; form a "
                                                 "stronger key at the backend (`hsmsvc ceremony key form`)")
    try:
        s.store.get(spec.key_id, spec.version)
        raise AlreadyExists("template.key_id", "a key with this id and version exists")
    except KeyNotFound:
        pass
    now = datetime.now(timezone.utc)
    c = Ceremony("c-" + secrets.token_hex(8), spec, alias, legacy_types, transport.key_id, transport.version,
                 required, CeremonyState.OPEN, caller.principal.name, None, now, now + ttl,
                 legacy_form=legacy_form)
    s.store.open_ceremony(c, _event(caller, "ceremony.start", c, components=str(required)))
    return s.store.ceremony(c.ceremony_id)


def _transport(s: Services, c: Ceremony) -> StoredKey:
    """The ceremony's CTK, still usable for components (it may have been revoked meanwhile)."""
    ctk = s.store.get(c.ctk_id, c.ctk_version)
    s.mode.require_key(ctk.cryptogram.spec.algorithm, "ceremony")
    return KeyManager.check_use(ctk, Operation.COMPONENT_DECRYPT)


def _live(s: Services, caller: Caller, ceremony_id: str) -> Ceremony:
    """The ceremony, if the caller may see it; an expired open one is closed on the way."""
    c = get(s, caller, ceremony_id)
    if c.state is CeremonyState.OPEN and c.expires_at <= datetime.now(timezone.utc):
        try:
            s.store.close_ceremony(ceremony_id, CeremonyState.EXPIRED,
                                   _event(caller, "ceremony.expire", c), expired_ok=True)
        except KeyStateError:
            pass  # closed meanwhile
        raise KeyStateError("ceremony_id", "the ceremony has expired; start again")
    if c.state is not CeremonyState.OPEN:
        raise KeyStateError("ceremony_id", f"the ceremony is {c.state.value}")
    # One started before the mode was set takes no component (each would be checked by its KCV).
    s.mode.require_key(c.spec.algorithm, "ceremony")
    return c


def get(s: Services, caller: Caller, ceremony_id: str) -> Ceremony:
    if not isinstance(ceremony_id, str) or not _ID.fullmatch(ceremony_id):
        raise InvalidInput("ceremony_id", "an id from StartKeyFormation (c- and 16 hex digits)")
    c = s.store.ceremony(ceremony_id)
    if not caller.principal.may_name(c.spec):
        raise KeyNotFound("ceremony_id", "no such ceremony")
    return c


def approve(s: Services, caller: Caller, ceremony_id: str) -> tuple[Ceremony, StoredKey | None]:
    """The second officer's step; forms the key if every component is already in."""
    c = _live(s, caller, ceremony_id)
    c = s.store.approve_ceremony(ceremony_id, caller.principal.name,
                                 _event(caller, "ceremony.approve", c, started_by=c.started_by))
    return _form_if_ready(s, caller, c)


def add_component(
    s: Services, caller: Caller, ceremony_id: str, wrapped: bytes, kcv: bytes
) -> tuple[Ceremony, StoredKey | None]:
    """One custodian's component, checked against its KCV inside the backend before it is kept."""
    c = _live(s, caller, ceremony_id)
    if any(who == caller.principal.name for who, _ in c.components):
        raise PermissionDenied("ceremony_id", "dual control: one component per custodian")
    # A principal both manager and custodian would otherwise be two of the ceremony's controls.
    # Checked here before the backend's work, and again in the store's transaction (a race with approve).
    if caller.principal.name in (c.started_by, c.approved_by):
        raise PermissionDenied("ceremony_id", SEPARATION)
    ctk = _transport(s, c)
    try:
        s.backend.execute(CheckComponent(ctk=ctk.cryptogram, algorithm=c.spec.algorithm, wrapped=wrapped,
                                         kcv=kcv))
    except Exception as e:
        # A refused component is audited too: repeated refusals are worth an officer's look.
        s.store.audit(_event(caller, "ceremony.component_refused", c, reason=type(e).__name__,
                             kcv=bytes(kcv[:8]).hex().upper() if isinstance(kcv, bytes) else ""))
        raise
    c = s.store.add_ceremony_component(
        ceremony_id, caller.principal.name, wrapped, kcv,
        _event(caller, "ceremony.component", c, position=str(len(c.components) + 1), kcv=kcv.hex().upper()))
    return _form_if_ready(s, caller, c)


def cancel(s: Services, caller: Caller, ceremony_id: str, reason: str) -> Ceremony:
    if len(reason) > 200:
        raise InvalidInput("reason", "at most 200 characters")
    c = get(s, caller, ceremony_id)
    s.store.close_ceremony(ceremony_id, CeremonyState.CANCELLED,
                           _event(caller, "ceremony.cancel", c, reason=reason), expired_ok=True)
    return s.store.ceremony(ceremony_id)


def _form_if_ready(s: Services, caller: Caller, c: Ceremony) -> tuple[Ceremony, StoredKey | None]:
    if not c.ready:
        return c, None
    ctk = _transport(s, c)
    cryptogram, kcvs = s.backend.execute(FormKeyWrapped(spec=c.spec, ctk=ctk.cryptogram,
                                                        parts=s.store.ceremony_parts(c.ceremony_id)))
    now = datetime.now(timezone.utc)
    key = StoredKey(cryptogram, KeyState.ACTIVE, now, c.alias, now, None, 0, None, None, c.legacy_types,
                    c.legacy_form)
    extra = {
        "started_by": c.started_by, "approved_by": c.approved_by or "",
        "custodians": ",".join(who for who, _ in c.components),
        "kcv": cryptogram.kcv.hex().upper(),
        **{f"component_{i + 1}_kcv": k.hex().upper() for i, k in enumerate(kcvs)},
    }
    if c.legacy_types:
        extra["legacy_types"] = ",".join(sorted(t.value for t in c.legacy_types))
        extra["legacy_form"] = c.legacy_form.value
    try:
        s.store.close_ceremony(c.ceremony_id, CeremonyState.FORMED, _event(caller, "key.form", c, **extra), key)
    except KeyStateError:
        # Another custodian's call formed it first.
        c = s.store.ceremony(c.ceremony_id)
        return c, s.store.get(c.spec.key_id, c.spec.version) if c.state is CeremonyState.FORMED else None
    return s.store.ceremony(c.ceremony_id), key
