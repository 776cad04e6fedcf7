from hsmsvc_client.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DukptDirection(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DUKPT_DIRECTION_UNSPECIFIED: _ClassVar[DukptDirection]
    DUKPT_DIRECTION_REQUEST: _ClassVar[DukptDirection]
    DUKPT_DIRECTION_RESPONSE: _ClassVar[DukptDirection]
    DUKPT_DIRECTION_BOTH: _ClassVar[DukptDirection]
DUKPT_DIRECTION_UNSPECIFIED: DukptDirection
DUKPT_DIRECTION_REQUEST: DukptDirection
DUKPT_DIRECTION_RESPONSE: DukptDirection
DUKPT_DIRECTION_BOTH: DukptDirection

class DukptTransaction(_message.Message):
    __slots__ = ("bdk", "ksn", "key_algorithm")
    BDK_FIELD_NUMBER: _ClassVar[int]
    KSN_FIELD_NUMBER: _ClassVar[int]
    KEY_ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    bdk: _types_pb2.KeyRef
    ksn: bytes
    key_algorithm: _types_pb2.Algorithm
    def __init__(self, bdk: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., ksn: _Optional[bytes] = ..., key_algorithm: _Optional[_Union[_types_pb2.Algorithm, str]] = ...) -> None: ...

class VerifyDukptMacRequest(_message.Message):
    __slots__ = ("transaction", "direction", "padding", "data", "mac")
    TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    PADDING_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    MAC_FIELD_NUMBER: _ClassVar[int]
    transaction: DukptTransaction
    direction: DukptDirection
    padding: _types_pb2.MacPadding
    data: bytes
    mac: bytes
    def __init__(self, transaction: _Optional[_Union[DukptTransaction, _Mapping]] = ..., direction: _Optional[_Union[DukptDirection, str]] = ..., padding: _Optional[_Union[_types_pb2.MacPadding, str]] = ..., data: _Optional[bytes] = ..., mac: _Optional[bytes] = ...) -> None: ...

class VerifyDukptMacResponse(_message.Message):
    __slots__ = ("verified",)
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    verified: bool
    def __init__(self, verified: _Optional[bool] = ...) -> None: ...

class GenerateDukptMacRequest(_message.Message):
    __slots__ = ("transaction", "direction", "padding", "data")
    TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    PADDING_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    transaction: DukptTransaction
    direction: DukptDirection
    padding: _types_pb2.MacPadding
    data: bytes
    def __init__(self, transaction: _Optional[_Union[DukptTransaction, _Mapping]] = ..., direction: _Optional[_Union[DukptDirection, str]] = ..., padding: _Optional[_Union[_types_pb2.MacPadding, str]] = ..., data: _Optional[bytes] = ...) -> None: ...

class GenerateDukptMacResponse(_message.Message):
    __slots__ = ("mac",)
    MAC_FIELD_NUMBER: _ClassVar[int]
    mac: bytes
    def __init__(self, mac: _Optional[bytes] = ...) -> None: ...

class DecryptDukptDataRequest(_message.Message):
    __slots__ = ("transaction", "direction", "iv", "ciphertext")
    TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    IV_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    transaction: DukptTransaction
    direction: DukptDirection
    iv: bytes
    ciphertext: bytes
    def __init__(self, transaction: _Optional[_Union[DukptTransaction, _Mapping]] = ..., direction: _Optional[_Union[DukptDirection, str]] = ..., iv: _Optional[bytes] = ..., ciphertext: _Optional[bytes] = ...) -> None: ...

class DecryptDukptDataResponse(_message.Message):
    __slots__ = ("plaintext",)
    PLAINTEXT_FIELD_NUMBER: _ClassVar[int]
    plaintext: bytes
    def __init__(self, plaintext: _Optional[bytes] = ...) -> None: ...

class EncryptDukptDataRequest(_message.Message):
    __slots__ = ("transaction", "direction", "iv", "plaintext")
    TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    IV_FIELD_NUMBER: _ClassVar[int]
    PLAINTEXT_FIELD_NUMBER: _ClassVar[int]
    transaction: DukptTransaction
    direction: DukptDirection
    iv: bytes
    plaintext: bytes
    def __init__(self, transaction: _Optional[_Union[DukptTransaction, _Mapping]] = ..., direction: _Optional[_Union[DukptDirection, str]] = ..., iv: _Optional[bytes] = ..., plaintext: _Optional[bytes] = ...) -> None: ...

class EncryptDukptDataResponse(_message.Message):
    __slots__ = ("ciphertext",)
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    ciphertext: bytes
    def __init__(self, ciphertext: _Optional[bytes] = ...) -> None: ...

class ExportInitialKeyRequest(_message.Message):
    __slots__ = ("bdk", "kek", "initial_key_id")
    BDK_FIELD_NUMBER: _ClassVar[int]
    KEK_FIELD_NUMBER: _ClassVar[int]
    INITIAL_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    bdk: _types_pb2.KeyRef
    kek: _types_pb2.KeyRef
    initial_key_id: bytes
    def __init__(self, bdk: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., kek: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., initial_key_id: _Optional[bytes] = ...) -> None: ...

class ExportInitialKeyResponse(_message.Message):
    __slots__ = ("key_block", "kcv", "bdk_version")
    KEY_BLOCK_FIELD_NUMBER: _ClassVar[int]
    KCV_FIELD_NUMBER: _ClassVar[int]
    BDK_VERSION_FIELD_NUMBER: _ClassVar[int]
    key_block: str
    kcv: bytes
    bdk_version: int
    def __init__(self, key_block: _Optional[str] = ..., kcv: _Optional[bytes] = ..., bdk_version: _Optional[int] = ...) -> None: ...
