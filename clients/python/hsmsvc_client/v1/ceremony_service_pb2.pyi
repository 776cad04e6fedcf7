import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from hsmsvc_client.v1 import key_service_pb2 as _key_service_pb2
from hsmsvc_client.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class KeyFormationState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KEY_FORMATION_STATE_UNSPECIFIED: _ClassVar[KeyFormationState]
    KEY_FORMATION_STATE_OPEN: _ClassVar[KeyFormationState]
    KEY_FORMATION_STATE_FORMED: _ClassVar[KeyFormationState]
    KEY_FORMATION_STATE_CANCELLED: _ClassVar[KeyFormationState]
    KEY_FORMATION_STATE_EXPIRED: _ClassVar[KeyFormationState]
KEY_FORMATION_STATE_UNSPECIFIED: KeyFormationState
KEY_FORMATION_STATE_OPEN: KeyFormationState
KEY_FORMATION_STATE_FORMED: KeyFormationState
KEY_FORMATION_STATE_CANCELLED: KeyFormationState
KEY_FORMATION_STATE_EXPIRED: KeyFormationState

class ComponentReceipt(_message.Message):
    __slots__ = ("position", "custodian", "kcv")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    CUSTODIAN_FIELD_NUMBER: _ClassVar[int]
    KCV_FIELD_NUMBER: _ClassVar[int]
    position: int
    custodian: str
    kcv: bytes
    def __init__(self, position: _Optional[int] = ..., custodian: _Optional[str] = ..., kcv: _Optional[bytes] = ...) -> None: ...

class KeyFormation(_message.Message):
    __slots__ = ("ceremony_id", "state", "key_id", "version", "key_type", "algorithm", "transport_key", "components_required", "components", "started_by", "approved_by", "expire_time", "kcv")
    CEREMONY_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    KEY_TYPE_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    TRANSPORT_KEY_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    STARTED_BY_FIELD_NUMBER: _ClassVar[int]
    APPROVED_BY_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    KCV_FIELD_NUMBER: _ClassVar[int]
    ceremony_id: str
    state: KeyFormationState
    key_id: str
    version: int
    key_type: _types_pb2.KeyType
    algorithm: _types_pb2.Algorithm
    transport_key: _types_pb2.KeyRef
    components_required: int
    components: _containers.RepeatedCompositeFieldContainer[ComponentReceipt]
    started_by: str
    approved_by: str
    expire_time: _timestamp_pb2.Timestamp
    kcv: bytes
    def __init__(self, ceremony_id: _Optional[str] = ..., state: _Optional[_Union[KeyFormationState, str]] = ..., key_id: _Optional[str] = ..., version: _Optional[int] = ..., key_type: _Optional[_Union[_types_pb2.KeyType, str]] = ..., algorithm: _Optional[_Union[_types_pb2.Algorithm, str]] = ..., transport_key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., components_required: _Optional[int] = ..., components: _Optional[_Iterable[_Union[ComponentReceipt, _Mapping]]] = ..., started_by: _Optional[str] = ..., approved_by: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kcv: _Optional[bytes] = ...) -> None: ...

class StartKeyFormationRequest(_message.Message):
    __slots__ = ("template", "transport_key", "component_count")
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    TRANSPORT_KEY_FIELD_NUMBER: _ClassVar[int]
    COMPONENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    template: _key_service_pb2.KeyTemplate
    transport_key: _types_pb2.KeyRef
    component_count: int
    def __init__(self, template: _Optional[_Union[_key_service_pb2.KeyTemplate, _Mapping]] = ..., transport_key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., component_count: _Optional[int] = ...) -> None: ...

class StartKeyFormationResponse(_message.Message):
    __slots__ = ("formation",)
    FORMATION_FIELD_NUMBER: _ClassVar[int]
    formation: KeyFormation
    def __init__(self, formation: _Optional[_Union[KeyFormation, _Mapping]] = ...) -> None: ...

