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

import base64
import dataclasses
import hashlib
import struct
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Final, Mapping, Protocol, Sequence

from hsmsvc.crypto import _compare
from hsmsvc.errors import InvalidInput, KeyNotFound, KeyStateError, VerificationFailed
from hsmsvc.hsm.backend import KeySpec
from hsmsvc.hsm.policy import Operation
from hsmsvc.keys.hierarchy import require_legacy_opt_in
from hsmsvc.keys.model import NAME, AuditEvent, KeyRef, StoredKey, SyncState
from hsmsvc.service.context import Caller, Services
from hsmsvc.types import Algorithm, Exportability, KeyState, KeyType, KeyUsage, ModeOfUse

__all__ = [
    "Confirmation",
    "Courier",
    "NoticeKey",
    "KeyChangeNotice",
    "Rotation",
    "SyncSettings",
    "WorkingKey",
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


_DEFAULT_KEYS: Final = (
    WorkingKey(KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION, ModeOfUse.ENCRYPT_DECRYPT),
    WorkingKey(KeyType.MAK, Algorithm.TDES_2KEY, KeyUsage.MAC_ISO9797_ALG3, ModeOfUse.MAC_GENERATE_VERIFY),
    WorkingKey(KeyType.DEK, Algorithm.AES_128, KeyUsage.DATA, ModeOfUse.ENCRYPT_DECRYPT),
)


@dataclass(frozen=True)
class NoticeKey:
    key_id: str
    version: int
    key_type: KeyType
    algorithm: Algorithm
    usage: KeyUsage
    mode_of_use: ModeOfUse
    wrapped: bytes
    kcv: bytes


@dataclass(frozen=True)
class KeyChangeNotice:
    zone: str
    sequence: int
    issued_at: datetime
    activate_at: datetime
    grace: timedelta
    keys: tuple[NoticeKey, ...]
    mac: bytes = b""

    def signed_bytes(self) -> bytes:
        """The canonical, length-prefixed encoding the MAC covers (not the protobuf bytes)."""
        out = [b"hsmsvc-kc-notice/1", _str(self.zone), struct.pack(">QqqQI", self.sequence, _us(self.issued_at),
               _us(self.activate_at), int(self.grace.total_seconds()), len(self.keys))]
        for k in self.keys:
            out += [_str(k.key_id), struct.pack(">I", k.version), _str(k.key_type.value), _str(k.algorithm.value),
                    _str(k.usage.value), _str(k.mode_of_use.value), _bytes(k.wrapped), _bytes(k.kcv)]
        return b"".join(out)


@dataclass(frozen=True)
class Confirmation:
    zone: str
    sequence: int
    kcvs: tuple[bytes, ...]
    mac: bytes = b""

    def signed_bytes(self) -> bytes:
        return b"".join([b"hsmsvc-kc-confirm/1", _str(self.zone), struct.pack(">QI", self.sequence, len(self.kcvs)),
                         *(_bytes(k) for k in self.kcvs)])


class Courier(Protocol):
    """Carries a notice to the zone's peer and brings back its confirmation (peer-to-peer mode)."""

    def deliver(self, notice: KeyChangeNotice) -> Confirmation: ...


def _str(s: str) -> bytes:
    return _bytes(s.encode())


def _bytes(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def _us(t: datetime) -> int:
    return int(t.timestamp() * 1_000_000)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _encode(obj: KeyChangeNotice | Confirmation) -> str:
    """How a notice or confirmation is kept in the sync row, to answer a retry identically:
    its signed bytes and its MAC, which are the whole message."""
    return base64.b64encode(_bytes(obj.signed_bytes()) + obj.mac).decode()


def _zmk(s: Services, caller: Caller, zone: str, field: str) -> StoredKey:
    """The zone's ZMK at this site: the newest usable ZMK whose zone is ``zone``."""
    if not zone:
        raise InvalidInput(field, "required")
    found = [k for k in s.store.list_keys(KeyType.ZMK, zone, limit=1000) if k.state is KeyState.ACTIVE]
    if not found:
        raise KeyNotFound(field, "this site has no ZMK for the zone")
    zmk = max(found, key=lambda k: k.version)
    caller.principal.require_key(zmk, field)
    return s.manager(caller).check_use(zmk, Operation.KEY_SYNC_MAC)


def _mac(s: Services, zmk: StoredKey, obj: KeyChangeNotice | Confirmation) -> bytes:
    return s.backend.key_sync_mac(zmk.cryptogram, obj.signed_bytes())


def _verify(s: Services, zmk: StoredKey, obj: KeyChangeNotice | Confirmation, field: str) -> None:
    if not _compare.bytes_eq(_mac(s, zmk, obj), obj.mac):
        raise VerificationFailed(field, "does not verify under the zone's ZMK")


def _digest(obj: KeyChangeNotice | Confirmation) -> str:
    return hashlib.sha256(obj.signed_bytes()).hexdigest()


def _limits(s: SyncSettings, key_type: KeyType, start: datetime) -> tuple[datetime | None, int | None]:
    r = s.rotation.get(key_type)
    if r is None:
        return None, None
    return (start + 2 * r.max_age if r.max_age else None), r.max_uses


def _retire(versions: Sequence[StoredKey], new_version: int, at: datetime) -> list[tuple[str, int, datetime]]:
    """Older usable versions end their service at ``at`` (the grace window's end)."""
    return [(k.key_id, k.version, at) for k in versions if k.version < new_version and k.state is KeyState.ACTIVE]


# -- core ------------------------------------------------------------------------------


def start_key_change(
    s: Services,
    caller: Caller,
    settings: SyncSettings,
    zone: str,
    key_types: Sequence[KeyType] = (),
    courier: Courier | None = None,
) -> tuple[KeyChangeNotice, bool]:
    """Make the zone's next key versions (PENDING) and the notice; deliver and confirm if a courier is given.

    A change still awaiting confirmation is returned again, unchanged, so a
    lost notice can be resent without a second change.
    """
    zmk = _zmk(s, caller, zone, "zone")
    state = s.store.sync_state(zone, "core")
    if state is not None and state.state == "SENT":
        notice = _decode_notice(state.detail)
    else:
        notice = _new_notice(s, caller, settings, zmk, zone, key_types, state)
    if courier is None:
        return notice, False
    confirm_key_change(s, caller, settings, courier.deliver(notice))
    return notice, True


def _new_notice(
    s: Services, caller: Caller, settings: SyncSettings, zmk: StoredKey, zone: str,
    key_types: Sequence[KeyType], state: SyncState | None,
) -> KeyChangeNotice:
    wanted = [w for w in _DEFAULT_KEYS if not key_types or w.key_type in key_types]
    if key_types and len(wanted) != len(set(key_types)):
        raise InvalidInput("key_types", "ZPK, MAK or DEK")
    now = _now()
    activate = now + settings.activate_after
    pending: list[StoredKey] = []
    entries: list[NoticeKey] = []
    for w in wanted:
        key_id = f"{zone}.{w.key_type.value.lower()}"
        versions = s.store.versions(key_id)
        if versions:
            spec = dataclasses.replace(versions[-1].cryptogram.spec, version=versions[-1].version + 1)
        else:
            spec = KeySpec(key_id, 1, w.key_type, w.algorithm, w.usage, w.mode_of_use,
                           Exportability.EXPORTABLE, zone)
        require_legacy_opt_in(zmk, spec.key_type)
        c = s.backend.generate_key(spec)
        expires, max_uses = _limits(settings, spec.key_type, activate)
        key = StoredKey(c, KeyState.PENDING, now, versions[-1].alias if versions else None, None, expires,
                        0, max_uses, activate)
        caller.principal.require_key(key, "zone")
        wrapped = s.backend.export_key(zmk.cryptogram, c)
        pending.append(key)
        entries.append(NoticeKey(key_id, spec.version, spec.key_type, spec.algorithm, spec.usage,
                                 spec.mode_of_use, wrapped, c.kcv))
    seq = (state.sequence if state else 0) + 1
    notice = KeyChangeNotice(zone, seq, now, activate, settings.grace, tuple(entries))
    notice = dataclasses.replace(notice, mac=_mac(s, zmk, notice))
    row = SyncState(zone, "core", seq, "SENT", _digest(notice), _encode(notice), now)
    s.store.change_keys(
        AuditEvent(caller.principal.name, "keysync.start", None, None, _audit(notice, zmk)),
        add=pending, sync=(row, state.sequence if state else 0),
    )
    return notice


def confirm_key_change(s: Services, caller: Caller, settings: SyncSettings, conf: Confirmation) -> list[StoredKey]:
    """Check the branch's confirmation and activate the new versions at the notice's time."""
    zmk = _zmk(s, caller, conf.zone, "confirmation.zone")
    _verify(s, zmk, conf, "confirmation.mac")
    state = s.store.sync_state(conf.zone, "core")
    if state is None or state.sequence != conf.sequence:
        raise KeyStateError("confirmation.sequence", "no key change with this sequence awaits confirmation")
    notice = _decode_notice(state.detail)
    if state.state == "SENT":
        want = tuple(k.kcv for k in notice.keys)
        if len(want) != len(conf.kcvs) or not all(_compare.bytes_eq(a, b) for a, b in zip(want, conf.kcvs)):
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
    return [s.store.get(k.key_id, k.version) for k in notice.keys]


# -- branch ----------------------------------------------------------------------------


def apply_key_change(s: Services, caller: Caller, settings: SyncSettings, notice: KeyChangeNotice) -> Confirmation:
    """Verify a notice, take its keys under this site's LMK, and confirm with their KCVs."""
    zmk = _zmk(s, caller, notice.zone, "notice.zone")
    _verify(s, zmk, notice, "notice.mac")
    state = s.store.sync_state(notice.zone, "branch")
    last = state.sequence if state else 0
    if state is not None and notice.sequence == last and state.digest == _digest(notice):
        return _decode_confirmation(state.detail)  # the same notice again: the same answer
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
        try:
            c = s.backend.import_key(zmk.cryptogram, k.wrapped, spec, k.kcv)
        except VerificationFailed:
            raise VerificationFailed(f"notice.keys[{i}].kcv", "does not match the key received") from None
        expires, max_uses = _limits(settings, k.key_type, notice.activate_at)
        older = s.store.versions(k.key_id)
        key = StoredKey(c, KeyState.ACTIVE, now, older[-1].alias if older else None, notice.activate_at, expires,
                        0, max_uses, notice.activate_at)
        caller.principal.require_key(key, "notice.zone")
        added.append(key)
        expire += _retire(older, k.version, notice.activate_at + notice.grace)
    conf = Confirmation(notice.zone, notice.sequence, tuple(k.cryptogram.kcv for k in added))
    conf = dataclasses.replace(conf, mac=_mac(s, zmk, conf))
    row = SyncState(notice.zone, "branch", notice.sequence, "APPLIED", _digest(notice), _encode(conf), now)
    s.store.change_keys(
        AuditEvent(caller.principal.name, "keysync.apply", None, None, _audit(notice, zmk)),
        add=added, expire=expire, sync=(row, last),
    )
    return conf


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
    for key_type, usage, mode in (
        (KeyType.TPK, KeyUsage.PIN_ENCRYPTION, ModeOfUse.ENCRYPT_DECRYPT),
        (KeyType.TAK, KeyUsage.MAC_ISO9797_ALG3, ModeOfUse.MAC_GENERATE_VERIFY),
    ):
        key_id = f"{terminal}.{key_type.value.lower()}"
        versions = s.store.versions(key_id)
        spec = KeySpec(key_id, (versions[-1].version + 1) if versions else 1, key_type, Algorithm.TDES_2KEY,
                       usage, mode, Exportability.EXPORTABLE, tmk.cryptogram.spec.zone)
        require_legacy_opt_in(tmk, key_type)
        c = s.backend.generate_key(spec)
        expires, max_uses = _limits(settings, key_type, now)
        key = StoredKey(c, KeyState.ACTIVE, now, None, now, expires, 0, max_uses)
        caller.principal.require_key(key, "terminal_id")
        out.append((key, s.backend.export_key(tmk.cryptogram, c)))
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


# -- keeping messages in the sync row ------------------------------------------------------


def _decode_notice(detail: str) -> KeyChangeNotice:
    signed, mac = _unframe(detail)
    return parse_notice(signed, mac)


def _decode_confirmation(detail: str) -> Confirmation:
    signed, mac = _unframe(detail)
    return parse_confirmation(signed, mac)


def _unframe(detail: str) -> tuple[bytes, bytes]:
    raw = base64.b64decode(detail)
    (n,) = struct.unpack(">I", raw[:4])
    return raw[4 : 4 + n], raw[4 + n :]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("short")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def bytes_(self) -> bytes:
        (n,) = struct.unpack(">I", self.take(4))
        return self.take(n)

    def str_(self) -> str:
        return self.bytes_().decode()


def parse_notice(signed: bytes, mac: bytes) -> KeyChangeNotice:
    """Inverse of :meth:`KeyChangeNotice.signed_bytes` (for the sync row only)."""
    r = _Reader(signed)
    if r.take(18) != b"hsmsvc-kc-notice/1":
        raise ValueError("tag")
    zone = r.str_()
    seq, issued, activate, grace, n = struct.unpack(">QqqQI", r.take(36))
    keys = []
    for _ in range(n):
        key_id = r.str_()
        (version,) = struct.unpack(">I", r.take(4))
        keys.append(NoticeKey(key_id, version, KeyType(r.str_()), Algorithm(r.str_()), KeyUsage(r.str_()),
                              ModeOfUse(r.str_()), r.bytes_(), r.bytes_()))
    return KeyChangeNotice(zone, seq, _dt(issued), _dt(activate), timedelta(seconds=grace), tuple(keys), mac)


def parse_confirmation(signed: bytes, mac: bytes) -> Confirmation:
    r = _Reader(signed)
    if r.take(19) != b"hsmsvc-kc-confirm/1":
        raise ValueError("tag")
    zone = r.str_()
    seq, n = struct.unpack(">QI", r.take(12))
    return Confirmation(zone, seq, tuple(r.bytes_() for _ in range(n)), mac)


def _dt(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, timezone.utc)
