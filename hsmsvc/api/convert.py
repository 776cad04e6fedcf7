"""Between protobuf messages and hsmsvc's own types, for the servicers.

The enum tables are in :mod:`hsmsvc.wire` (every conversion through a table,
``*_UNSPECIFIED`` always refused); this module adds the messages, timestamps
and bounded text fields.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Final

from google.protobuf.timestamp_pb2 import Timestamp

from hsmsvc.errors import InvalidInput
from hsmsvc.hsm.model import BlockTemplate, FieldParams, KeySpec, LegacyForm
from hsmsvc.keys.model import KeyRef, StoredKey
from hsmsvc.types import KcvMethod, KeyType
from hsmsvc_client.v1 import data_service_pb2 as data_pb
from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import types_pb2 as pb
# The servicers convert through these; they live below api for client-side tools.
from hsmsvc.wire import (
    ALGORITHM as ALGORITHM,
    CIPHER_MODE as CIPHER_MODE,
    DATA_PADDING as DATA_PADDING,
    EXPORTABILITY as EXPORTABILITY,
    HASH_ALGORITHM as HASH_ALGORITHM,
    KCV_METHOD as KCV_METHOD,
    KEY_STATE as KEY_STATE,
    KEY_TYPE as KEY_TYPE,
    KEY_USAGE as KEY_USAGE,
    MAC_ALGORITHM as MAC_ALGORITHM,
    MAC_PADDING as MAC_PADDING,
    MODE_OF_USE as MODE_OF_USE,
    PIN_FORMAT as PIN_FORMAT,
    EnumTable as EnumTable,
)


_MAX_TEXT: Final = 128
# UNSPECIFIED (0) is LegacyForm.NONE: no legacy form.
LEGACY_FORM: Final = EnumTable(pb.LegacyForm, "LEGACY_FORM_", LegacyForm)


def text(value: str, field: str, limit: int = _MAX_TEXT) -> str:
    """A text field as it may reach the store, logs and audit rows: bounded and printable.

    PostgreSQL refuses a NUL in text, and a control character in an alias or a
    zone would reach log lines and audit rows. ``isprintable`` also refuses the
    other Unicode controls, format and separator characters (the ASCII space is
    allowed): one C call, so a busy caller's PAN costs next to nothing.
    """
    if len(value) > limit:
        raise InvalidInput(field, f"at most {limit} characters")
    if not value.isprintable():
        raise InvalidInput(field, "printable characters only (no control characters)")
    return value


# SQL integer columns are signed 64-bit: SQLite refuses a larger Python int with
# OverflowError, PostgreSQL with "out of range" (uint64 fields go up to 2**64-1).
_MAX_INT64: Final = 2**63 - 1


def uint63(value: int, field: str) -> int:
    """A uint64 field bound for an SQL integer column: 0 to 2**63-1."""
    if value > _MAX_INT64:
        raise InvalidInput(field, f"from 0 to {_MAX_INT64}")
    return value


# google.protobuf.Timestamp's documented range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
_MIN_SECONDS: Final = -62_135_596_800
_MAX_SECONDS: Final = 253_402_300_799


def timestamp(t: Timestamp, field: str) -> datetime:
    """A required Timestamp as an aware UTC datetime; out-of-range seconds or nanos are refused."""
    if t.seconds == 0 and t.nanos == 0:
        raise InvalidInput(field, "required")
    if not _MIN_SECONDS <= t.seconds <= _MAX_SECONDS or not 0 <= t.nanos <= 999_999_999:
        raise InvalidInput(field, "not a valid timestamp (0001-01-01 to 9999-12-31 UTC, nanos 0 to 999999999)")
    value: datetime = t.ToDatetime(tzinfo=timezone.utc)
    return value


# A busy caller names the same few keys on every call: each valid reference is
# checked once and the KeyRef kept (bounded; cleared when full).
_REFS: dict[tuple[str, str, int], KeyRef] = {}
_MAX_REFS: Final = 4096


def key_ref(msg: pb.KeyRef, field: str, has: bool = True) -> KeyRef:
    if not has:
        raise InvalidInput(field, "required")
    ident = (msg.key_id, msg.alias, msg.version)
    ref = _REFS.get(ident)
    if ref is not None:
        return ref
    if msg.WhichOneof("ref") is None:
        raise InvalidInput(field, "a key_id or an alias")
    try:
        ref = KeyRef(text(msg.key_id, f"{field}.key_id", 64), text(msg.alias, f"{field}.alias"), msg.version or None)
    except InvalidInput as e:
        raise InvalidInput(field, e.reason) from None
    if len(_REFS) >= _MAX_REFS:
        _REFS.clear()
    _REFS[ident] = ref
    return ref


def _ts(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    t = Timestamp()
    t.FromDatetime(value)
    return t


def ts(value: datetime) -> Timestamp:
    """A datetime as a Timestamp for a response."""
    t = Timestamp()
    t.FromDatetime(value)
    return t


def key_info(key: StoredKey, *, next_rotation: datetime | None = None) -> pb.KeyInfo:
    s = key.cryptogram.spec
    return pb.KeyInfo(
        key_id=s.key_id,
        version=s.version,
        alias=key.alias or "",
        key_type=KEY_TYPE.to_pb[s.key_type],
        algorithm=ALGORITHM.to_pb[s.algorithm],
        usage=KEY_USAGE.to_pb.get(s.usage, 0),
        mode_of_use=MODE_OF_USE.to_pb.get(s.mode_of_use, 0),
        exportability=EXPORTABILITY.to_pb.get(s.exportability, 0),
        zone=s.zone,
        state=KEY_STATE.to_pb[key.state],
        kcv=key.cryptogram.kcv,
        create_time=_ts(key.created_at),
        activate_time=_ts(key.activated_at),
        expire_time=_ts(key.expires_at),
        use_count=key.use_count,
        max_uses=key.max_uses or 0,
        legacy_key_types=sorted(KEY_TYPE.to_pb[t] for t in key.legacy_types),
        legacy_form=LEGACY_FORM.to_pb.get(key.legacy_form, 0),
        kcv_method=(pb.KCV_METHOD_UNSPECIFIED if s.algorithm.is_asymmetric
                    else KCV_METHOD.to_pb[KcvMethod.default_for(s.algorithm)]),
        next_rotation_time=_ts(next_rotation),
    )


_REQUIRED: Final = ("key_type", "algorithm", "usage", "mode_of_use", "exportability")
"""The KeyTemplate fields GenerateKey and ImportKey need (key_service.proto)."""


def _require(t: key_pb.KeyTemplate, fields: tuple[str, ...]) -> None:
    # Mode of use and exportability are stated, never defaulted: a default
    # would be the permissive choice.
    missing = [f for f in fields if getattr(t, f) == 0]
    if len(missing) > 1:
        # Every one at once, so an integrator fixes the template in one round.
        raise InvalidInput("template", "required fields missing: " + ", ".join(missing))


def import_spec(t: key_pb.KeyTemplate, key_id: str) -> KeySpec | BlockTemplate:
    """ImportKey's template: with the algorithm unset, a :class:`BlockTemplate` whose algorithm the
    TR-31 header gives (the service and backend refuse it under a K0 KEK)."""
    if t.algorithm != 0:
        return key_spec(t, key_id)
    _require(t, tuple(f for f in _REQUIRED if f != "algorithm"))
    if t.legacy_key_types or t.legacy_form:
        raise InvalidInput("template.algorithm", "required with legacy_key_types or legacy_form")
    mode = MODE_OF_USE.get(t.mode_of_use, "template.mode_of_use")
    exp = EXPORTABILITY.get(t.exportability, "template.exportability")
    return BlockTemplate(
        key_id=key_id,
        version=1,
        key_type=KEY_TYPE.get(t.key_type, "template.key_type"),
        usage=KEY_USAGE.get(t.usage, "template.usage"),
        mode_of_use=mode,
        exportability=exp,
        zone=text(t.zone, "template.zone", 64),
        decimalization_table=text(t.decimalization_table, "template.decimalization_table", 16),
    )


def key_spec(t: key_pb.KeyTemplate, key_id: str) -> KeySpec:
    _require(t, _REQUIRED)
    mode = MODE_OF_USE.get(t.mode_of_use, "template.mode_of_use")
    exp = EXPORTABILITY.get(t.exportability, "template.exportability")
    return KeySpec(
        key_id,
        1,
        KEY_TYPE.get(t.key_type, "template.key_type"),
        ALGORITHM.get(t.algorithm, "template.algorithm"),
        KEY_USAGE.get(t.usage, "template.usage"),
        mode,
        exp,
        text(t.zone, "template.zone", 64),
        text(t.decimalization_table, "template.decimalization_table", 16),
    )


def legacy_types(t: key_pb.KeyTemplate) -> frozenset[KeyType]:
    return frozenset(KEY_TYPE.get(v, "template.legacy_key_types") for v in t.legacy_key_types)


def legacy_form(t: key_pb.KeyTemplate) -> LegacyForm:
    """The K0 KEK's legacy form; unspecified is NONE (TR-31 only), which a K0 KEK with types refuses."""
    return LEGACY_FORM.optional(t.legacy_form, "template.legacy_form") or LegacyForm.NONE


def field_params(c: data_pb.FieldCipher, field: str, has: bool = True) -> FieldParams:
    if not has:
        raise InvalidInput(field, "required")
    return FieldParams(
        CIPHER_MODE.get(c.mode, f"{field}.mode"),
        bytes(c.iv),
        DATA_PADDING.get(c.padding, f"{field}.padding"),
        bytes(c.aad),
    )
