from hsmsvc_client.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DigestRequest(_message.Message):
    __slots__ = ("algorithm", "data")
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    algorithm: _types_pb2.HashAlgorithm
    data: bytes
    def __init__(self, algorithm: _Optional[_Union[_types_pb2.HashAlgorithm, str]] = ..., data: _Optional[bytes] = ...) -> None: ...

class DigestResponse(_message.Message):
    __slots__ = ("digest",)
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    digest: bytes
    def __init__(self, digest: _Optional[bytes] = ...) -> None: ...

class FieldCipher(_message.Message):
    __slots__ = ("mode", "padding", "iv", "aad")
    MODE_FIELD_NUMBER: _ClassVar[int]
    PADDING_FIELD_NUMBER: _ClassVar[int]
    IV_FIELD_NUMBER: _ClassVar[int]
    AAD_FIELD_NUMBER: _ClassVar[int]
    mode: _types_pb2.CipherMode
    padding: _types_pb2.DataPadding
    iv: bytes
    aad: bytes
    def __init__(self, mode: _Optional[_Union[_types_pb2.CipherMode, str]] = ..., padding: _Optional[_Union[_types_pb2.DataPadding, str]] = ..., iv: _Optional[bytes] = ..., aad: _Optional[bytes] = ...) -> None: ...

class EncryptRequest(_message.Message):
    __slots__ = ("key", "cipher", "plaintext")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CIPHER_FIELD_NUMBER: _ClassVar[int]
    PLAINTEXT_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.KeyRef
    cipher: FieldCipher
    plaintext: bytes
    def __init__(self, key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., cipher: _Optional[_Union[FieldCipher, _Mapping]] = ..., plaintext: _Optional[bytes] = ...) -> None: ...

class EncryptResponse(_message.Message):
    __slots__ = ("ciphertext", "iv", "key_version")
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    IV_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    ciphertext: bytes
    iv: bytes
    key_version: int
    def __init__(self, ciphertext: _Optional[bytes] = ..., iv: _Optional[bytes] = ..., key_version: _Optional[int] = ...) -> None: ...

class DecryptRequest(_message.Message):
    __slots__ = ("key", "cipher", "ciphertext")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CIPHER_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.KeyRef
    cipher: FieldCipher
    ciphertext: bytes
    def __init__(self, key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., cipher: _Optional[_Union[FieldCipher, _Mapping]] = ..., ciphertext: _Optional[bytes] = ...) -> None: ...

class DecryptResponse(_message.Message):
    __slots__ = ("plaintext",)
    PLAINTEXT_FIELD_NUMBER: _ClassVar[int]
    plaintext: bytes
    def __init__(self, plaintext: _Optional[bytes] = ...) -> None: ...

class ReEncryptRequest(_message.Message):
    __slots__ = ("source_key", "source_cipher", "destination_key", "destination_cipher", "ciphertext")
    SOURCE_KEY_FIELD_NUMBER: _ClassVar[int]
    SOURCE_CIPHER_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_KEY_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_CIPHER_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    source_key: _types_pb2.KeyRef
    source_cipher: FieldCipher
    destination_key: _types_pb2.KeyRef
    destination_cipher: FieldCipher
    ciphertext: bytes
    def __init__(self, source_key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., source_cipher: _Optional[_Union[FieldCipher, _Mapping]] = ..., destination_key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., destination_cipher: _Optional[_Union[FieldCipher, _Mapping]] = ..., ciphertext: _Optional[bytes] = ...) -> None: ...

class ReEncryptResponse(_message.Message):
    __slots__ = ("ciphertext", "iv", "destination_key_version")
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    IV_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    ciphertext: bytes
    iv: bytes
    destination_key_version: int
    def __init__(self, ciphertext: _Optional[bytes] = ..., iv: _Optional[bytes] = ..., destination_key_version: _Optional[int] = ...) -> None: ...

class EncryptBatchRequest(_message.Message):
    __slots__ = ("key", "cipher", "plaintexts")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CIPHER_FIELD_NUMBER: _ClassVar[int]
    PLAINTEXTS_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.KeyRef
    cipher: FieldCipher
    plaintexts: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., cipher: _Optional[_Union[FieldCipher, _Mapping]] = ..., plaintexts: _Optional[_Iterable[bytes]] = ...) -> None: ...

class EncryptBatchResponse(_message.Message):
    __slots__ = ("ciphertexts", "ivs", "errors", "key_version")
    CIPHERTEXTS_FIELD_NUMBER: _ClassVar[int]
    IVS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    ciphertexts: _containers.RepeatedScalarFieldContainer[bytes]
    ivs: _containers.RepeatedScalarFieldContainer[bytes]
    errors: _containers.RepeatedCompositeFieldContainer[_types_pb2.ItemError]
    key_version: int
    def __init__(self, ciphertexts: _Optional[_Iterable[bytes]] = ..., ivs: _Optional[_Iterable[bytes]] = ..., errors: _Optional[_Iterable[_Union[_types_pb2.ItemError, _Mapping]]] = ..., key_version: _Optional[int] = ...) -> None: ...

class StreamEncryptRequest(_message.Message):
    __slots__ = ("correlation_id", "request")
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    correlation_id: int
    request: EncryptRequest
    def __init__(self, correlation_id: _Optional[int] = ..., request: _Optional[_Union[EncryptRequest, _Mapping]] = ...) -> None: ...

class StreamEncryptResponse(_message.Message):
    __slots__ = ("correlation_id", "code", "message", "response")
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    correlation_id: int
    code: int
    message: str
    response: EncryptResponse
    def __init__(self, correlation_id: _Optional[int] = ..., code: _Optional[int] = ..., message: _Optional[str] = ..., response: _Optional[_Union[EncryptResponse, _Mapping]] = ...) -> None: ...
