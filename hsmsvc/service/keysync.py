"""Key change between sites (bank design 004 clause 7.1), and terminal sign-on.

Each site has its own LMK and shares a ZMK per zone with its peer. The core
starts a change: it makes new versions of the zone's working keys (PENDING),
wraps them under the ZMK and sends a notice MACed under a key derived from
that ZMK. The branch verifies the notice, imports the keys under its own LMK,
checks every KCV and answers with a MACed confirmation; only then does the core
make anything under the new versions. Both sites switch at the notice's
activation time; the previous version stays usable, when a request names it,
for the grace window. A confirmation that comes late changes nothing for the
branch's traffic: from the activation time the core reads what the branch
made under a new version it names, confirmed or not (``KeyManager.check_use``).

Notices carry a per-zone sequence: the branch applies exactly the next one; the
same notice again (a retry) gets the same confirmation; an older, replayed or
out-of-order notice is refused and changes nothing. Every step is one store
transaction with its audit row.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Final, Mapping, Protocol, Sequence

from hsmsvc.crypto import compare
from hsmsvc.errors import (
    BackendUnavailable, HsmsvcError, InvalidInput, KeyNotFound, KeyStateError, PermissionDenied, VerificationFailed,
)
from hsmsvc.hsm.commands import ExportKey, GenerateKey, ImportKey, KeySyncMac
from hsmsvc.hsm.model import KeySpec
from hsmsvc.hsm.policy import Operation
from hsmsvc.keys.store.bindings import UNTYPED_FORMS
from hsmsvc.keys.hierarchy import require_legacy_opt_in
from hsmsvc.keys.model import NAME, AuditEvent, KeyRef, StoredKey, SyncState
from hsmsvc.service.context import Caller, Services
from hsmsvc.service.keys import may_create
from hsmsvc.service.syncmessages import (
    Acknowledgement,
    Confirmation,
    KeyChangeNotice,
    NoticeKey,
    decode_confirmation,
    decode_notice,
    digest,
    encode,
)
from hsmsvc.types import Algorithm, Exportability, KeyState, KeyType, KeyUsage, ModeOfUse

log = logging.getLogger("hsmsvc.keysync")

__all__ = [
    "Acknowledgement",
    "Confirmation",
    "Courier",
    "Delivery",
    "NoticeKey",
    "KeyChangeNotice",
    "Rotation",
    "SyncSettings",
    "WorkingKey",
    "acknowledge_key_change",
    "apply_key_change",
    "confirm_key_change",
    "sign_on",
    "start_key_change",
]


@dataclass(frozen=True)
class Rotation:
    """When a key type's versions are replaced: age or uses; use stops at twice either."""

    max_age: timedelta | None
    max_uses: int | None
    peak_uses_per_second: float | None = None
    """The busiest rate the bank expects for one version, if it says: lets start-up refuse a
    ``max_uses`` that no replacement could keep up with (``service/rotation.py``)."""


# Terminal keys: the MDS rule of 004 clause 7.1.1 (12 hours or 2,500 uses);
# zone keys: 12 hours and a use count the bank sets.
DEFAULT_ROTATION: Final[Mapping[KeyType, Rotation]] = {
    KeyType.TPK: Rotation(timedelta(hours=12), 2500),
    KeyType.TAK: Rotation(timedelta(hours=12), 2500),
    KeyType.ZPK: Rotation(timedelta(hours=12), 1_000_000),
    KeyType.MAK: Rotation(timedelta(hours=12), 1_000_000),
    KeyType.DEK: Rotation(timedelta(hours=12), 1_000_000),
}


@dataclass(frozen=True)
class SyncSettings:
    activate_after: timedelta = timedelta(seconds=30)
    grace: timedelta = timedelta(minutes=5)
    notice_max_age: timedelta = timedelta(hours=1)
    rotation_margin: timedelta = timedelta(seconds=5)
    """Time allowed, beyond a change's activation delay, for its making and delivery: a version
    is replaced when the uses expected within this lead would take it to ``max_uses``."""
    rotation: Mapping[KeyType, Rotation] = dataclasses.field(default_factory=lambda: dict(DEFAULT_ROTATION))


