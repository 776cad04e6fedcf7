from hsmsvc_client.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CoSigningPurpose(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CO_SIGNING_PURPOSE_UNSPECIFIED: _ClassVar[CoSigningPurpose]
    CO_SIGNING_PURPOSE_SIGN: _ClassVar[CoSigningPurpose]
    CO_SIGNING_PURPOSE_DECRYPT: _ClassVar[CoSigningPurpose]
CO_SIGNING_PURPOSE_UNSPECIFIED: CoSigningPurpose
CO_SIGNING_PURPOSE_SIGN: CoSigningPurpose
CO_SIGNING_PURPOSE_DECRYPT: CoSigningPurpose

class SignedData(_message.Message):
    __slots__ = ("message", "digest", "user_id")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    message: bytes
    digest: bytes
    user_id: bytes
    def __init__(self, message: _Optional[bytes] = ..., digest: _Optional[bytes] = ..., user_id: _Optional[bytes] = ...) -> None: ...

class SignRequest(_message.Message):
    __slots__ = ("key", "data")
    KEY_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.KeyRef
    data: SignedData
    def __init__(self, key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., data: _Optional[_Union[SignedData, _Mapping]] = ...) -> None: ...

class SignResponse(_message.Message):
    __slots__ = ("signature", "key_version", "algorithm")
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    signature: bytes
    key_version: int
    algorithm: _types_pb2.Algorithm
    def __init__(self, signature: _Optional[bytes] = ..., key_version: _Optional[int] = ..., algorithm: _Optional[_Union[_types_pb2.Algorithm, str]] = ...) -> None: ...

class VerifyRequest(_message.Message):
    __slots__ = ("key", "data", "signature")
    KEY_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.KeyRef
    data: SignedData
    signature: bytes
    def __init__(self, key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., data: _Optional[_Union[SignedData, _Mapping]] = ..., signature: _Optional[bytes] = ...) -> None: ...

class VerifyResponse(_message.Message):
    __slots__ = ("verified",)
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    verified: bool
    def __init__(self, verified: _Optional[bool] = ...) -> None: ...

class GenerateCsrRequest(_message.Message):
    __slots__ = ("key", "subject", "user_id")
    KEY_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.KeyRef
    subject: str
    user_id: bytes
    def __init__(self, key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., subject: _Optional[str] = ..., user_id: _Optional[bytes] = ...) -> None: ...

class GenerateCsrResponse(_message.Message):
    __slots__ = ("csr",)
    CSR_FIELD_NUMBER: _ClassVar[int]
    csr: bytes
    def __init__(self, csr: _Optional[bytes] = ...) -> None: ...

class CreateCoSigningKeyRequest(_message.Message):
    __slots__ = ("key_id", "alias", "zone", "purpose", "client_share", "lifetime_seconds", "max_uses")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_SHARE_FIELD_NUMBER: _ClassVar[int]
    LIFETIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_USES_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    alias: str
    zone: str
    purpose: CoSigningPurpose
    client_share: bytes
    lifetime_seconds: int
    max_uses: int
    def __init__(self, key_id: _Optional[str] = ..., alias: _Optional[str] = ..., zone: _Optional[str] = ..., purpose: _Optional[_Union[CoSigningPurpose, str]] = ..., client_share: _Optional[bytes] = ..., lifetime_seconds: _Optional[int] = ..., max_uses: _Optional[int] = ...) -> None: ...

class CreateCoSigningKeyResponse(_message.Message):
    __slots__ = ("key", "server_share", "public_key")
    KEY_FIELD_NUMBER: _ClassVar[int]
    SERVER_SHARE_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.KeyInfo
    server_share: bytes
    public_key: bytes
    def __init__(self, key: _Optional[_Union[_types_pb2.KeyInfo, _Mapping]] = ..., server_share: _Optional[bytes] = ..., public_key: _Optional[bytes] = ...) -> None: ...

class CoSignRequest(_message.Message):
    __slots__ = ("key", "digest", "client_point")
    KEY_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    CLIENT_POINT_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.KeyRef
    digest: bytes
    client_point: bytes
    def __init__(self, key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., digest: _Optional[bytes] = ..., client_point: _Optional[bytes] = ...) -> None: ...

class CoSignResponse(_message.Message):
    __slots__ = ("r", "s2", "s3", "key_version")
    R_FIELD_NUMBER: _ClassVar[int]
    S2_FIELD_NUMBER: _ClassVar[int]
    S3_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    r: bytes
    s2: bytes
    s3: bytes
    key_version: int
    def __init__(self, r: _Optional[bytes] = ..., s2: _Optional[bytes] = ..., s3: _Optional[bytes] = ..., key_version: _Optional[int] = ...) -> None: ...

class CoDecryptRequest(_message.Message):
    __slots__ = ("key", "client_point")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CLIENT_POINT_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.KeyRef
    client_point: bytes
    def __init__(self, key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., client_point: _Optional[bytes] = ...) -> None: ...

class CoDecryptResponse(_message.Message):
    __slots__ = ("server_point",)
    SERVER_POINT_FIELD_NUMBER: _ClassVar[int]
    server_point: bytes
    def __init__(self, server_point: _Optional[bytes] = ...) -> None: ...
