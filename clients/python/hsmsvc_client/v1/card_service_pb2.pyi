from hsmsvc_client.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CvvKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CVV_KIND_UNSPECIFIED: _ClassVar[CvvKind]
    CVV_KIND_CVV: _ClassVar[CvvKind]
    CVV_KIND_CVV2: _ClassVar[CvvKind]
    CVV_KIND_ICVV: _ClassVar[CvvKind]

class MasterKeyDerivation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MASTER_KEY_DERIVATION_UNSPECIFIED: _ClassVar[MasterKeyDerivation]
    MASTER_KEY_DERIVATION_OPTION_A: _ClassVar[MasterKeyDerivation]
    MASTER_KEY_DERIVATION_OPTION_B: _ClassVar[MasterKeyDerivation]

class DynamicCvvKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DYNAMIC_CVV_KIND_UNSPECIFIED: _ClassVar[DynamicCvvKind]
    DYNAMIC_CVV_KIND_DCVV: _ClassVar[DynamicCvvKind]
    DYNAMIC_CVV_KIND_CVC3: _ClassVar[DynamicCvvKind]

class SessionKeyDerivation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SESSION_KEY_DERIVATION_UNSPECIFIED: _ClassVar[SessionKeyDerivation]
    SESSION_KEY_DERIVATION_EMV_CSK: _ClassVar[SessionKeyDerivation]
    SESSION_KEY_DERIVATION_MASTERCARD_SKD: _ClassVar[SessionKeyDerivation]
    SESSION_KEY_DERIVATION_VISA_CVN10: _ClassVar[SessionKeyDerivation]
    SESSION_KEY_DERIVATION_VISA_CVN18: _ClassVar[SessionKeyDerivation]
    SESSION_KEY_DERIVATION_VISA_CVN22: _ClassVar[SessionKeyDerivation]

class ScriptKeyDerivation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCRIPT_KEY_DERIVATION_UNSPECIFIED: _ClassVar[ScriptKeyDerivation]
    SCRIPT_KEY_DERIVATION_EMV_CSK: _ClassVar[ScriptKeyDerivation]
    SCRIPT_KEY_DERIVATION_VISA: _ClassVar[ScriptKeyDerivation]