@dataclass(frozen=True)
class WorkingKey:
    """A working key a change makes, when the zone has none of that type yet."""

    key_type: KeyType
    algorithm: Algorithm
    usage: KeyUsage
    mode_of_use: ModeOfUse


_CHANGED: Final = frozenset({KeyType.ZPK, KeyType.MAK, KeyType.DEK})
"""The key types a key change carries."""

_DEFAULT_KEYS: Final = (
    WorkingKey(KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION, ModeOfUse.ENCRYPT_DECRYPT),
    WorkingKey(KeyType.MAK, Algorithm.TDES_2KEY, KeyUsage.MAC_ISO9797_ALG3, ModeOfUse.MAC_GENERATE_VERIFY),
    WorkingKey(KeyType.DEK, Algorithm.AES_128, KeyUsage.DATA, ModeOfUse.ENCRYPT_DECRYPT),
)
# Under an SM4 ZMK the zone's first keys are SM4 (GB/T 39786: the national suite end to end): the
# MAC key computes ISO/IEC 9797-1 MAC algorithm 1 with SM4, the CBC-MAC of the PBOC and UnionPay
# SM4 MACs (the SM4 counterpart of the retail MAC a TDES zone gets).
_SM4_KEYS: Final = (
    WorkingKey(KeyType.ZPK, Algorithm.SM4, KeyUsage.PIN_ENCRYPTION, ModeOfUse.ENCRYPT_DECRYPT),
    WorkingKey(KeyType.MAK, Algorithm.SM4, KeyUsage.MAC_ISO9797_ALG1, ModeOfUse.MAC_GENERATE_VERIFY),
    WorkingKey(KeyType.DEK, Algorithm.SM4, KeyUsage.DATA, ModeOfUse.ENCRYPT_DECRYPT),
)
# A terminal's keys at sign-on, by its TMK's family: (type, usage, mode).
_TERMINAL_KEYS: Final = (
    (KeyType.TPK, KeyUsage.PIN_ENCRYPTION, ModeOfUse.ENCRYPT_DECRYPT),
    (KeyType.TAK, KeyUsage.MAC_ISO9797_ALG3, ModeOfUse.MAC_GENERATE_VERIFY),
)
_SM4_TERMINAL_KEYS: Final = (
    (KeyType.TPK, KeyUsage.PIN_ENCRYPTION, ModeOfUse.ENCRYPT_DECRYPT),
    (KeyType.TAK, KeyUsage.MAC_ISO9797_ALG1, ModeOfUse.MAC_GENERATE_VERIFY),
)


class Courier(Protocol):
    """Carries a notice to the zone's peer and brings back its confirmation (peer-to-peer mode),
    then carries the core's acknowledgement of that confirmation."""

    def deliver(self, notice: KeyChangeNotice) -> Confirmation: ...

    def acknowledge(self, ack: Acknowledgement) -> None: ...


def _now() -> datetime:
    return datetime.now(timezone.utc)


_NO_ZMK: Final = "this site has no ZMK for the zone"


def _zmk(s: Services, caller: Caller, zone: str, field: str) -> StoredKey:
    """The zone's ZMK at this site: the newest usable ZMK whose zone is ``zone``."""
    if not zone:
        raise InvalidInput(field, "required")
    found = [k for k in s.store.list_keys(KeyType.ZMK, zone, limit=1000) if k.state is KeyState.ACTIVE]
    if not found:
        raise KeyNotFound(field, _NO_ZMK)
    zmk = max(found, key=lambda k: k.version)
    # A ZMK outside the caller's patterns answers as no ZMK at all.
    caller.principal.require_key(zmk, field, absent=_NO_ZMK)
    s.mode.require_key(zmk.cryptogram.spec.algorithm, field)
    return s.manager(caller).check_use(zmk, Operation.KEY_SYNC_MAC)


_Message = KeyChangeNotice | Confirmation | Acknowledgement


