import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from hsmsvc_client.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NoticeKey(_message.Message):
    __slots__ = ("key_id", "version", "key_type", "algorithm", "usage", "mode_of_use", "wrapped_key", "kcv")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    KEY_TYPE_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    MODE_OF_USE_FIELD_NUMBER: _ClassVar[int]
    WRAPPED_KEY_FIELD_NUMBER: _ClassVar[int]
    KCV_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    version: int
    key_type: _types_pb2.KeyType
    algorithm: _types_pb2.Algorithm
    usage: _types_pb2.KeyUsage
    mode_of_use: _types_pb2.ModeOfUse
    wrapped_key: bytes
    kcv: bytes
    def __init__(self, key_id: _Optional[str] = ..., version: _Optional[int] = ..., key_type: _Optional[_Union[_types_pb2.KeyType, str]] = ..., algorithm: _Optional[_Union[_types_pb2.Algorithm, str]] = ..., usage: _Optional[_Union[_types_pb2.KeyUsage, str]] = ..., mode_of_use: _Optional[_Union[_types_pb2.ModeOfUse, str]] = ..., wrapped_key: _Optional[bytes] = ..., kcv: _Optional[bytes] = ...) -> None: ...

class KeyChangeNotice(_message.Message):
    __slots__ = ("zone", "sequence", "issue_time", "activate_time", "grace_seconds", "keys", "mac")
    ZONE_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ISSUE_TIME_FIELD_NUMBER: _ClassVar[int]
    ACTIVATE_TIME_FIELD_NUMBER: _ClassVar[int]
    GRACE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    MAC_FIELD_NUMBER: _ClassVar[int]
    zone: str
    sequence: int
    issue_time: _timestamp_pb2.Timestamp
    activate_time: _timestamp_pb2.Timestamp
    grace_seconds: int
    keys: _containers.RepeatedCompositeFieldContainer[NoticeKey]
    mac: bytes
    def __init__(self, zone: _Optional[str] = ..., sequence: _Optional[int] = ..., issue_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., activate_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., grace_seconds: _Optional[int] = ..., keys: _Optional[_Iterable[_Union[NoticeKey, _Mapping]]] = ..., mac: _Optional[bytes] = ...) -> None: ...

class KeyChangeConfirmation(_message.Message):
    __slots__ = ("zone", "sequence", "kcvs", "mac")
    ZONE_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    KCVS_FIELD_NUMBER: _ClassVar[int]
    MAC_FIELD_NUMBER: _ClassVar[int]
    zone: str
    sequence: int
    kcvs: _containers.RepeatedScalarFieldContainer[bytes]
    mac: bytes
    def __init__(self, zone: _Optional[str] = ..., sequence: _Optional[int] = ..., kcvs: _Optional[_Iterable[bytes]] = ..., mac: _Optional[bytes] = ...) -> None: ...

class KeyChangeAcknowledgement(_message.Message):
    __slots__ = ("zone", "sequence", "mac")
    ZONE_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    MAC_FIELD_NUMBER: _ClassVar[int]
    zone: str
    sequence: int
    mac: bytes
    def __init__(self, zone: _Optional[str] = ..., sequence: _Optional[int] = ..., mac: _Optional[bytes] = ...) -> None: ...

class StartKeyChangeRequest(_message.Message):
    __slots__ = ("zone", "key_types", "deliver")
    ZONE_FIELD_NUMBER: _ClassVar[int]
    KEY_TYPES_FIELD_NUMBER: _ClassVar[int]
    DELIVER_FIELD_NUMBER: _ClassVar[int]
    zone: str
    key_types: _containers.RepeatedScalarFieldContainer[_types_pb2.KeyType]
    deliver: bool
    def __init__(self, zone: _Optional[str] = ..., key_types: _Optional[_Iterable[_Union[_types_pb2.KeyType, str]]] = ..., deliver: _Optional[bool] = ...) -> None: ...