class ScriptEncryption(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCRIPT_ENCRYPTION_UNSPECIFIED: _ClassVar[ScriptEncryption]
    SCRIPT_ENCRYPTION_EMV: _ClassVar[ScriptEncryption]
    SCRIPT_ENCRYPTION_MASTERCARD: _ClassVar[ScriptEncryption]
    SCRIPT_ENCRYPTION_VISA: _ClassVar[ScriptEncryption]
CVV_KIND_UNSPECIFIED: CvvKind
CVV_KIND_CVV: CvvKind
CVV_KIND_CVV2: CvvKind
CVV_KIND_ICVV: CvvKind
MASTER_KEY_DERIVATION_UNSPECIFIED: MasterKeyDerivation
MASTER_KEY_DERIVATION_OPTION_A: MasterKeyDerivation
MASTER_KEY_DERIVATION_OPTION_B: MasterKeyDerivation
DYNAMIC_CVV_KIND_UNSPECIFIED: DynamicCvvKind
DYNAMIC_CVV_KIND_DCVV: DynamicCvvKind
DYNAMIC_CVV_KIND_CVC3: DynamicCvvKind
SESSION_KEY_DERIVATION_UNSPECIFIED: SessionKeyDerivation
SESSION_KEY_DERIVATION_EMV_CSK: SessionKeyDerivation
SESSION_KEY_DERIVATION_MASTERCARD_SKD: SessionKeyDerivation
SESSION_KEY_DERIVATION_VISA_CVN10: SessionKeyDerivation
SESSION_KEY_DERIVATION_VISA_CVN18: SessionKeyDerivation
SESSION_KEY_DERIVATION_VISA_CVN22: SessionKeyDerivation
SCRIPT_KEY_DERIVATION_UNSPECIFIED: ScriptKeyDerivation
SCRIPT_KEY_DERIVATION_EMV_CSK: ScriptKeyDerivation
SCRIPT_KEY_DERIVATION_VISA: ScriptKeyDerivation
SCRIPT_ENCRYPTION_UNSPECIFIED: ScriptEncryption
SCRIPT_ENCRYPTION_EMV: ScriptEncryption
SCRIPT_ENCRYPTION_MASTERCARD: ScriptEncryption
SCRIPT_ENCRYPTION_VISA: ScriptEncryption

class CardData(_message.Message):
    __slots__ = ("kind", "pan", "expiry", "service_code")
    KIND_FIELD_NUMBER: _ClassVar[int]
    PAN_FIELD_NUMBER: _ClassVar[int]
    EXPIRY_FIELD_NUMBER: _ClassVar[int]
    SERVICE_CODE_FIELD_NUMBER: _ClassVar[int]
    kind: CvvKind
    pan: str
    expiry: str
    service_code: str
    def __init__(self, kind: _Optional[_Union[CvvKind, str]] = ..., pan: _Optional[str] = ..., expiry: _Optional[str] = ..., service_code: _Optional[str] = ...) -> None: ...

class GenerateCvvRequest(_message.Message):
    __slots__ = ("key", "card", "length")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CARD_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.KeyRef
    card: CardData
    length: int
    def __init__(self, key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., card: _Optional[_Union[CardData, _Mapping]] = ..., length: _Optional[int] = ...) -> None: ...

class GenerateCvvResponse(_message.Message):
    __slots__ = ("cvv", "key_version")
    CVV_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    cvv: str
    key_version: int
    def __init__(self, cvv: _Optional[str] = ..., key_version: _Optional[int] = ...) -> None: ...

class VerifyCvvRequest(_message.Message):
    __slots__ = ("key", "card", "cvv")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CARD_FIELD_NUMBER: _ClassVar[int]
    CVV_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.KeyRef
    card: CardData
    cvv: str
    def __init__(self, key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., card: _Optional[_Union[CardData, _Mapping]] = ..., cvv: _Optional[str] = ...) -> None: ...

class VerifyCvvResponse(_message.Message):
    __slots__ = ("verified",)
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    verified: bool
    def __init__(self, verified: _Optional[bool] = ...) -> None: ...

class VerifyCvvBatchRequest(_message.Message):
    __slots__ = ("key", "cards", "cvvs")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CARDS_FIELD_NUMBER: _ClassVar[int]
    CVVS_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.KeyRef
    cards: _containers.RepeatedCompositeFieldContainer[CardData]
    cvvs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., cards: _Optional[_Iterable[_Union[CardData, _Mapping]]] = ..., cvvs: _Optional[_Iterable[str]] = ...) -> None: ...

class VerifyCvvBatchResponse(_message.Message):
    __slots__ = ("verified", "errors")
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    verified: _containers.RepeatedScalarFieldContainer[bool]
    errors: _containers.RepeatedCompositeFieldContainer[_types_pb2.ItemError]
    def __init__(self, verified: _Optional[_Iterable[bool]] = ..., errors: _Optional[_Iterable[_Union[_types_pb2.ItemError, _Mapping]]] = ...) -> None: ...

class CardKey(_message.Message):
    __slots__ = ("pan", "psn", "derivation")
    PAN_FIELD_NUMBER: _ClassVar[int]
    PSN_FIELD_NUMBER: _ClassVar[int]
    DERIVATION_FIELD_NUMBER: _ClassVar[int]
    pan: str
    psn: str
    derivation: MasterKeyDerivation
    def __init__(self, pan: _Optional[str] = ..., psn: _Optional[str] = ..., derivation: _Optional[_Union[MasterKeyDerivation, str]] = ...) -> None: ...