def _mac(s: Services, zmk: StoredKey, obj: _Message) -> bytes:
    return s.backend.execute(KeySyncMac(kek=zmk.cryptogram, data=obj.signed_bytes()))


def _verify(s: Services, zmk: StoredKey, obj: _Message, field: str) -> None:
    if not compare.bytes_eq(_mac(s, zmk, obj), obj.mac):
        raise VerificationFailed(field, "does not verify under the zone's ZMK")


def _limits(s: SyncSettings, key_type: KeyType, start: datetime) -> tuple[datetime | None, int | None]:
    r = s.rotation.get(key_type)
    if r is None:
        return None, None
    return (start + 2 * r.max_age if r.max_age else None), r.max_uses


def _retire(versions: Sequence[StoredKey], new_version: int, at: datetime) -> list[tuple[str, int, datetime]]:
    """Older usable versions end their service at ``at`` (the grace window's end)."""
    return [(k.key_id, k.version, at) for k in versions if k.version < new_version and k.state is KeyState.ACTIVE]


# -- core ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """How a notice's delivery to the zone's peer went."""

    confirmed: bool
    error: str = ""
    """Why it was not confirmed: the peer's fault, never the caller's, so not a status of the call."""


def start_key_change(
    s: Services,
    caller: Caller,
    *,
    settings: SyncSettings,
    zone: str,
    key_types: Sequence[KeyType] = (),
    courier: Courier | None = None,
) -> tuple[KeyChangeNotice, Delivery]:
    """Make the zone's next key versions (PENDING) and the notice; deliver and confirm if a courier is given.

    A change still awaiting confirmation is returned again, unchanged, so a
    lost notice can be resent without a second change. A delivery that fails
    leaves the change made and awaiting confirmation, and says why: the call
    itself succeeded, and a client that retried it as UNAVAILABLE would only
    wait on the peer again.
    """
    zmk = _zmk(s, caller, zone, "zone")
    state = s.store.sync_state(zone, "core")
    if state is not None and state.state == "SENT":
        notice = decode_notice(state.detail)
    else:
        notice = _new_notice(s, caller, settings=settings, zmk=zmk, zone=zone, key_types=key_types, state=state)
    if courier is None:
        return notice, Delivery(False)
    try:
        _, ack = confirm_key_change(s, caller, settings, courier.deliver(notice))
    except (BackendUnavailable, VerificationFailed, InvalidInput) as e:
        # Unreachable, timed out or refused by the peer, or its confirmation failed our checks.
        log.warning("key change not confirmed by the peer",
                    extra={"zone": zone, "sequence": notice.sequence, "error": str(e)})
        return notice, Delivery(False, str(e))
    try:
        courier.acknowledge(ack)
    except HsmsvcError as e:
        # Confirmed here whatever becomes of it: the branch keeps reading the previous versions
        # until an acknowledgement or the next notice reaches it, or their life ends.
        log.warning("key change acknowledgement not delivered", extra={"zone": zone, "error": str(e)})
    return notice, Delivery(True)