class ApproveKeyFormationRequest(_message.Message):
    __slots__ = ("ceremony_id",)
    CEREMONY_ID_FIELD_NUMBER: _ClassVar[int]
    ceremony_id: str
    def __init__(self, ceremony_id: _Optional[str] = ...) -> None: ...

class ApproveKeyFormationResponse(_message.Message):
    __slots__ = ("formation", "key")
    FORMATION_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    formation: KeyFormation
    key: _types_pb2.KeyInfo
    def __init__(self, formation: _Optional[_Union[KeyFormation, _Mapping]] = ..., key: _Optional[_Union[_types_pb2.KeyInfo, _Mapping]] = ...) -> None: ...

class AddKeyComponentRequest(_message.Message):
    __slots__ = ("ceremony_id", "wrapped_component", "kcv")
    CEREMONY_ID_FIELD_NUMBER: _ClassVar[int]
    WRAPPED_COMPONENT_FIELD_NUMBER: _ClassVar[int]
    KCV_FIELD_NUMBER: _ClassVar[int]
    ceremony_id: str
    wrapped_component: bytes
    kcv: bytes
    def __init__(self, ceremony_id: _Optional[str] = ..., wrapped_component: _Optional[bytes] = ..., kcv: _Optional[bytes] = ...) -> None: ...

class AddKeyComponentResponse(_message.Message):
    __slots__ = ("formation", "key")
    FORMATION_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    formation: KeyFormation
    key: _types_pb2.KeyInfo
    def __init__(self, formation: _Optional[_Union[KeyFormation, _Mapping]] = ..., key: _Optional[_Union[_types_pb2.KeyInfo, _Mapping]] = ...) -> None: ...

class GetKeyFormationRequest(_message.Message):
    __slots__ = ("ceremony_id",)
    CEREMONY_ID_FIELD_NUMBER: _ClassVar[int]
    ceremony_id: str
    def __init__(self, ceremony_id: _Optional[str] = ...) -> None: ...

class GetKeyFormationResponse(_message.Message):
    __slots__ = ("formation",)
    FORMATION_FIELD_NUMBER: _ClassVar[int]
    formation: KeyFormation
    def __init__(self, formation: _Optional[_Union[KeyFormation, _Mapping]] = ...) -> None: ...

class CancelKeyFormationRequest(_message.Message):
    __slots__ = ("ceremony_id", "reason")
    CEREMONY_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ceremony_id: str
    reason: str
    def __init__(self, ceremony_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelKeyFormationResponse(_message.Message):
    __slots__ = ("formation",)
    FORMATION_FIELD_NUMBER: _ClassVar[int]
    formation: KeyFormation
    def __init__(self, formation: _Optional[_Union[KeyFormation, _Mapping]] = ...) -> None: ...

class SealStatus(_message.Message):
    __slots__ = ("sealed", "seal_id", "threshold", "share_count", "entered", "entered_indices", "expire_time")
    SEALED_FIELD_NUMBER: _ClassVar[int]
    SEAL_ID_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    SHARE_COUNT_FIELD_NUMBER: _ClassVar[int]
    ENTERED_FIELD_NUMBER: _ClassVar[int]
    ENTERED_INDICES_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    sealed: bool
    seal_id: str
    threshold: int
    share_count: int
    entered: int
    entered_indices: _containers.RepeatedScalarFieldContainer[int]
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, sealed: _Optional[bool] = ..., seal_id: _Optional[str] = ..., threshold: _Optional[int] = ..., share_count: _Optional[int] = ..., entered: _Optional[int] = ..., entered_indices: _Optional[_Iterable[int]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SubmitUnsealShareRequest(_message.Message):
    __slots__ = ("share",)
    SHARE_FIELD_NUMBER: _ClassVar[int]
    share: bytes
    def __init__(self, share: _Optional[bytes] = ...) -> None: ...

class SubmitUnsealShareResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: SealStatus
    def __init__(self, status: _Optional[_Union[SealStatus, _Mapping]] = ...) -> None: ...

class GetSealStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetSealStatusResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: SealStatus
    def __init__(self, status: _Optional[_Union[SealStatus, _Mapping]] = ...) -> None: ...