class VerifyDynamicCvvRequest(_message.Message):
    __slots__ = ("key", "kind", "card", "atc", "expiry", "service_code", "track", "unpredictable_number", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CARD_FIELD_NUMBER: _ClassVar[int]
    ATC_FIELD_NUMBER: _ClassVar[int]
    EXPIRY_FIELD_NUMBER: _ClassVar[int]
    SERVICE_CODE_FIELD_NUMBER: _ClassVar[int]
    TRACK_FIELD_NUMBER: _ClassVar[int]
    UNPREDICTABLE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.KeyRef
    kind: DynamicCvvKind
    card: CardKey
    atc: bytes
    expiry: str
    service_code: str
    track: bytes
    unpredictable_number: bytes
    value: str
    def __init__(self, key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., kind: _Optional[_Union[DynamicCvvKind, str]] = ..., card: _Optional[_Union[CardKey, _Mapping]] = ..., atc: _Optional[bytes] = ..., expiry: _Optional[str] = ..., service_code: _Optional[str] = ..., track: _Optional[bytes] = ..., unpredictable_number: _Optional[bytes] = ..., value: _Optional[str] = ...) -> None: ...

class VerifyDynamicCvvResponse(_message.Message):
    __slots__ = ("verified",)
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    verified: bool
    def __init__(self, verified: _Optional[bool] = ...) -> None: ...

class ArpcMethod1(_message.Message):
    __slots__ = ("arc", "card_key")
    ARC_FIELD_NUMBER: _ClassVar[int]
    CARD_KEY_FIELD_NUMBER: _ClassVar[int]
    arc: bytes
    card_key: bool
    def __init__(self, arc: _Optional[bytes] = ..., card_key: _Optional[bool] = ...) -> None: ...

class ArpcMethod2(_message.Message):
    __slots__ = ("csu", "proprietary_data")
    CSU_FIELD_NUMBER: _ClassVar[int]
    PROPRIETARY_DATA_FIELD_NUMBER: _ClassVar[int]
    csu: bytes
    proprietary_data: bytes
    def __init__(self, csu: _Optional[bytes] = ..., proprietary_data: _Optional[bytes] = ...) -> None: ...

class Authorisation(_message.Message):
    __slots__ = ("card", "session_key", "atc", "unpredictable_number", "transaction_data", "arqc", "arpc_method_1", "arpc_method_2")
    CARD_FIELD_NUMBER: _ClassVar[int]
    SESSION_KEY_FIELD_NUMBER: _ClassVar[int]
    ATC_FIELD_NUMBER: _ClassVar[int]
    UNPREDICTABLE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_DATA_FIELD_NUMBER: _ClassVar[int]
    ARQC_FIELD_NUMBER: _ClassVar[int]
    ARPC_METHOD_1_FIELD_NUMBER: _ClassVar[int]
    ARPC_METHOD_2_FIELD_NUMBER: _ClassVar[int]
    card: CardKey
    session_key: SessionKeyDerivation
    atc: bytes
    unpredictable_number: bytes
    transaction_data: bytes
    arqc: bytes
    arpc_method_1: ArpcMethod1
    arpc_method_2: ArpcMethod2
    def __init__(self, card: _Optional[_Union[CardKey, _Mapping]] = ..., session_key: _Optional[_Union[SessionKeyDerivation, str]] = ..., atc: _Optional[bytes] = ..., unpredictable_number: _Optional[bytes] = ..., transaction_data: _Optional[bytes] = ..., arqc: _Optional[bytes] = ..., arpc_method_1: _Optional[_Union[ArpcMethod1, _Mapping]] = ..., arpc_method_2: _Optional[_Union[ArpcMethod2, _Mapping]] = ...) -> None: ...

class VerifyArqcRequest(_message.Message):
    __slots__ = ("key", "authorisation")
    KEY_FIELD_NUMBER: _ClassVar[int]
    AUTHORISATION_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.KeyRef
    authorisation: Authorisation
    def __init__(self, key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., authorisation: _Optional[_Union[Authorisation, _Mapping]] = ...) -> None: ...

class VerifyArqcResponse(_message.Message):
    __slots__ = ("verified", "arpc", "key_version")
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    ARPC_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    verified: bool
    arpc: bytes
    key_version: int
    def __init__(self, verified: _Optional[bool] = ..., arpc: _Optional[bytes] = ..., key_version: _Optional[int] = ...) -> None: ...

class VerifyArqcBatchRequest(_message.Message):
    __slots__ = ("key", "authorisations")
    KEY_FIELD_NUMBER: _ClassVar[int]
    AUTHORISATIONS_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.KeyRef
    authorisations: _containers.RepeatedCompositeFieldContainer[Authorisation]
    def __init__(self, key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., authorisations: _Optional[_Iterable[_Union[Authorisation, _Mapping]]] = ...) -> None: ...

class VerifyArqcBatchResponse(_message.Message):
    __slots__ = ("verified", "arpcs", "errors", "key_version")
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    ARPCS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    verified: _containers.RepeatedScalarFieldContainer[bool]
    arpcs: _containers.RepeatedScalarFieldContainer[bytes]
    errors: _containers.RepeatedCompositeFieldContainer[_types_pb2.ItemError]
    key_version: int
    def __init__(self, verified: _Optional[_Iterable[bool]] = ..., arpcs: _Optional[_Iterable[bytes]] = ..., errors: _Optional[_Iterable[_Union[_types_pb2.ItemError, _Mapping]]] = ..., key_version: _Optional[int] = ...) -> None: ...

class IssuerScript(_message.Message):
    __slots__ = ("card", "session_key", "atc", "arqc", "command", "encryption", "mac_over_transaction", "mac_length")
    CARD_FIELD_NUMBER: _ClassVar[int]
    SESSION_KEY_FIELD_NUMBER: _ClassVar[int]
    ATC_FIELD_NUMBER: _ClassVar[int]
    ARQC_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ENCRYPTION_FIELD_NUMBER: _ClassVar[int]
    MAC_OVER_TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    MAC_LENGTH_FIELD_NUMBER: _ClassVar[int]
    card: CardKey
    session_key: ScriptKeyDerivation
    atc: bytes
    arqc: bytes
    command: bytes
    encryption: ScriptEncryption
    mac_over_transaction: bool
    mac_length: int
    def __init__(self, card: _Optional[_Union[CardKey, _Mapping]] = ..., session_key: _Optional[_Union[ScriptKeyDerivation, str]] = ..., atc: _Optional[bytes] = ..., arqc: _Optional[bytes] = ..., command: _Optional[bytes] = ..., encryption: _Optional[_Union[ScriptEncryption, str]] = ..., mac_over_transaction: _Optional[bool] = ..., mac_length: _Optional[int] = ...) -> None: ...

class GenerateIssuerScriptRequest(_message.Message):
    __slots__ = ("integrity_key", "script", "data")
    INTEGRITY_KEY_FIELD_NUMBER: _ClassVar[int]
    SCRIPT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    integrity_key: _types_pb2.KeyRef
    script: IssuerScript
    data: bytes
    def __init__(self, integrity_key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., script: _Optional[_Union[IssuerScript, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class GenerateIssuerScriptResponse(_message.Message):
    __slots__ = ("command",)
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    command: bytes
    def __init__(self, command: _Optional[bytes] = ...) -> None: ...

class GeneratePinChangeScriptRequest(_message.Message):
    __slots__ = ("integrity_key", "confidentiality_key", "script", "pin_key", "format", "pin_block", "pan", "ac_key", "current_pin_block")
    INTEGRITY_KEY_FIELD_NUMBER: _ClassVar[int]
    CONFIDENTIALITY_KEY_FIELD_NUMBER: _ClassVar[int]
    SCRIPT_FIELD_NUMBER: _ClassVar[int]
    PIN_KEY_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    PIN_BLOCK_FIELD_NUMBER: _ClassVar[int]
    PAN_FIELD_NUMBER: _ClassVar[int]
    AC_KEY_FIELD_NUMBER: _ClassVar[int]
    CURRENT_PIN_BLOCK_FIELD_NUMBER: _ClassVar[int]
    integrity_key: _types_pb2.KeyRef
    confidentiality_key: _types_pb2.KeyRef
    script: IssuerScript
    pin_key: _types_pb2.KeyRef
    format: _types_pb2.PinBlockFormat
    pin_block: bytes
    pan: str
    ac_key: _types_pb2.KeyRef
    current_pin_block: bytes
    def __init__(self, integrity_key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., confidentiality_key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., script: _Optional[_Union[IssuerScript, _Mapping]] = ..., pin_key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., format: _Optional[_Union[_types_pb2.PinBlockFormat, str]] = ..., pin_block: _Optional[bytes] = ..., pan: _Optional[str] = ..., ac_key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., current_pin_block: _Optional[bytes] = ...) -> None: ...

class GeneratePinChangeScriptResponse(_message.Message):
    __slots__ = ("command",)
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    command: bytes
    def __init__(self, command: _Optional[bytes] = ...) -> None: ...
