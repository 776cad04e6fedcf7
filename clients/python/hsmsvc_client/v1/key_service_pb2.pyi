import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from hsmsvc_client.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Sm2KeyExchangeRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SM2_KEY_EXCHANGE_ROLE_UNSPECIFIED: _ClassVar[Sm2KeyExchangeRole]
    SM2_KEY_EXCHANGE_ROLE_INITIATOR: _ClassVar[Sm2KeyExchangeRole]
    SM2_KEY_EXCHANGE_ROLE_RESPONDER: _ClassVar[Sm2KeyExchangeRole]
SM2_KEY_EXCHANGE_ROLE_UNSPECIFIED: Sm2KeyExchangeRole
SM2_KEY_EXCHANGE_ROLE_INITIATOR: Sm2KeyExchangeRole
SM2_KEY_EXCHANGE_ROLE_RESPONDER: Sm2KeyExchangeRole

class KeyTemplate(_message.Message):
    __slots__ = ("key_id", "alias", "key_type", "algorithm", "usage", "mode_of_use", "exportability", "zone", "decimalization_table", "lifetime_seconds", "max_uses", "legacy_key_types", "legacy_form")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    KEY_TYPE_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    MODE_OF_USE_FIELD_NUMBER: _ClassVar[int]
    EXPORTABILITY_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    DECIMALIZATION_TABLE_FIELD_NUMBER: _ClassVar[int]
    LIFETIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_USES_FIELD_NUMBER: _ClassVar[int]
    LEGACY_KEY_TYPES_FIELD_NUMBER: _ClassVar[int]
    LEGACY_FORM_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    alias: str
    key_type: _types_pb2.KeyType
    algorithm: _types_pb2.Algorithm
    usage: _types_pb2.KeyUsage
    mode_of_use: _types_pb2.ModeOfUse
    exportability: _types_pb2.Exportability
    zone: str
    decimalization_table: str
    lifetime_seconds: int
    max_uses: int
    legacy_key_types: _containers.RepeatedScalarFieldContainer[_types_pb2.KeyType]
    legacy_form: _types_pb2.LegacyForm
    def __init__(self, key_id: _Optional[str] = ..., alias: _Optional[str] = ..., key_type: _Optional[_Union[_types_pb2.KeyType, str]] = ..., algorithm: _Optional[_Union[_types_pb2.Algorithm, str]] = ..., usage: _Optional[_Union[_types_pb2.KeyUsage, str]] = ..., mode_of_use: _Optional[_Union[_types_pb2.ModeOfUse, str]] = ..., exportability: _Optional[_Union[_types_pb2.Exportability, str]] = ..., zone: _Optional[str] = ..., decimalization_table: _Optional[str] = ..., lifetime_seconds: _Optional[int] = ..., max_uses: _Optional[int] = ..., legacy_key_types: _Optional[_Iterable[_Union[_types_pb2.KeyType, str]]] = ..., legacy_form: _Optional[_Union[_types_pb2.LegacyForm, str]] = ...) -> None: ...

class GenerateKeyRequest(_message.Message):
    __slots__ = ("template",)
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    template: KeyTemplate
    def __init__(self, template: _Optional[_Union[KeyTemplate, _Mapping]] = ...) -> None: ...

