from hsmsvc_client.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OneTimeKey(_message.Message):
    __slots__ = ("transport_key", "algorithm", "wrapped_key")
    TRANSPORT_KEY_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    WRAPPED_KEY_FIELD_NUMBER: _ClassVar[int]
    transport_key: _types_pb2.KeyRef
    algorithm: _types_pb2.Algorithm
    wrapped_key: bytes
    def __init__(self, transport_key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., algorithm: _Optional[_Union[_types_pb2.Algorithm, str]] = ..., wrapped_key: _Optional[bytes] = ...) -> None: ...

class DukptKey(_message.Message):
    __slots__ = ("bdk", "ksn", "pin_key_algorithm")
    BDK_FIELD_NUMBER: _ClassVar[int]
    KSN_FIELD_NUMBER: _ClassVar[int]
    PIN_KEY_ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    bdk: _types_pb2.KeyRef
    ksn: bytes
    pin_key_algorithm: _types_pb2.Algorithm
    def __init__(self, bdk: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., ksn: _Optional[bytes] = ..., pin_key_algorithm: _Optional[_Union[_types_pb2.Algorithm, str]] = ...) -> None: ...

class TranslatePinRequest(_message.Message):
    __slots__ = ("source_key", "source_one_time_key", "source_dukpt", "source_format", "destination_key", "destination_format", "pin_block", "pan")
    SOURCE_KEY_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ONE_TIME_KEY_FIELD_NUMBER: _ClassVar[int]
    SOURCE_DUKPT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_KEY_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FORMAT_FIELD_NUMBER: _ClassVar[int]
    PIN_BLOCK_FIELD_NUMBER: _ClassVar[int]
    PAN_FIELD_NUMBER: _ClassVar[int]
    source_key: _types_pb2.KeyRef
    source_one_time_key: OneTimeKey
    source_dukpt: DukptKey
    source_format: _types_pb2.PinBlockFormat
    destination_key: _types_pb2.KeyRef
    destination_format: _types_pb2.PinBlockFormat
    pin_block: bytes
    pan: str
    def __init__(self, source_key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., source_one_time_key: _Optional[_Union[OneTimeKey, _Mapping]] = ..., source_dukpt: _Optional[_Union[DukptKey, _Mapping]] = ..., source_format: _Optional[_Union[_types_pb2.PinBlockFormat, str]] = ..., destination_key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., destination_format: _Optional[_Union[_types_pb2.PinBlockFormat, str]] = ..., pin_block: _Optional[bytes] = ..., pan: _Optional[str] = ...) -> None: ...

class TranslatePinResponse(_message.Message):
    __slots__ = ("pin_block", "destination_key_version", "sign_on_required")
    PIN_BLOCK_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    SIGN_ON_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    pin_block: bytes
    destination_key_version: int
    sign_on_required: bool
    def __init__(self, pin_block: _Optional[bytes] = ..., destination_key_version: _Optional[int] = ..., sign_on_required: _Optional[bool] = ...) -> None: ...

class TranslatePinBatchRequest(_message.Message):
    __slots__ = ("source_key", "source_format", "destination_key", "destination_format", "pin_blocks", "pans")
    SOURCE_KEY_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_KEY_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FORMAT_FIELD_NUMBER: _ClassVar[int]
    PIN_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    PANS_FIELD_NUMBER: _ClassVar[int]
    source_key: _types_pb2.KeyRef
    source_format: _types_pb2.PinBlockFormat
    destination_key: _types_pb2.KeyRef
    destination_format: _types_pb2.PinBlockFormat
    pin_blocks: bytes
    pans: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, source_key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., source_format: _Optional[_Union[_types_pb2.PinBlockFormat, str]] = ..., destination_key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., destination_format: _Optional[_Union[_types_pb2.PinBlockFormat, str]] = ..., pin_blocks: _Optional[bytes] = ..., pans: _Optional[_Iterable[str]] = ...) -> None: ...

class TranslatePinBatchResponse(_message.Message):
    __slots__ = ("pin_blocks", "errors", "destination_key_version")
    PIN_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    pin_blocks: bytes
    errors: _containers.RepeatedCompositeFieldContainer[_types_pb2.ItemError]
    destination_key_version: int
    def __init__(self, pin_blocks: _Optional[bytes] = ..., errors: _Optional[_Iterable[_Union[_types_pb2.ItemError, _Mapping]]] = ..., destination_key_version: _Optional[int] = ...) -> None: ...