def _new_notice(
    s: Services, caller: Caller, *, settings: SyncSettings, zmk: StoredKey, zone: str,
    key_types: Sequence[KeyType], state: SyncState | None,
) -> KeyChangeNotice:
    # The working keys follow the ZMK's family: SM4 under an SM4 ZMK, never a silent fallback.
    family = _SM4_KEYS if zmk.cryptogram.spec.algorithm is Algorithm.SM4 else _DEFAULT_KEYS
    wanted = [w for w in family if not key_types or w.key_type in key_types]
    if key_types and len(wanted) != len(set(key_types)):
        raise InvalidInput("key_types", "ZPK, MAK or DEK")
    now = _now()
    activate = now + settings.activate_after
    pending: list[StoredKey] = []
    entries: list[NoticeKey] = []
    for w in wanted:
        key_id = f"{zone}.{w.key_type.value.lower()}"
        versions = s.store.versions(key_id)
        if versions and versions[-1].cryptogram.spec.zone != zone:
            raise PermissionDenied("zone", f"{key_id} belongs to another zone")
        if versions:
            spec = dataclasses.replace(versions[-1].cryptogram.spec, version=versions[-1].version + 1)
        else:
            spec = KeySpec(key_id, 1, w.key_type, w.algorithm, w.usage, w.mode_of_use,
                           Exportability.EXPORTABLE, zone)
        require_legacy_opt_in(zmk, spec.key_type)
        s.mode.require_key(spec.algorithm, "key_types")
        c = s.backend.execute(GenerateKey(spec=spec))
        expires, max_uses = _limits(settings, spec.key_type, activate)
        key = StoredKey(c, KeyState.PENDING, now, versions[-1].alias if versions else None, None, expires,
                        0, max_uses, activate)
        caller.principal.require_create(spec, "zone")
        wrapped = s.backend.execute(ExportKey(kek=zmk.cryptogram, key=c, form=zmk.legacy_form))
        pending.append(key)
        entries.append(NoticeKey(key_id, spec.version, spec.key_type, spec.algorithm, spec.usage,
                                 spec.mode_of_use, wrapped, c.kcv))
    seq = (state.sequence if state else 0) + 1
    notice = KeyChangeNotice(zone, seq, now, activate, settings.grace, tuple(entries))
    notice = dataclasses.replace(notice, mac=_mac(s, zmk, notice))
    row = SyncState(zone, "core", seq, "SENT", digest(notice), encode(notice), now)
    s.store.change_keys(
        AuditEvent(caller.principal.name, "keysync.start", None, None, _audit(notice, zmk)),
        add=pending, sync=(row, state.sequence if state else 0),
    )
    return notice


def confirm_key_change(
    s: Services, caller: Caller, settings: SyncSettings, conf: Confirmation
) -> tuple[list[StoredKey], Acknowledgement]:
    """Check the branch's confirmation and activate the new versions at the notice's time.

    The answer's acknowledgement, carried back to the branch, tells it this
    site now makes under the new versions only, so the previous ones' grace
    may end there too. The same confirmation again gets the same answer.
    """
    zmk = _zmk(s, caller, conf.zone, "confirmation.zone")
    _verify(s, zmk, conf, "confirmation.mac")
    state = s.store.sync_state(conf.zone, "core")
    if state is None or state.sequence != conf.sequence:
        raise KeyStateError("confirmation.sequence", "no key change with this sequence awaits confirmation")
    notice = decode_notice(state.detail)
    if state.state == "SENT":
        for k in notice.keys:  # a change sent before the mode was set activates nothing under it
            s.mode.require_key(k.algorithm, "confirmation")
        want = tuple(k.kcv for k in notice.keys)
        if len(want) != len(conf.kcvs) or not all(compare.bytes_eq(a, b) for a, b in zip(want, conf.kcvs)):
            raise VerificationFailed("confirmation.kcvs", "do not match the keys sent")
        # The core made its own answers under the previous versions until now, not only until
        # the activation time: they end a grace window after whichever is later.
        end = max(notice.activate_at, _now()) + notice.grace
        expire = [x for k in notice.keys for x in _retire(s.store.versions(k.key_id), k.version, end)]
        row = dataclasses.replace(state, state="CONFIRMED")
        s.store.change_keys(
            AuditEvent(caller.principal.name, "keysync.confirm", None, None, _audit(notice, zmk)),
            activate=[(k.key_id, k.version, notice.activate_at) for k in notice.keys],
            expire=expire, sync=(row, state.sequence),
        )
    ack = Acknowledgement(conf.zone, conf.sequence)
    ack = dataclasses.replace(ack, mac=_mac(s, zmk, ack))
    return [s.store.get(k.key_id, k.version) for k in notice.keys], ack


# -- branch ----------------------------------------------------------------------------


