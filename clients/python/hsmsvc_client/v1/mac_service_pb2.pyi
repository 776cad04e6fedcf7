from hsmsvc_client.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GenerateMacRequest(_message.Message):
    __slots__ = ("key", "algorithm", "padding", "data", "mac_length")
    KEY_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    PADDING_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    MAC_LENGTH_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.KeyRef
    algorithm: _types_pb2.MacAlgorithm
    padding: _types_pb2.MacPadding
    data: bytes
    mac_length: int
    def __init__(self, key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., algorithm: _Optional[_Union[_types_pb2.MacAlgorithm, str]] = ..., padding: _Optional[_Union[_types_pb2.MacPadding, str]] = ..., data: _Optional[bytes] = ..., mac_length: _Optional[int] = ...) -> None: ...

class GenerateMacResponse(_message.Message):
    __slots__ = ("mac", "key_version", "sign_on_required")
    MAC_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    SIGN_ON_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    mac: bytes
    key_version: int
    sign_on_required: bool
    def __init__(self, mac: _Optional[bytes] = ..., key_version: _Optional[int] = ..., sign_on_required: _Optional[bool] = ...) -> None: ...

class VerifyMacRequest(_message.Message):
    __slots__ = ("key", "algorithm", "padding", "data", "mac")
    KEY_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    PADDING_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    MAC_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.KeyRef
    algorithm: _types_pb2.MacAlgorithm
    padding: _types_pb2.MacPadding
    data: bytes
    mac: bytes
    def __init__(self, key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., algorithm: _Optional[_Union[_types_pb2.MacAlgorithm, str]] = ..., padding: _Optional[_Union[_types_pb2.MacPadding, str]] = ..., data: _Optional[bytes] = ..., mac: _Optional[bytes] = ...) -> None: ...

class VerifyMacResponse(_message.Message):
    __slots__ = ("verified",)
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    verified: bool
    def __init__(self, verified: _Optional[bool] = ...) -> None: ...

class GenerateMacBatchRequest(_message.Message):
    __slots__ = ("key", "algorithm", "padding", "messages", "mac_length")
    KEY_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    PADDING_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    MAC_LENGTH_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.KeyRef
    algorithm: _types_pb2.MacAlgorithm
    padding: _types_pb2.MacPadding
    messages: _containers.RepeatedScalarFieldContainer[bytes]
    mac_length: int
    def __init__(self, key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., algorithm: _Optional[_Union[_types_pb2.MacAlgorithm, str]] = ..., padding: _Optional[_Union[_types_pb2.MacPadding, str]] = ..., messages: _Optional[_Iterable[bytes]] = ..., mac_length: _Optional[int] = ...) -> None: ...

class GenerateMacBatchResponse(_message.Message):
    __slots__ = ("macs", "errors", "key_version")
    MACS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    macs: _containers.RepeatedScalarFieldContainer[bytes]
    errors: _containers.RepeatedCompositeFieldContainer[_types_pb2.ItemError]
    key_version: int
    def __init__(self, macs: _Optional[_Iterable[bytes]] = ..., errors: _Optional[_Iterable[_Union[_types_pb2.ItemError, _Mapping]]] = ..., key_version: _Optional[int] = ...) -> None: ...

class VerifyMacBatchRequest(_message.Message):
    __slots__ = ("key", "algorithm", "padding", "messages", "macs")
    KEY_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    PADDING_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    MACS_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.KeyRef
    algorithm: _types_pb2.MacAlgorithm
    padding: _types_pb2.MacPadding
    messages: _containers.RepeatedScalarFieldContainer[bytes]
    macs: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., algorithm: _Optional[_Union[_types_pb2.MacAlgorithm, str]] = ..., padding: _Optional[_Union[_types_pb2.MacPadding, str]] = ..., messages: _Optional[_Iterable[bytes]] = ..., macs: _Optional[_Iterable[bytes]] = ...) -> None: ...

class VerifyMacBatchResponse(_message.Message):
    __slots__ = ("verified", "errors")
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    verified: _containers.RepeatedScalarFieldContainer[bool]
    errors: _containers.RepeatedCompositeFieldContainer[_types_pb2.ItemError]
    def __init__(self, verified: _Optional[_Iterable[bool]] = ..., errors: _Optional[_Iterable[_Union[_types_pb2.ItemError, _Mapping]]] = ...) -> None: ...

class StreamGenerateMacRequest(_message.Message):
    __slots__ = ("correlation_id", "request")
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    correlation_id: int
    request: GenerateMacRequest
    def __init__(self, correlation_id: _Optional[int] = ..., request: _Optional[_Union[GenerateMacRequest, _Mapping]] = ...) -> None: ...

class StreamGenerateMacResponse(_message.Message):
    __slots__ = ("correlation_id", "code", "message", "response")
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    correlation_id: int
    code: int
    message: str
    response: GenerateMacResponse
    def __init__(self, correlation_id: _Optional[int] = ..., code: _Optional[int] = ..., message: _Optional[str] = ..., response: _Optional[_Union[GenerateMacResponse, _Mapping]] = ...) -> None: ...

class StreamVerifyMacRequest(_message.Message):
    __slots__ = ("correlation_id", "request")
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    correlation_id: int
    request: VerifyMacRequest
    def __init__(self, correlation_id: _Optional[int] = ..., request: _Optional[_Union[VerifyMacRequest, _Mapping]] = ...) -> None: ...

class StreamVerifyMacResponse(_message.Message):
    __slots__ = ("correlation_id", "code", "message", "response")
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    correlation_id: int
    code: int
    message: str
    response: VerifyMacResponse
    def __init__(self, correlation_id: _Optional[int] = ..., code: _Optional[int] = ..., message: _Optional[str] = ..., response: _Optional[_Union[VerifyMacResponse, _Mapping]] = ...) -> None: ...