class StreamTranslatePinRequest(_message.Message):
    __slots__ = ("correlation_id", "request")
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    correlation_id: int
    request: TranslatePinRequest
    def __init__(self, correlation_id: _Optional[int] = ..., request: _Optional[_Union[TranslatePinRequest, _Mapping]] = ...) -> None: ...

class StreamTranslatePinResponse(_message.Message):
    __slots__ = ("correlation_id", "code", "message", "response")
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    correlation_id: int
    code: int
    message: str
    response: TranslatePinResponse
    def __init__(self, correlation_id: _Optional[int] = ..., code: _Optional[int] = ..., message: _Optional[str] = ..., response: _Optional[_Union[TranslatePinResponse, _Mapping]] = ...) -> None: ...

class StoredPinCheck(_message.Message):
    __slots__ = ("psk", "account", "method", "stored_pin")
    PSK_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    STORED_PIN_FIELD_NUMBER: _ClassVar[int]
    psk: _types_pb2.KeyRef
    account: str
    method: _types_pb2.StoredPinMethod
    stored_pin: bytes
    def __init__(self, psk: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., account: _Optional[str] = ..., method: _Optional[_Union[_types_pb2.StoredPinMethod, str]] = ..., stored_pin: _Optional[bytes] = ...) -> None: ...

class Ibm3624Check(_message.Message):
    __slots__ = ("pvk", "validation_data", "offset")
    PVK_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_DATA_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    pvk: _types_pb2.KeyRef
    validation_data: str
    offset: str
    def __init__(self, pvk: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., validation_data: _Optional[str] = ..., offset: _Optional[str] = ...) -> None: ...

class PvvCheck(_message.Message):
    __slots__ = ("pvk", "pvki", "pvv")
    PVK_FIELD_NUMBER: _ClassVar[int]
    PVKI_FIELD_NUMBER: _ClassVar[int]
    PVV_FIELD_NUMBER: _ClassVar[int]
    pvk: _types_pb2.KeyRef
    pvki: int
    pvv: str
    def __init__(self, pvk: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., pvki: _Optional[int] = ..., pvv: _Optional[str] = ...) -> None: ...

class VerifyPinRequest(_message.Message):
    __slots__ = ("key", "one_time_key", "dukpt", "format", "pin_block", "pan", "stored", "ibm3624", "pvv")
    KEY_FIELD_NUMBER: _ClassVar[int]
    ONE_TIME_KEY_FIELD_NUMBER: _ClassVar[int]
    DUKPT_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    PIN_BLOCK_FIELD_NUMBER: _ClassVar[int]
    PAN_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    IBM3624_FIELD_NUMBER: _ClassVar[int]
    PVV_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.KeyRef
    one_time_key: OneTimeKey
    dukpt: DukptKey
    format: _types_pb2.PinBlockFormat
    pin_block: bytes
    pan: str
    stored: StoredPinCheck
    ibm3624: Ibm3624Check
    pvv: PvvCheck
    def __init__(self, key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., one_time_key: _Optional[_Union[OneTimeKey, _Mapping]] = ..., dukpt: _Optional[_Union[DukptKey, _Mapping]] = ..., format: _Optional[_Union[_types_pb2.PinBlockFormat, str]] = ..., pin_block: _Optional[bytes] = ..., pan: _Optional[str] = ..., stored: _Optional[_Union[StoredPinCheck, _Mapping]] = ..., ibm3624: _Optional[_Union[Ibm3624Check, _Mapping]] = ..., pvv: _Optional[_Union[PvvCheck, _Mapping]] = ...) -> None: ...

class VerifyPinResponse(_message.Message):
    __slots__ = ("verified",)
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    verified: bool
    def __init__(self, verified: _Optional[bool] = ...) -> None: ...

class VerifyPinBatchRequest(_message.Message):
    __slots__ = ("key", "format", "pin_blocks", "pans", "psk", "method", "accounts", "stored_pins")
    KEY_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    PIN_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    PANS_FIELD_NUMBER: _ClassVar[int]
    PSK_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    STORED_PINS_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.KeyRef
    format: _types_pb2.PinBlockFormat
    pin_blocks: bytes
    pans: _containers.RepeatedScalarFieldContainer[str]
    psk: _types_pb2.KeyRef
    method: _types_pb2.StoredPinMethod
    accounts: _containers.RepeatedScalarFieldContainer[str]
    stored_pins: bytes
    def __init__(self, key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., format: _Optional[_Union[_types_pb2.PinBlockFormat, str]] = ..., pin_blocks: _Optional[bytes] = ..., pans: _Optional[_Iterable[str]] = ..., psk: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., method: _Optional[_Union[_types_pb2.StoredPinMethod, str]] = ..., accounts: _Optional[_Iterable[str]] = ..., stored_pins: _Optional[bytes] = ...) -> None: ...