def apply_key_change(s: Services, caller: Caller, settings: SyncSettings, notice: KeyChangeNotice) -> Confirmation:
    """Verify a notice, take its keys under this site's LMK, and confirm with their KCVs."""
    zmk = _zmk(s, caller, notice.zone, "notice.zone")
    _verify(s, zmk, notice, "notice.mac")
    state = s.store.sync_state(notice.zone, "branch")
    last = state.sequence if state else 0
    if state is not None and notice.sequence == last and state.digest == digest(notice):
        return decode_confirmation(state.detail)  # the same notice again: the same answer
    if notice.sequence <= last:
        raise KeyStateError("notice.sequence", f"replayed or stale (this site has applied {last})")
    if notice.sequence != last + 1:
        raise KeyStateError("notice.sequence", f"out of order (this site expects {last + 1})")
    now = _now()
    if notice.issued_at < now - settings.notice_max_age or notice.issued_at > now + timedelta(minutes=5):
        raise KeyStateError("notice.issue_time", "stale, or from the future")
    if notice.activate_at < notice.issued_at or not notice.keys:
        raise InvalidInput("notice", "activation before issue, or no keys")
    added: list[StoredKey] = []
    expire: list[tuple[str, int, datetime]] = []
    for i, k in enumerate(notice.keys):
        spec = KeySpec(k.key_id, k.version, k.key_type, k.algorithm, k.usage, k.mode_of_use,
                       Exportability.NON_EXPORTABLE, notice.zone)
        require_legacy_opt_in(zmk, spec.key_type)
        s.mode.require_key(spec.algorithm, "notice.keys")
        may_create(s, caller, spec, "notice.zone")
        try:
            c = s.backend.execute(ImportKey(kek=zmk.cryptogram, wrapped=k.wrapped, spec=spec, kcv=k.kcv,
                                            form=zmk.legacy_form))
        except VerificationFailed:
            raise VerificationFailed(f"notice.keys[{i}].kcv", "does not match the key received") from None
        expires, max_uses = _limits(settings, k.key_type, notice.activate_at)
        older = s.store.versions(k.key_id)
        key = StoredKey(c, KeyState.ACTIVE, now, older[-1].alias if older else None, notice.activate_at, expires,
                        0, max_uses, notice.activate_at)
        added.append(key)
        # Versions older than the one this notice replaces were replaced by a change the core has
        # confirmed (it starts no change before the last is confirmed): their grace runs from this
        # activation. The one it replaces stays readable, for what the core makes under it until
        # it has the confirmation, until the acknowledgement comes (or its life ends).
        expire += _retire(older, older[-1].version if older else 0, notice.activate_at + notice.grace)
    conf = Confirmation(notice.zone, notice.sequence, tuple(k.cryptogram.kcv for k in added))
    conf = dataclasses.replace(conf, mac=_mac(s, zmk, conf))
    row = SyncState(notice.zone, "branch", notice.sequence, "APPLIED", digest(notice), encode(conf), now)
    s.store.change_keys(
        AuditEvent(caller.principal.name, "keysync.apply", None, None, _audit(notice, zmk)),
        add=added, expire=expire, sync=(row, last), one_binding=zmk.legacy_form in UNTYPED_FORMS,
    )
    return conf


def acknowledge_key_change(s: Services, caller: Caller, settings: SyncSettings,
                           ack: Acknowledgement) -> list[StoredKey]:
    """The core has this site's confirmation: the versions the change replaced end a grace window
    after the later of its activation and now. Returns those versions."""
    zmk = _zmk(s, caller, ack.zone, "acknowledgement.zone")
    _verify(s, zmk, ack, "acknowledgement.mac")
    state = s.store.sync_state(ack.zone, "branch")
    if state is None or ack.sequence != state.sequence:
        # An older change's acknowledgement is moot: the newer notice ended that grace already.
        raise KeyStateError("acknowledgement.sequence", "not the key change this site applied last")
    keys = [k for k in s.store.list_keys(None, ack.zone, limit=1000)
            if k.cryptogram.spec.key_type in _CHANGED and k.state is KeyState.ACTIVE]
    newest: dict[str, StoredKey] = {}
    for k in keys:
        if k.key_id not in newest or k.version > newest[k.key_id].version:
            newest[k.key_id] = k
    now = _now()
    expire: list[tuple[str, int, datetime]] = []
    for key_id, top in newest.items():
        end = max(top.activates_at or now, now) + settings.grace
        expire += _retire([k for k in keys if k.key_id == key_id], top.version, end)
    if state.state != "ACKNOWLEDGED":
        row = dataclasses.replace(state, state="ACKNOWLEDGED")
        s.store.change_keys(
            AuditEvent(caller.principal.name, "keysync.acknowledge", None, None,
                       (("zone", ack.zone), ("sequence", str(ack.sequence)), ("zmk", f"{zmk.key_id} v{zmk.version}"),
                        ("ends", ",".join(f"{k} v{v} at {t.isoformat()}" for k, v, t in expire)))),
            expire=expire, sync=(row, state.sequence),
        )
    return [s.store.get(k, v) for k, v, _ in expire]


