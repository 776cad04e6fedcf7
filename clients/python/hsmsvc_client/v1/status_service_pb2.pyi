import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from hsmsvc_client.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetServerStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetServerStatusResponse(_message.Message):
    __slots__ = ("version", "backend", "store", "audit_head", "key_counts", "start_time", "crypto")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    AUDIT_HEAD_FIELD_NUMBER: _ClassVar[int]
    KEY_COUNTS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    CRYPTO_FIELD_NUMBER: _ClassVar[int]
    version: str
    backend: BackendStatus
    store: StoreStatus
    audit_head: AuditHead
    key_counts: _containers.RepeatedCompositeFieldContainer[KeyCount]
    start_time: _timestamp_pb2.Timestamp
    crypto: CryptoModeStatus
    def __init__(self, version: _Optional[str] = ..., backend: _Optional[_Union[BackendStatus, _Mapping]] = ..., store: _Optional[_Union[StoreStatus, _Mapping]] = ..., audit_head: _Optional[_Union[AuditHead, _Mapping]] = ..., key_counts: _Optional[_Iterable[_Union[KeyCount, _Mapping]]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., crypto: _Optional[_Union[CryptoModeStatus, _Mapping]] = ...) -> None: ...

class CryptoModeStatus(_message.Message):
    __slots__ = ("national_only", "non_national_keys")
    NATIONAL_ONLY_FIELD_NUMBER: _ClassVar[int]
    NON_NATIONAL_KEYS_FIELD_NUMBER: _ClassVar[int]
    national_only: bool
    non_national_keys: int
    def __init__(self, national_only: _Optional[bool] = ..., non_national_keys: _Optional[int] = ...) -> None: ...

class BackendStatus(_message.Message):
    __slots__ = ("kind", "lmk_kcv", "members", "lmk_algorithm")
    KIND_FIELD_NUMBER: _ClassVar[int]
    LMK_KCV_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    LMK_ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    kind: str
    lmk_kcv: str
    members: _containers.RepeatedCompositeFieldContainer[BackendMember]
    lmk_algorithm: str
    def __init__(self, kind: _Optional[str] = ..., lmk_kcv: _Optional[str] = ..., members: _Optional[_Iterable[_Union[BackendMember, _Mapping]]] = ..., lmk_algorithm: _Optional[str] = ...) -> None: ...

class BackendMember(_message.Message):
    __slots__ = ("index", "kind", "healthy", "restarts")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    index: int
    kind: str
    healthy: bool
    restarts: int
    def __init__(self, index: _Optional[int] = ..., kind: _Optional[str] = ..., healthy: _Optional[bool] = ..., restarts: _Optional[int] = ...) -> None: ...

class StoreStatus(_message.Message):
    __slots__ = ("kind", "url", "schema_revision", "schema_head")
    KIND_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_REVISION_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_HEAD_FIELD_NUMBER: _ClassVar[int]
    kind: str
    url: str
    schema_revision: str
    schema_head: str
    def __init__(self, kind: _Optional[str] = ..., url: _Optional[str] = ..., schema_revision: _Optional[str] = ..., schema_head: _Optional[str] = ...) -> None: ...

class AuditHead(_message.Message):
    __slots__ = ("sequence", "hash", "time")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    hash: str
    time: _timestamp_pb2.Timestamp
    def __init__(self, sequence: _Optional[int] = ..., hash: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class KeyCount(_message.Message):
    __slots__ = ("key_type", "state", "count")
    KEY_TYPE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    key_type: _types_pb2.KeyType
    state: _types_pb2.KeyState
    count: int
    def __init__(self, key_type: _Optional[_Union[_types_pb2.KeyType, str]] = ..., state: _Optional[_Union[_types_pb2.KeyState, str]] = ..., count: _Optional[int] = ...) -> None: ...