class VerifyPinBatchResponse(_message.Message):
    __slots__ = ("verified", "errors")
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    verified: _containers.RepeatedScalarFieldContainer[bool]
    errors: _containers.RepeatedCompositeFieldContainer[_types_pb2.ItemError]
    def __init__(self, verified: _Optional[_Iterable[bool]] = ..., errors: _Optional[_Iterable[_Union[_types_pb2.ItemError, _Mapping]]] = ...) -> None: ...

class EncryptPinForStorageRequest(_message.Message):
    __slots__ = ("key", "format", "pin_block", "pan", "psk", "account")
    KEY_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    PIN_BLOCK_FIELD_NUMBER: _ClassVar[int]
    PAN_FIELD_NUMBER: _ClassVar[int]
    PSK_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.KeyRef
    format: _types_pb2.PinBlockFormat
    pin_block: bytes
    pan: str
    psk: _types_pb2.KeyRef
    account: str
    def __init__(self, key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., format: _Optional[_Union[_types_pb2.PinBlockFormat, str]] = ..., pin_block: _Optional[bytes] = ..., pan: _Optional[str] = ..., psk: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., account: _Optional[str] = ...) -> None: ...

class EncryptPinForStorageResponse(_message.Message):
    __slots__ = ("method", "stored_pin", "psk_version")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    STORED_PIN_FIELD_NUMBER: _ClassVar[int]
    PSK_VERSION_FIELD_NUMBER: _ClassVar[int]
    method: _types_pb2.StoredPinMethod
    stored_pin: bytes
    psk_version: int
    def __init__(self, method: _Optional[_Union[_types_pb2.StoredPinMethod, str]] = ..., stored_pin: _Optional[bytes] = ..., psk_version: _Optional[int] = ...) -> None: ...

class ChangeStoredPinRequest(_message.Message):
    __slots__ = ("key", "format", "pan", "old_pin_block", "new_pin_block", "current")
    KEY_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    PAN_FIELD_NUMBER: _ClassVar[int]
    OLD_PIN_BLOCK_FIELD_NUMBER: _ClassVar[int]
    NEW_PIN_BLOCK_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.KeyRef
    format: _types_pb2.PinBlockFormat
    pan: str
    old_pin_block: bytes
    new_pin_block: bytes
    current: StoredPinCheck
    def __init__(self, key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., format: _Optional[_Union[_types_pb2.PinBlockFormat, str]] = ..., pan: _Optional[str] = ..., old_pin_block: _Optional[bytes] = ..., new_pin_block: _Optional[bytes] = ..., current: _Optional[_Union[StoredPinCheck, _Mapping]] = ...) -> None: ...

class ChangeStoredPinResponse(_message.Message):
    __slots__ = ("verified", "stored_pin", "psk_version")
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    STORED_PIN_FIELD_NUMBER: _ClassVar[int]
    PSK_VERSION_FIELD_NUMBER: _ClassVar[int]
    verified: bool
    stored_pin: bytes
    psk_version: int
    def __init__(self, verified: _Optional[bool] = ..., stored_pin: _Optional[bytes] = ..., psk_version: _Optional[int] = ...) -> None: ...

class GeneratePinOffsetRequest(_message.Message):
    __slots__ = ("key", "format", "pin_block", "pan", "pvk", "validation_data")
    KEY_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    PIN_BLOCK_FIELD_NUMBER: _ClassVar[int]
    PAN_FIELD_NUMBER: _ClassVar[int]
    PVK_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_DATA_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.KeyRef
    format: _types_pb2.PinBlockFormat
    pin_block: bytes
    pan: str
    pvk: _types_pb2.KeyRef
    validation_data: str
    def __init__(self, key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., format: _Optional[_Union[_types_pb2.PinBlockFormat, str]] = ..., pin_block: _Optional[bytes] = ..., pan: _Optional[str] = ..., pvk: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., validation_data: _Optional[str] = ...) -> None: ...