class GenerateKeyResponse(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.KeyInfo
    def __init__(self, key: _Optional[_Union[_types_pb2.KeyInfo, _Mapping]] = ...) -> None: ...

class ImportKeyRequest(_message.Message):
    __slots__ = ("kek", "wrapped_key", "kcv", "template", "kcv_method")
    KEK_FIELD_NUMBER: _ClassVar[int]
    WRAPPED_KEY_FIELD_NUMBER: _ClassVar[int]
    KCV_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    KCV_METHOD_FIELD_NUMBER: _ClassVar[int]
    kek: _types_pb2.KeyRef
    wrapped_key: bytes
    kcv: bytes
    template: KeyTemplate
    kcv_method: _types_pb2.KcvMethod
    def __init__(self, kek: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., wrapped_key: _Optional[bytes] = ..., kcv: _Optional[bytes] = ..., template: _Optional[_Union[KeyTemplate, _Mapping]] = ..., kcv_method: _Optional[_Union[_types_pb2.KcvMethod, str]] = ...) -> None: ...

class ImportKeyResponse(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.KeyInfo
    def __init__(self, key: _Optional[_Union[_types_pb2.KeyInfo, _Mapping]] = ...) -> None: ...

class ExportKeyRequest(_message.Message):
    __slots__ = ("kek", "key", "kcv_method")
    KEK_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    KCV_METHOD_FIELD_NUMBER: _ClassVar[int]
    kek: _types_pb2.KeyRef
    key: _types_pb2.KeyRef
    kcv_method: _types_pb2.KcvMethod
    def __init__(self, kek: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., kcv_method: _Optional[_Union[_types_pb2.KcvMethod, str]] = ...) -> None: ...

class ExportKeyResponse(_message.Message):
    __slots__ = ("wrapped_key", "kcv")
    WRAPPED_KEY_FIELD_NUMBER: _ClassVar[int]
    KCV_FIELD_NUMBER: _ClassVar[int]
    wrapped_key: bytes
    kcv: bytes
    def __init__(self, wrapped_key: _Optional[bytes] = ..., kcv: _Optional[bytes] = ...) -> None: ...

class ImportTr34KeyRequest(_message.Message):
    __slots__ = ("krd_key", "token", "kdh_certificate", "ca_certificate", "kcv", "template")
    KRD_KEY_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    KDH_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    CA_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    KCV_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    krd_key: _types_pb2.KeyRef
    token: bytes
    kdh_certificate: bytes
    ca_certificate: bytes
    kcv: bytes
    template: KeyTemplate
    def __init__(self, krd_key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., token: _Optional[bytes] = ..., kdh_certificate: _Optional[bytes] = ..., ca_certificate: _Optional[bytes] = ..., kcv: _Optional[bytes] = ..., template: _Optional[_Union[KeyTemplate, _Mapping]] = ...) -> None: ...

class ImportTr34KeyResponse(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.KeyInfo
    def __init__(self, key: _Optional[_Union[_types_pb2.KeyInfo, _Mapping]] = ...) -> None: ...

class ExportTr34KeyRequest(_message.Message):
    __slots__ = ("kdh_key", "kdh_certificate", "key", "krd_certificate", "ca_certificate")
    KDH_KEY_FIELD_NUMBER: _ClassVar[int]
    KDH_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    KRD_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    CA_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    kdh_key: _types_pb2.KeyRef
    kdh_certificate: bytes
    key: _types_pb2.KeyRef
    krd_certificate: bytes
    ca_certificate: bytes
    def __init__(self, kdh_key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., kdh_certificate: _Optional[bytes] = ..., key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., krd_certificate: _Optional[bytes] = ..., ca_certificate: _Optional[bytes] = ...) -> None: ...

class ExportTr34KeyResponse(_message.Message):
    __slots__ = ("token", "kcv")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    KCV_FIELD_NUMBER: _ClassVar[int]
    token: bytes
    kcv: bytes
    def __init__(self, token: _Optional[bytes] = ..., kcv: _Optional[bytes] = ...) -> None: ...

class GetKeyRequest(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.KeyRef
    def __init__(self, key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ...) -> None: ...

class GetKeyResponse(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.KeyInfo
    def __init__(self, key: _Optional[_Union[_types_pb2.KeyInfo, _Mapping]] = ...) -> None: ...

class ListKeysRequest(_message.Message):
    __slots__ = ("key_type", "zone", "page_size", "page_token")
    KEY_TYPE_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    key_type: _types_pb2.KeyType
    zone: str
    page_size: int
    page_token: str
    def __init__(self, key_type: _Optional[_Union[_types_pb2.KeyType, str]] = ..., zone: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListKeysResponse(_message.Message):
    __slots__ = ("keys", "next_page_token")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[_types_pb2.KeyInfo]
    next_page_token: str
    def __init__(self, keys: _Optional[_Iterable[_Union[_types_pb2.KeyInfo, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RotateKeyRequest(_message.Message):
    __slots__ = ("key", "lifetime_seconds", "max_uses")
    KEY_FIELD_NUMBER: _ClassVar[int]
    LIFETIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_USES_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.KeyRef
    lifetime_seconds: int
    max_uses: int
    def __init__(self, key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., lifetime_seconds: _Optional[int] = ..., max_uses: _Optional[int] = ...) -> None: ...

class RotateKeyResponse(_message.Message):
    __slots__ = ("key", "previous_version")
    KEY_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_VERSION_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.KeyInfo
    previous_version: int
    def __init__(self, key: _Optional[_Union[_types_pb2.KeyInfo, _Mapping]] = ..., previous_version: _Optional[int] = ...) -> None: ...

class UpdateKeyStateRequest(_message.Message):
    __slots__ = ("key", "state", "reason")
    KEY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.KeyRef
    state: _types_pb2.KeyState
    reason: str
    def __init__(self, key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., state: _Optional[_Union[_types_pb2.KeyState, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class UpdateKeyStateResponse(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.KeyInfo
    def __init__(self, key: _Optional[_Union[_types_pb2.KeyInfo, _Mapping]] = ...) -> None: ...

class GetKeyCheckValueRequest(_message.Message):
    __slots__ = ("key", "kcv_method")
    KEY_FIELD_NUMBER: _ClassVar[int]
    KCV_METHOD_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.KeyRef
    kcv_method: _types_pb2.KcvMethod
    def __init__(self, key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., kcv_method: _Optional[_Union[_types_pb2.KcvMethod, str]] = ...) -> None: ...

class GetKeyCheckValueResponse(_message.Message):
    __slots__ = ("kcv", "version")
    KCV_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    kcv: bytes
    version: int
    def __init__(self, kcv: _Optional[bytes] = ..., version: _Optional[int] = ...) -> None: ...

class GetPublicKeyRequest(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.KeyRef
    def __init__(self, key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ...) -> None: ...

class ImportPublicKeyRequest(_message.Message):
    __slots__ = ("template", "public_key")
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    template: KeyTemplate
    public_key: bytes
    def __init__(self, template: _Optional[_Union[KeyTemplate, _Mapping]] = ..., public_key: _Optional[bytes] = ...) -> None: ...

class ImportPublicKeyResponse(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.KeyInfo
    def __init__(self, key: _Optional[_Union[_types_pb2.KeyInfo, _Mapping]] = ...) -> None: ...

class GetPublicKeyResponse(_message.Message):
    __slots__ = ("public_key", "algorithm", "fingerprint", "key_id", "version")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    public_key: bytes
    algorithm: _types_pb2.Algorithm
    fingerprint: bytes
    key_id: str
    version: int
    def __init__(self, public_key: _Optional[bytes] = ..., algorithm: _Optional[_Union[_types_pb2.Algorithm, str]] = ..., fingerprint: _Optional[bytes] = ..., key_id: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class AgreeKeyRequest(_message.Message):
    __slots__ = ("kak", "peer_public_key", "peer_fingerprint", "shared_info", "template", "sm2")
    KAK_FIELD_NUMBER: _ClassVar[int]
    PEER_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    PEER_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    SHARED_INFO_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    SM2_FIELD_NUMBER: _ClassVar[int]
    kak: _types_pb2.KeyRef
    peer_public_key: bytes
    peer_fingerprint: bytes
    shared_info: bytes
    template: KeyTemplate
    sm2: Sm2KeyExchange
    def __init__(self, kak: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., peer_public_key: _Optional[bytes] = ..., peer_fingerprint: _Optional[bytes] = ..., shared_info: _Optional[bytes] = ..., template: _Optional[_Union[KeyTemplate, _Mapping]] = ..., sm2: _Optional[_Union[Sm2KeyExchange, _Mapping]] = ...) -> None: ...

class Sm2KeyExchange(_message.Message):
    __slots__ = ("agreement_id", "peer_ephemeral_public_key", "role", "own_id", "peer_id", "peer_confirmation")
    AGREEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PEER_EPHEMERAL_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    OWN_ID_FIELD_NUMBER: _ClassVar[int]
    PEER_ID_FIELD_NUMBER: _ClassVar[int]
    PEER_CONFIRMATION_FIELD_NUMBER: _ClassVar[int]
    agreement_id: str
    peer_ephemeral_public_key: bytes
    role: Sm2KeyExchangeRole
    own_id: bytes
    peer_id: bytes
    peer_confirmation: bytes
    def __init__(self, agreement_id: _Optional[str] = ..., peer_ephemeral_public_key: _Optional[bytes] = ..., role: _Optional[_Union[Sm2KeyExchangeRole, str]] = ..., own_id: _Optional[bytes] = ..., peer_id: _Optional[bytes] = ..., peer_confirmation: _Optional[bytes] = ...) -> None: ...

class AgreeKeyResponse(_message.Message):
    __slots__ = ("key", "confirmation")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CONFIRMATION_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.KeyInfo
    confirmation: bytes
    def __init__(self, key: _Optional[_Union[_types_pb2.KeyInfo, _Mapping]] = ..., confirmation: _Optional[bytes] = ...) -> None: ...

class StartKeyAgreementRequest(_message.Message):
    __slots__ = ("kak",)
    KAK_FIELD_NUMBER: _ClassVar[int]
    kak: _types_pb2.KeyRef
    def __init__(self, kak: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ...) -> None: ...

class StartKeyAgreementResponse(_message.Message):
    __slots__ = ("agreement_id", "ephemeral_public_key", "expires_at")
    AGREEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    EPHEMERAL_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    agreement_id: str
    ephemeral_public_key: bytes
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, agreement_id: _Optional[str] = ..., ephemeral_public_key: _Optional[bytes] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DiversifyKeyRequest(_message.Message):
    __slots__ = ("master_key", "kek", "diversification_data", "key_type", "usage", "mode_of_use")
    MASTER_KEY_FIELD_NUMBER: _ClassVar[int]
    KEK_FIELD_NUMBER: _ClassVar[int]
    DIVERSIFICATION_DATA_FIELD_NUMBER: _ClassVar[int]
    KEY_TYPE_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    MODE_OF_USE_FIELD_NUMBER: _ClassVar[int]
    master_key: _types_pb2.KeyRef
    kek: _types_pb2.KeyRef
    diversification_data: bytes
    key_type: _types_pb2.KeyType
    usage: _types_pb2.KeyUsage
    mode_of_use: _types_pb2.ModeOfUse
    def __init__(self, master_key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., kek: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., diversification_data: _Optional[bytes] = ..., key_type: _Optional[_Union[_types_pb2.KeyType, str]] = ..., usage: _Optional[_Union[_types_pb2.KeyUsage, str]] = ..., mode_of_use: _Optional[_Union[_types_pb2.ModeOfUse, str]] = ...) -> None: ...

class DiversifyKeyResponse(_message.Message):
    __slots__ = ("key_block", "kcv", "master_version")
    KEY_BLOCK_FIELD_NUMBER: _ClassVar[int]
    KCV_FIELD_NUMBER: _ClassVar[int]
    MASTER_VERSION_FIELD_NUMBER: _ClassVar[int]
    key_block: str
    kcv: bytes
    master_version: int
    def __init__(self, key_block: _Optional[str] = ..., kcv: _Optional[bytes] = ..., master_version: _Optional[int] = ...) -> None: ...
