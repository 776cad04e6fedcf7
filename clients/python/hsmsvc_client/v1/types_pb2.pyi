import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Algorithm(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALGORITHM_UNSPECIFIED: _ClassVar[Algorithm]
    ALGORITHM_TDES_2KEY: _ClassVar[Algorithm]
    ALGORITHM_TDES_3KEY: _ClassVar[Algorithm]
    ALGORITHM_AES_128: _ClassVar[Algorithm]
    ALGORITHM_AES_192: _ClassVar[Algorithm]
    ALGORITHM_AES_256: _ClassVar[Algorithm]
    ALGORITHM_SM4: _ClassVar[Algorithm]
    ALGORITHM_RSA_2048: _ClassVar[Algorithm]
    ALGORITHM_RSA_3072: _ClassVar[Algorithm]
    ALGORITHM_SM2: _ClassVar[Algorithm]
    ALGORITHM_ECC_P521: _ClassVar[Algorithm]
    ALGORITHM_ECC_P256: _ClassVar[Algorithm]
    ALGORITHM_ECC_P384: _ClassVar[Algorithm]
    ALGORITHM_HMAC_SM3_256: _ClassVar[Algorithm]

class KeyType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KEY_TYPE_UNSPECIFIED: _ClassVar[KeyType]
    KEY_TYPE_ZMK: _ClassVar[KeyType]
    KEY_TYPE_TMK: _ClassVar[KeyType]
    KEY_TYPE_ZPK: _ClassVar[KeyType]
    KEY_TYPE_TPK: _ClassVar[KeyType]
    KEY_TYPE_PVK: _ClassVar[KeyType]
    KEY_TYPE_PSK: _ClassVar[KeyType]
    KEY_TYPE_MAK: _ClassVar[KeyType]
    KEY_TYPE_TAK: _ClassVar[KeyType]
    KEY_TYPE_DEK: _ClassVar[KeyType]
    KEY_TYPE_KTK: _ClassVar[KeyType]
    KEY_TYPE_CTK: _ClassVar[KeyType]
    KEY_TYPE_KAK: _ClassVar[KeyType]
    KEY_TYPE_SIG: _ClassVar[KeyType]
    KEY_TYPE_CSK: _ClassVar[KeyType]
    KEY_TYPE_BDK: _ClassVar[KeyType]
    KEY_TYPE_CVK: _ClassVar[KeyType]
    KEY_TYPE_IMK: _ClassVar[KeyType]
    KEY_TYPE_IPEK: _ClassVar[KeyType]
    KEY_TYPE_KDK: _ClassVar[KeyType]

class KeyUsage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KEY_USAGE_UNSPECIFIED: _ClassVar[KeyUsage]
    KEY_USAGE_DATA: _ClassVar[KeyUsage]
    KEY_USAGE_KEK: _ClassVar[KeyUsage]
    KEY_USAGE_KBPK: _ClassVar[KeyUsage]
    KEY_USAGE_MAC_ISO9797_ALG1: _ClassVar[KeyUsage]
    KEY_USAGE_MAC_ISO9797_ALG3: _ClassVar[KeyUsage]
    KEY_USAGE_MAC_CMAC: _ClassVar[KeyUsage]
    KEY_USAGE_MAC_HMAC: _ClassVar[KeyUsage]
    KEY_USAGE_PIN_ENCRYPTION: _ClassVar[KeyUsage]
    KEY_USAGE_PIN_VERIFICATION_IBM3624: _ClassVar[KeyUsage]
    KEY_USAGE_PIN_VERIFICATION_VISA_PVV: _ClassVar[KeyUsage]
    KEY_USAGE_ASYMMETRIC_KEY_WRAPPING: _ClassVar[KeyUsage]
    KEY_USAGE_DIGITAL_SIGNATURE: _ClassVar[KeyUsage]
    KEY_USAGE_ASYMMETRIC_DATA_ENCRYPTION: _ClassVar[KeyUsage]
    KEY_USAGE_BDK: _ClassVar[KeyUsage]
    KEY_USAGE_CVK: _ClassVar[KeyUsage]
    KEY_USAGE_EMV_AC: _ClassVar[KeyUsage]
    KEY_USAGE_EMV_SMC: _ClassVar[KeyUsage]
    KEY_USAGE_EMV_SMI: _ClassVar[KeyUsage]
    KEY_USAGE_EMV_DYNAMIC_NUMBERS: _ClassVar[KeyUsage]
    KEY_USAGE_EMV_OTHER: _ClassVar[KeyUsage]
    KEY_USAGE_DUKPT_INITIAL_KEY: _ClassVar[KeyUsage]
    KEY_USAGE_KEY_DERIVATION: _ClassVar[KeyUsage]

class ModeOfUse(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODE_OF_USE_UNSPECIFIED: _ClassVar[ModeOfUse]
    MODE_OF_USE_ENCRYPT_DECRYPT: _ClassVar[ModeOfUse]
    MODE_OF_USE_MAC_GENERATE_VERIFY: _ClassVar[ModeOfUse]
    MODE_OF_USE_DECRYPT_ONLY: _ClassVar[ModeOfUse]
    MODE_OF_USE_ENCRYPT_ONLY: _ClassVar[ModeOfUse]
    MODE_OF_USE_MAC_GENERATE_ONLY: _ClassVar[ModeOfUse]
    MODE_OF_USE_NO_RESTRICTIONS: _ClassVar[ModeOfUse]
    MODE_OF_USE_MAC_VERIFY_ONLY: _ClassVar[ModeOfUse]
    MODE_OF_USE_DERIVE: _ClassVar[ModeOfUse]
    MODE_OF_USE_SIGN_ONLY: _ClassVar[ModeOfUse]

class Exportability(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPORTABILITY_UNSPECIFIED: _ClassVar[Exportability]
    EXPORTABILITY_EXPORTABLE: _ClassVar[Exportability]
    EXPORTABILITY_NON_EXPORTABLE: _ClassVar[Exportability]

class KeyState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KEY_STATE_UNSPECIFIED: _ClassVar[KeyState]
    KEY_STATE_PENDING: _ClassVar[KeyState]
    KEY_STATE_ACTIVE: _ClassVar[KeyState]
    KEY_STATE_RETIRING: _ClassVar[KeyState]
    KEY_STATE_SUSPENDED: _ClassVar[KeyState]
    KEY_STATE_REVOKED: _ClassVar[KeyState]
    KEY_STATE_DESTROYED: _ClassVar[KeyState]

class PinBlockFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PIN_BLOCK_FORMAT_UNSPECIFIED: _ClassVar[PinBlockFormat]
    PIN_BLOCK_FORMAT_ISO_0: _ClassVar[PinBlockFormat]
    PIN_BLOCK_FORMAT_ISO_1: _ClassVar[PinBlockFormat]
    PIN_BLOCK_FORMAT_ISO_2: _ClassVar[PinBlockFormat]
    PIN_BLOCK_FORMAT_ISO_3: _ClassVar[PinBlockFormat]
    PIN_BLOCK_FORMAT_ISO_4: _ClassVar[PinBlockFormat]
    PIN_BLOCK_FORMAT_SM4_0: _ClassVar[PinBlockFormat]

class MacAlgorithm(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MAC_ALGORITHM_UNSPECIFIED: _ClassVar[MacAlgorithm]
    MAC_ALGORITHM_ISO9797_ALG1: _ClassVar[MacAlgorithm]
    MAC_ALGORITHM_ISO9797_ALG3: _ClassVar[MacAlgorithm]
    MAC_ALGORITHM_CMAC: _ClassVar[MacAlgorithm]
    MAC_ALGORITHM_HMAC_SHA256: _ClassVar[MacAlgorithm]
    MAC_ALGORITHM_HMAC_SM3: _ClassVar[MacAlgorithm]
    MAC_ALGORITHM_UNIONPAY_POS: _ClassVar[MacAlgorithm]

class HashAlgorithm(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HASH_ALGORITHM_UNSPECIFIED: _ClassVar[HashAlgorithm]
    HASH_ALGORITHM_SHA256: _ClassVar[HashAlgorithm]
    HASH_ALGORITHM_SM3: _ClassVar[HashAlgorithm]

class MacPadding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MAC_PADDING_UNSPECIFIED: _ClassVar[MacPadding]
    MAC_PADDING_METHOD_1: _ClassVar[MacPadding]
    MAC_PADDING_METHOD_2: _ClassVar[MacPadding]
    MAC_PADDING_METHOD_3: _ClassVar[MacPadding]

class CipherMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CIPHER_MODE_UNSPECIFIED: _ClassVar[CipherMode]
    CIPHER_MODE_ECB: _ClassVar[CipherMode]
    CIPHER_MODE_CBC: _ClassVar[CipherMode]
    CIPHER_MODE_GCM: _ClassVar[CipherMode]

class DataPadding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATA_PADDING_UNSPECIFIED: _ClassVar[DataPadding]
    DATA_PADDING_NONE: _ClassVar[DataPadding]
    DATA_PADDING_PKCS7: _ClassVar[DataPadding]
    DATA_PADDING_ISO9797_M2: _ClassVar[DataPadding]

class StoredPinMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STORED_PIN_METHOD_UNSPECIFIED: _ClassVar[StoredPinMethod]
    STORED_PIN_METHOD_ENCRYPTED: _ClassVar[StoredPinMethod]
    STORED_PIN_METHOD_DIGEST: _ClassVar[StoredPinMethod]

class KcvMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KCV_METHOD_UNSPECIFIED: _ClassVar[KcvMethod]
    KCV_METHOD_CMAC: _ClassVar[KcvMethod]
    KCV_METHOD_ECB: _ClassVar[KcvMethod]
    KCV_METHOD_HMAC: _ClassVar[KcvMethod]

class LegacyForm(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LEGACY_FORM_UNSPECIFIED: _ClassVar[LegacyForm]
    LEGACY_FORM_X917_ECB: _ClassVar[LegacyForm]
    LEGACY_FORM_PAYSHIELD_VARIANT: _ClassVar[LegacyForm]
    LEGACY_FORM_HSMSVC_VARIANT: _ClassVar[LegacyForm]
ALGORITHM_UNSPECIFIED: Algorithm
ALGORITHM_TDES_2KEY: Algorithm
ALGORITHM_TDES_3KEY: Algorithm
ALGORITHM_AES_128: Algorithm
ALGORITHM_AES_192: Algorithm
ALGORITHM_AES_256: Algorithm
ALGORITHM_SM4: Algorithm
ALGORITHM_RSA_2048: Algorithm
ALGORITHM_RSA_3072: Algorithm
ALGORITHM_SM2: Algorithm
ALGORITHM_ECC_P521: Algorithm
ALGORITHM_ECC_P256: Algorithm
ALGORITHM_ECC_P384: Algorithm
ALGORITHM_HMAC_SM3_256: Algorithm
KEY_TYPE_UNSPECIFIED: KeyType
KEY_TYPE_ZMK: KeyType
KEY_TYPE_TMK: KeyType
KEY_TYPE_ZPK: KeyType
KEY_TYPE_TPK: KeyType
KEY_TYPE_PVK: KeyType
KEY_TYPE_PSK: KeyType
KEY_TYPE_MAK: KeyType
KEY_TYPE_TAK: KeyType
KEY_TYPE_DEK: KeyType
KEY_TYPE_KTK: KeyType
KEY_TYPE_CTK: KeyType
KEY_TYPE_KAK: KeyType
KEY_TYPE_SIG: KeyType
KEY_TYPE_CSK: KeyType
KEY_TYPE_BDK: KeyType
KEY_TYPE_CVK: KeyType
KEY_TYPE_IMK: KeyType
KEY_TYPE_IPEK: KeyType
KEY_TYPE_KDK: KeyType
KEY_USAGE_UNSPECIFIED: KeyUsage
KEY_USAGE_DATA: KeyUsage
KEY_USAGE_KEK: KeyUsage
KEY_USAGE_KBPK: KeyUsage
KEY_USAGE_MAC_ISO9797_ALG1: KeyUsage
KEY_USAGE_MAC_ISO9797_ALG3: KeyUsage
KEY_USAGE_MAC_CMAC: KeyUsage
KEY_USAGE_MAC_HMAC: KeyUsage
KEY_USAGE_PIN_ENCRYPTION: KeyUsage
KEY_USAGE_PIN_VERIFICATION_IBM3624: KeyUsage
KEY_USAGE_PIN_VERIFICATION_VISA_PVV: KeyUsage
KEY_USAGE_ASYMMETRIC_KEY_WRAPPING: KeyUsage
KEY_USAGE_DIGITAL_SIGNATURE: KeyUsage
KEY_USAGE_ASYMMETRIC_DATA_ENCRYPTION: KeyUsage
KEY_USAGE_BDK: KeyUsage
KEY_USAGE_CVK: KeyUsage
KEY_USAGE_EMV_AC: KeyUsage
KEY_USAGE_EMV_SMC: KeyUsage
KEY_USAGE_EMV_SMI: KeyUsage
KEY_USAGE_EMV_DYNAMIC_NUMBERS: KeyUsage
KEY_USAGE_EMV_OTHER: KeyUsage
KEY_USAGE_DUKPT_INITIAL_KEY: KeyUsage
KEY_USAGE_KEY_DERIVATION: KeyUsage
MODE_OF_USE_UNSPECIFIED: ModeOfUse
MODE_OF_USE_ENCRYPT_DECRYPT: ModeOfUse
MODE_OF_USE_MAC_GENERATE_VERIFY: ModeOfUse
MODE_OF_USE_DECRYPT_ONLY: ModeOfUse
MODE_OF_USE_ENCRYPT_ONLY: ModeOfUse
MODE_OF_USE_MAC_GENERATE_ONLY: ModeOfUse
MODE_OF_USE_NO_RESTRICTIONS: ModeOfUse
MODE_OF_USE_MAC_VERIFY_ONLY: ModeOfUse
MODE_OF_USE_DERIVE: ModeOfUse
MODE_OF_USE_SIGN_ONLY: ModeOfUse
EXPORTABILITY_UNSPECIFIED: Exportability
EXPORTABILITY_EXPORTABLE: Exportability
EXPORTABILITY_NON_EXPORTABLE: Exportability
KEY_STATE_UNSPECIFIED: KeyState
KEY_STATE_PENDING: KeyState
KEY_STATE_ACTIVE: KeyState
KEY_STATE_RETIRING: KeyState
KEY_STATE_SUSPENDED: KeyState
KEY_STATE_REVOKED: KeyState
KEY_STATE_DESTROYED: KeyState
PIN_BLOCK_FORMAT_UNSPECIFIED: PinBlockFormat
PIN_BLOCK_FORMAT_ISO_0: PinBlockFormat
PIN_BLOCK_FORMAT_ISO_1: PinBlockFormat
PIN_BLOCK_FORMAT_ISO_2: PinBlockFormat
PIN_BLOCK_FORMAT_ISO_3: PinBlockFormat
PIN_BLOCK_FORMAT_ISO_4: PinBlockFormat
PIN_BLOCK_FORMAT_SM4_0: PinBlockFormat
MAC_ALGORITHM_UNSPECIFIED: MacAlgorithm
MAC_ALGORITHM_ISO9797_ALG1: MacAlgorithm
MAC_ALGORITHM_ISO9797_ALG3: MacAlgorithm
MAC_ALGORITHM_CMAC: MacAlgorithm
MAC_ALGORITHM_HMAC_SHA256: MacAlgorithm
MAC_ALGORITHM_HMAC_SM3: MacAlgorithm
MAC_ALGORITHM_UNIONPAY_POS: MacAlgorithm
HASH_ALGORITHM_UNSPECIFIED: HashAlgorithm
HASH_ALGORITHM_SHA256: HashAlgorithm
HASH_ALGORITHM_SM3: HashAlgorithm
MAC_PADDING_UNSPECIFIED: MacPadding
MAC_PADDING_METHOD_1: MacPadding
MAC_PADDING_METHOD_2: MacPadding
MAC_PADDING_METHOD_3: MacPadding
CIPHER_MODE_UNSPECIFIED: CipherMode
CIPHER_MODE_ECB: CipherMode
CIPHER_MODE_CBC: CipherMode
CIPHER_MODE_GCM: CipherMode
DATA_PADDING_UNSPECIFIED: DataPadding
DATA_PADDING_NONE: DataPadding
DATA_PADDING_PKCS7: DataPadding
DATA_PADDING_ISO9797_M2: DataPadding
STORED_PIN_METHOD_UNSPECIFIED: StoredPinMethod
STORED_PIN_METHOD_ENCRYPTED: StoredPinMethod
STORED_PIN_METHOD_DIGEST: StoredPinMethod
KCV_METHOD_UNSPECIFIED: KcvMethod
KCV_METHOD_CMAC: KcvMethod
KCV_METHOD_ECB: KcvMethod
KCV_METHOD_HMAC: KcvMethod
LEGACY_FORM_UNSPECIFIED: LegacyForm
LEGACY_FORM_X917_ECB: LegacyForm
LEGACY_FORM_PAYSHIELD_VARIANT: LegacyForm
LEGACY_FORM_HSMSVC_VARIANT: LegacyForm

class KeyRef(_message.Message):
    __slots__ = ("key_id", "alias", "version")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    alias: str
    version: int
    def __init__(self, key_id: _Optional[str] = ..., alias: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class KeyInfo(_message.Message):
    __slots__ = ("key_id", "version", "alias", "key_type", "algorithm", "usage", "mode_of_use", "exportability", "zone", "state", "kcv", "create_time", "activate_time", "expire_time", "use_count", "max_uses", "legacy_key_types", "legacy_form", "kcv_method", "next_rotation_time")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    KEY_TYPE_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    MODE_OF_USE_FIELD_NUMBER: _ClassVar[int]
    EXPORTABILITY_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    KCV_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ACTIVATE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    USE_COUNT_FIELD_NUMBER: _ClassVar[int]
    MAX_USES_FIELD_NUMBER: _ClassVar[int]
    LEGACY_KEY_TYPES_FIELD_NUMBER: _ClassVar[int]
    LEGACY_FORM_FIELD_NUMBER: _ClassVar[int]
    KCV_METHOD_FIELD_NUMBER: _ClassVar[int]
    NEXT_ROTATION_TIME_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    version: int
    alias: str
    key_type: KeyType
    algorithm: Algorithm
    usage: KeyUsage
    mode_of_use: ModeOfUse
    exportability: Exportability
    zone: str
    state: KeyState
    kcv: bytes
    create_time: _timestamp_pb2.Timestamp
    activate_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    use_count: int
    max_uses: int
    legacy_key_types: _containers.RepeatedScalarFieldContainer[KeyType]
    legacy_form: LegacyForm
    kcv_method: KcvMethod
    next_rotation_time: _timestamp_pb2.Timestamp
    def __init__(self, key_id: _Optional[str] = ..., version: _Optional[int] = ..., alias: _Optional[str] = ..., key_type: _Optional[_Union[KeyType, str]] = ..., algorithm: _Optional[_Union[Algorithm, str]] = ..., usage: _Optional[_Union[KeyUsage, str]] = ..., mode_of_use: _Optional[_Union[ModeOfUse, str]] = ..., exportability: _Optional[_Union[Exportability, str]] = ..., zone: _Optional[str] = ..., state: _Optional[_Union[KeyState, str]] = ..., kcv: _Optional[bytes] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., activate_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., use_count: _Optional[int] = ..., max_uses: _Optional[int] = ..., legacy_key_types: _Optional[_Iterable[_Union[KeyType, str]]] = ..., legacy_form: _Optional[_Union[LegacyForm, str]] = ..., kcv_method: _Optional[_Union[KcvMethod, str]] = ..., next_rotation_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ItemError(_message.Message):
    __slots__ = ("index", "code", "field", "message")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    index: int
    code: int
    field: str
    message: str
    def __init__(self, index: _Optional[int] = ..., code: _Optional[int] = ..., field: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...