class StartKeyChangeResponse(_message.Message):
    __slots__ = ("notice", "confirmed", "delivery_error")
    NOTICE_FIELD_NUMBER: _ClassVar[int]
    CONFIRMED_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_ERROR_FIELD_NUMBER: _ClassVar[int]
    notice: KeyChangeNotice
    confirmed: bool
    delivery_error: str
    def __init__(self, notice: _Optional[_Union[KeyChangeNotice, _Mapping]] = ..., confirmed: _Optional[bool] = ..., delivery_error: _Optional[str] = ...) -> None: ...

class ApplyKeyChangeRequest(_message.Message):
    __slots__ = ("notice",)
    NOTICE_FIELD_NUMBER: _ClassVar[int]
    notice: KeyChangeNotice
    def __init__(self, notice: _Optional[_Union[KeyChangeNotice, _Mapping]] = ...) -> None: ...

class ApplyKeyChangeResponse(_message.Message):
    __slots__ = ("confirmation",)
    CONFIRMATION_FIELD_NUMBER: _ClassVar[int]
    confirmation: KeyChangeConfirmation
    def __init__(self, confirmation: _Optional[_Union[KeyChangeConfirmation, _Mapping]] = ...) -> None: ...

class ConfirmKeyChangeRequest(_message.Message):
    __slots__ = ("confirmation",)
    CONFIRMATION_FIELD_NUMBER: _ClassVar[int]
    confirmation: KeyChangeConfirmation
    def __init__(self, confirmation: _Optional[_Union[KeyChangeConfirmation, _Mapping]] = ...) -> None: ...

class ConfirmKeyChangeResponse(_message.Message):
    __slots__ = ("keys", "acknowledgement")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGEMENT_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[_types_pb2.KeyInfo]
    acknowledgement: KeyChangeAcknowledgement
    def __init__(self, keys: _Optional[_Iterable[_Union[_types_pb2.KeyInfo, _Mapping]]] = ..., acknowledgement: _Optional[_Union[KeyChangeAcknowledgement, _Mapping]] = ...) -> None: ...

class AcknowledgeKeyChangeRequest(_message.Message):
    __slots__ = ("acknowledgement",)
    ACKNOWLEDGEMENT_FIELD_NUMBER: _ClassVar[int]
    acknowledgement: KeyChangeAcknowledgement
    def __init__(self, acknowledgement: _Optional[_Union[KeyChangeAcknowledgement, _Mapping]] = ...) -> None: ...

class AcknowledgeKeyChangeResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[_types_pb2.KeyInfo]
    def __init__(self, keys: _Optional[_Iterable[_Union[_types_pb2.KeyInfo, _Mapping]]] = ...) -> None: ...

class SignOnRequest(_message.Message):
    __slots__ = ("tmk", "terminal_id")
    TMK_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_ID_FIELD_NUMBER: _ClassVar[int]
    tmk: _types_pb2.KeyRef
    terminal_id: str
    def __init__(self, tmk: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., terminal_id: _Optional[str] = ...) -> None: ...

class SignOnKey(_message.Message):
    __slots__ = ("key_id", "version", "key_type", "wrapped_key", "kcv", "algorithm", "usage")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    KEY_TYPE_FIELD_NUMBER: _ClassVar[int]
    WRAPPED_KEY_FIELD_NUMBER: _ClassVar[int]
    KCV_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    version: int
    key_type: _types_pb2.KeyType
    wrapped_key: bytes
    kcv: bytes
    algorithm: _types_pb2.Algorithm
    usage: _types_pb2.KeyUsage
    def __init__(self, key_id: _Optional[str] = ..., version: _Optional[int] = ..., key_type: _Optional[_Union[_types_pb2.KeyType, str]] = ..., wrapped_key: _Optional[bytes] = ..., kcv: _Optional[bytes] = ..., algorithm: _Optional[_Union[_types_pb2.Algorithm, str]] = ..., usage: _Optional[_Union[_types_pb2.KeyUsage, str]] = ...) -> None: ...

class SignOnResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[SignOnKey]
    def __init__(self, keys: _Optional[_Iterable[_Union[SignOnKey, _Mapping]]] = ...) -> None: ...