# -- terminals ---------------------------------------------------------------------------


def sign_on(
    s: Services, caller: Caller, settings: SyncSettings, tmk_ref: KeyRef, terminal: str
) -> list[tuple[StoredKey, bytes]]:
    """A terminal's next TPK and TAK, active now, each wrapped under its TMK (with its KCV)."""
    if not NAME.fullmatch(terminal) or len(terminal) > 60:
        raise InvalidInput("terminal_id", "1-60 of A-Z a-z 0-9 . _ : -")
    tmk = s.key(caller, tmk_ref, Operation.KEY_EXPORT_UNDER, "tmk")
    if tmk.cryptogram.spec.key_type is not KeyType.TMK:
        raise InvalidInput("tmk", "a TMK")
    now = _now()
    out: list[tuple[StoredKey, bytes]] = []
    added: list[StoredKey] = []
    expire: list[tuple[str, int, datetime]] = []
    # A terminal's first keys follow its TMK's family (SM4 under an SM4 TMK, two-key TDES otherwise);
    # its next versions keep their own algorithm and usage, which the terminal's software expects.
    sm4 = tmk.cryptogram.spec.algorithm is Algorithm.SM4
    for key_type, usage, mode in _SM4_TERMINAL_KEYS if sm4 else _TERMINAL_KEYS:
        key_id = f"{terminal}.{key_type.value.lower()}"
        versions = s.store.versions(key_id)
        last = versions[-1].cryptogram.spec if versions else None
        spec = KeySpec(key_id, last.version + 1 if last else 1, key_type,
                       last.algorithm if last else Algorithm.SM4 if sm4 else Algorithm.TDES_2KEY,
                       last.usage if last else usage, last.mode_of_use if last else mode,
                       Exportability.EXPORTABLE, tmk.cryptogram.spec.zone)
        require_legacy_opt_in(tmk, key_type)
        # The terminal's name is the caller's: "branch-0002" must not add a version in this
        # TMK's zone to another zone's branch-0002.tpk.
        may_create(s, caller, spec, "terminal_id")
        s.mode.require_key(spec.algorithm, "terminal_id")
        c = s.backend.execute(GenerateKey(spec=spec))
        expires, max_uses = _limits(settings, key_type, now)
        key = StoredKey(c, KeyState.ACTIVE, now, None, now, expires, 0, max_uses)
        out.append((key, s.backend.execute(ExportKey(kek=tmk.cryptogram, key=c, form=tmk.legacy_form))))
        added.append(key)
        expire += _retire(versions, spec.version, now + settings.grace)
    s.store.change_keys(
        AuditEvent(caller.principal.name, "keysync.sign_on", None, None,
                   (("terminal", terminal), ("tmk", f"{tmk.key_id} v{tmk.version}"),
                    *((k.key_id, f"v{k.version} kcv={k.cryptogram.kcv.hex().upper()}") for k in added))),
        add=added, expire=expire,
    )
    return out


def _audit(notice: KeyChangeNotice, zmk: StoredKey) -> tuple[tuple[str, str], ...]:
    return (("zone", notice.zone), ("sequence", str(notice.sequence)), ("zmk", f"{zmk.key_id} v{zmk.version}"),
            ("activate_at", notice.activate_at.isoformat()),
            ("keys", ",".join(f"{k.key_id} v{k.version} kcv={k.kcv.hex().upper()}" for k in notice.keys)))
