"""The wire's enums and hsmsvc's own: one table per enum, for servers and clients alike.

Proto enum numbers are not ISO digits or TR-31 codes, so every conversion goes
through a table built once from the member names, and ``*_UNSPECIFIED`` is
always refused: a missing format never quietly becomes ISO 0. Here, below
``api``, so a client-side tool (the key-forming ceremony) converts as the server
does without importing the server.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Final, Generic, TypeVar

from hsmsvc.errors import InvalidInput
from hsmsvc.types import (
    Algorithm,
    CipherMode,
    DataPadding,
    Exportability,
    HashAlgorithm,
    KcvMethod,
    KeyState,
    KeyType,
    KeyUsage,
    MacAlgorithm,
    ModeOfUse,
    Padding,
    PinBlockFormat,
)
from hsmsvc_client.v1 import types_pb2 as pb

__all__ = [
    "ALGORITHM", "CIPHER_MODE", "DATA_PADDING", "EXPORTABILITY", "EnumTable", "HASH_ALGORITHM", "KCV_METHOD",
    "KEY_STATE", "KEY_TYPE", "KEY_USAGE", "MAC_ALGORITHM", "MAC_PADDING", "MODE_OF_USE", "PIN_FORMAT",
]

E = TypeVar("E", bound=Enum)


class EnumTable(Generic[E]):
    """Proto enum numbers to a domain enum and back, matched by member name."""

    def __init__(self, pb_enum: Any, prefix: str, domain: type[E]) -> None:
        self.to_domain: dict[int, E] = {}
        self.to_pb: dict[E, Any] = {}
        for name, number in pb_enum.items():
            if number == 0:
                continue
            member = domain[name.removeprefix(prefix)]
            self.to_domain[number] = member
            self.to_pb[member] = number

    def get(self, number: int, field: str) -> E:
        if number == 0:
            raise InvalidInput(field, "required")
        try:
            return self.to_domain[number]
        except KeyError:
            raise InvalidInput(field, "unknown value") from None

    def optional(self, number: int, field: str) -> E | None:
        return None if number == 0 else self.get(number, field)


ALGORITHM: Final = EnumTable(pb.Algorithm, "ALGORITHM_", Algorithm)
KEY_TYPE: Final = EnumTable(pb.KeyType, "KEY_TYPE_", KeyType)
KEY_USAGE: Final = EnumTable(pb.KeyUsage, "KEY_USAGE_", KeyUsage)
MODE_OF_USE: Final = EnumTable(pb.ModeOfUse, "MODE_OF_USE_", ModeOfUse)
EXPORTABILITY: Final = EnumTable(pb.Exportability, "EXPORTABILITY_", Exportability)
KEY_STATE: Final = EnumTable(pb.KeyState, "KEY_STATE_", KeyState)
# UNSPECIFIED (0) is the key's default method (CMAC for AES, ECB otherwise): read with ``optional``.
KCV_METHOD: Final = EnumTable(pb.KcvMethod, "KCV_METHOD_", KcvMethod)
PIN_FORMAT: Final = EnumTable(pb.PinBlockFormat, "PIN_BLOCK_FORMAT_", PinBlockFormat)
MAC_ALGORITHM: Final = EnumTable(pb.MacAlgorithm, "MAC_ALGORITHM_", MacAlgorithm)
MAC_PADDING: Final = EnumTable(pb.MacPadding, "MAC_PADDING_", Padding)
HASH_ALGORITHM: Final = EnumTable(pb.HashAlgorithm, "HASH_ALGORITHM_", HashAlgorithm)
CIPHER_MODE: Final = EnumTable(pb.CipherMode, "CIPHER_MODE_", CipherMode)
DATA_PADDING: Final = EnumTable(pb.DataPadding, "DATA_PADDING_", DataPadding)
