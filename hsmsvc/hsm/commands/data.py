"""Data commands: fields under a DEK (ISO/IEC 10116 modes, GCM per NIST SP 800-38D), random bytes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from hsmsvc.crypto import fields
from hsmsvc.errors import InvalidInput, Unsupported
from hsmsvc.hsm.commands.base import HsmCommand, LoadedKey, check_data
from hsmsvc.hsm.model import MAX_RANDOM, Command, FieldParams, KeyCryptogram
from hsmsvc.hsm.policy import Operation
from hsmsvc.types import CipherMode, DataPadding

if TYPE_CHECKING:
    from hsmsvc.hsm.commands.core import CommandBackend

__all__ = ["DecryptData", "EncryptData", "EncryptFields", "Random", "ReencryptData"]


def _field_key(b: CommandBackend, key: KeyCryptogram, op: Operation, params: FieldParams) -> LoadedKey:
    if not isinstance(params, FieldParams):
        raise InvalidInput("params", "FieldParams")
    if params.mode not in b._capabilities.data_modes:
        raise Unsupported("mode", f"{params.mode.value} is not supported by this backend")
    k = b._use(key, op)
    if params.mode is CipherMode.GCM and k.algorithm.block_size != 16:
        raise InvalidInput("mode", "GCM needs a 16-byte block cipher (AES or SM4)")
    return k


def _unit(key: LoadedKey, params: FieldParams) -> int:
    # GCM is a stream mode: no padding, any length.
    return 1 if params.mode is CipherMode.GCM else key.algorithm.block_size


@dataclass(frozen=True, kw_only=True, repr=False)
class EncryptData(HsmCommand[bytes]):
    """Encipher one field under a DEK (padding applied inside)."""

    key: KeyCryptogram
    params: FieldParams
    data: bytes

    def run(self, b: CommandBackend) -> bytes:
        b._capabilities.require(Command.ENCRYPT_DATA)
        check_data(self.data)
        params = self.params
        with b._guard():
            k = _field_key(b, self.key, Operation.DATA_ENCRYPT, params)
            padded = fields.pad(params.padding, bytes(self.data), _unit(k, params))
            return k.field_encrypt(params.mode, params.iv, padded, params.aad)


@dataclass(frozen=True, kw_only=True, repr=False)
class EncryptFields(HsmCommand[list[bytes | InvalidInput]]):
    """:class:`EncryptData` of each field under one key, checked and loaded once: the mode,
    padding and AAD of ``params``, each field with its own IV from ``ivs`` (``params.iv`` is
    not used). A ciphertext each, or the field's own ``InvalidInput``."""

    key: KeyCryptogram
    params: FieldParams
    ivs: Sequence[bytes]
    plaintexts: Sequence[bytes]

    def run(self, b: CommandBackend) -> list[bytes | InvalidInput]:
        b._capabilities.require(Command.ENCRYPT_DATA)
        params = self.params
        if len(self.ivs) != len(self.plaintexts):
            raise InvalidInput("ivs", "one per field")
        out: list[bytes | InvalidInput] = []
        with b._guard():
            k = _field_key(b, self.key, Operation.DATA_ENCRYPT, params)
            unit = _unit(k, params)
            for iv, data in zip(self.ivs, self.plaintexts):
                try:
                    check_data(data)
                    out.append(k.field_encrypt(params.mode, iv, fields.pad(params.padding, bytes(data), unit),
                                               params.aad))
                except InvalidInput as e:
                    out.append(e)
        return out


@dataclass(frozen=True, kw_only=True, repr=False)
class DecryptData(HsmCommand[bytes]):
    """Decipher one field under a DEK and strip its padding."""

    key: KeyCryptogram
    params: FieldParams
    data: bytes

    def run(self, b: CommandBackend) -> bytes:
        b._capabilities.require(Command.DECRYPT_DATA)
        check_data(self.data)
        params = self.params
        with b._guard():
            k = _field_key(b, self.key, Operation.DATA_DECRYPT, params)
            clear = k.field_decrypt(params.mode, params.iv, bytes(self.data), params.aad)
            return fields.unpad(params.padding, clear, k.algorithm.block_size)


@dataclass(frozen=True, kw_only=True, repr=False)
class ReencryptData(HsmCommand[bytes]):
    """Translate a field between keys without the clear field leaving the backend.

    The source must be authenticated (GCM) or unpadded: stripping CBC/ECB
    padding here and reporting a fault would be a padding oracle to a caller
    who may translate but not decrypt (Vaudenay, 2002).
    """

    src: KeyCryptogram
    src_params: FieldParams
    dst: KeyCryptogram
    dst_params: FieldParams
    data: bytes

    def run(self, b: CommandBackend) -> bytes:
        b._capabilities.require(Command.REENCRYPT_DATA)
        check_data(self.data)
        src_params, dst_params = self.src_params, self.dst_params
        if src_params.mode is not CipherMode.GCM and src_params.padding is not DataPadding.NONE:
            raise InvalidInput("source_padding", "NONE unless the source is GCM (no padding oracle)")
        with b._guard():
            s = _field_key(b, self.src, Operation.DATA_DECRYPT, src_params)
            d = _field_key(b, self.dst, Operation.DATA_ENCRYPT, dst_params)
            clear = s.field_decrypt(src_params.mode, src_params.iv, bytes(self.data), src_params.aad)
            padded = fields.pad(dst_params.padding, clear, _unit(d, dst_params))
            return d.field_encrypt(dst_params.mode, dst_params.iv, padded, dst_params.aad)


@dataclass(frozen=True, kw_only=True, repr=False)
class Random(HsmCommand[bytes]):
    """``length`` random bytes from the backend's generator, 1 to :data:`~hsmsvc.hsm.model.MAX_RANDOM`."""

    length: int

    def run(self, b: CommandBackend) -> bytes:
        b._capabilities.require(Command.RANDOM)
        if not isinstance(self.length, int) or not 1 <= self.length <= MAX_RANDOM:
            raise InvalidInput("length", f"1 to {MAX_RANDOM}")
        with b._guard():
            return b._random(self.length)