class GeneratePinOffsetResponse(_message.Message):
    __slots__ = ("offset",)
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    offset: str
    def __init__(self, offset: _Optional[str] = ...) -> None: ...

class GeneratePvvRequest(_message.Message):
    __slots__ = ("key", "format", "pin_block", "pan", "pvk", "pvki")
    KEY_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    PIN_BLOCK_FIELD_NUMBER: _ClassVar[int]
    PAN_FIELD_NUMBER: _ClassVar[int]
    PVK_FIELD_NUMBER: _ClassVar[int]
    PVKI_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.KeyRef
    format: _types_pb2.PinBlockFormat
    pin_block: bytes
    pan: str
    pvk: _types_pb2.KeyRef
    pvki: int
    def __init__(self, key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., format: _Optional[_Union[_types_pb2.PinBlockFormat, str]] = ..., pin_block: _Optional[bytes] = ..., pan: _Optional[str] = ..., pvk: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., pvki: _Optional[int] = ...) -> None: ...

class GeneratePvvResponse(_message.Message):
    __slots__ = ("pvv",)
    PVV_FIELD_NUMBER: _ClassVar[int]
    pvv: str
    def __init__(self, pvv: _Optional[str] = ...) -> None: ...

class ReEncryptStoredPinsRequest(_message.Message):
    __slots__ = ("old_psk", "new_psk", "accounts", "stored_pins")
    OLD_PSK_FIELD_NUMBER: _ClassVar[int]
    NEW_PSK_FIELD_NUMBER: _ClassVar[int]
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    STORED_PINS_FIELD_NUMBER: _ClassVar[int]
    old_psk: _types_pb2.KeyRef
    new_psk: _types_pb2.KeyRef
    accounts: _containers.RepeatedScalarFieldContainer[str]
    stored_pins: bytes
    def __init__(self, old_psk: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., new_psk: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., accounts: _Optional[_Iterable[str]] = ..., stored_pins: _Optional[bytes] = ...) -> None: ...

class CompareStoredPinsRequest(_message.Message):
    __slots__ = ("old_psk", "new_psk", "accounts", "old_stored_pins", "new_stored_pins")
    OLD_PSK_FIELD_NUMBER: _ClassVar[int]
    NEW_PSK_FIELD_NUMBER: _ClassVar[int]
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    OLD_STORED_PINS_FIELD_NUMBER: _ClassVar[int]
    NEW_STORED_PINS_FIELD_NUMBER: _ClassVar[int]
    old_psk: _types_pb2.KeyRef
    new_psk: _types_pb2.KeyRef
    accounts: _containers.RepeatedScalarFieldContainer[str]
    old_stored_pins: bytes
    new_stored_pins: bytes
    def __init__(self, old_psk: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., new_psk: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., accounts: _Optional[_Iterable[str]] = ..., old_stored_pins: _Optional[bytes] = ..., new_stored_pins: _Optional[bytes] = ...) -> None: ...

class CompareStoredPinsResponse(_message.Message):
    __slots__ = ("same",)
    SAME_FIELD_NUMBER: _ClassVar[int]
    same: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, same: _Optional[_Iterable[bool]] = ...) -> None: ...

class ReEncryptStoredPinsResponse(_message.Message):
    __slots__ = ("stored_pins", "errors", "psk_version")
    STORED_PINS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    PSK_VERSION_FIELD_NUMBER: _ClassVar[int]
    stored_pins: bytes
    errors: _containers.RepeatedCompositeFieldContainer[_types_pb2.ItemError]
    psk_version: int
    def __init__(self, stored_pins: _Optional[bytes] = ..., errors: _Optional[_Iterable[_Union[_types_pb2.ItemError, _Mapping]]] = ..., psk_version: _Optional[int] = ...) -> None: ...

class StreamVerifyPinRequest(_message.Message):
    __slots__ = ("correlation_id", "request")
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    correlation_id: int
    request: VerifyPinRequest
    def __init__(self, correlation_id: _Optional[int] = ..., request: _Optional[_Union[VerifyPinRequest, _Mapping]] = ...) -> None: ...

class StreamVerifyPinResponse(_message.Message):
    __slots__ = ("correlation_id", "code", "message", "response")
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    correlation_id: int
    code: int
    message: str
    response: VerifyPinResponse
    def __init__(self, correlation_id: _Optional[int] = ..., code: _Optional[int] = ..., message: _Optional[str] = ..., response: _Optional[_Union[VerifyPinResponse, _Mapping]] = ...) -> None: ...
