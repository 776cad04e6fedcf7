"""Data encryption commands: M0 (encrypt, M1), M2 (decrypt, M3), M4 (translate, M5), payShield
9000/10K layout, onto ``DataService``'s use cases (``service/data.py``).

Mode flag 2N (00 ECB, 01 CBC: NIST SP 800-38A clauses 6.1 and 6.2), input and output format 1N,
key type 3H (00A ZEK, 00B DEK, FFF key block: each a hsmsvc DEK), key, IV for CBC (16H under a
TDES key, 32H under AES), message length 4H (characters, as M6's), message. A reply is
``[IV] || message length || message``. Deviations (``docs/host-commands.md``):

- No padding, as payShield: the message is whole blocks of the key's cipher, else ``80``.
- M1 and M3 carry, in CBC, the last ciphertext block: the IV that continues the chain in a
  following command (payShield's output IV).
- M4 reads the destination IV (the layout has it) but hsmsvc draws the destination IV itself
  (``service/data.py`` ``reencrypt``: a fresh IV for every translation, never a caller's), and M5
  carries the IV it drew, which the receiver needs: a host must send that one on, not its own.
- Modes 02/03 (CFB), FPE and DUKPT key types are not offered: ``02`` and ``05``.
"""

from __future__ import annotations

from typing import Final

from hsmsvc.api.hostcmd import codes
from hsmsvc.api.hostcmd.codes import HostError
from hsmsvc.api.hostcmd.fields import Fields
from hsmsvc.api.hostcmd.mac import input_format, message, reply_message
from hsmsvc.api.hostcmd.registry import command, key_ref
from hsmsvc.api.runner import Lane
from hsmsvc.hsm.model import FieldParams
from hsmsvc.hsm.policy import Operation
from hsmsvc.keys.model import KeyRef
from hsmsvc.service import data as uc
from hsmsvc.service.context import Caller, Services
from hsmsvc.types import CipherMode, DataPadding

__all__: list[str] = []

_MODES: Final = {b"00": CipherMode.ECB, b"01": CipherMode.CBC}
# Data key type codes: 00A ZEK (LMK 30-31), 00B DEK/TEK (LMK 32-33), FFF a key block. hsmsvc has one
# data key type (DEK), which the use case requires of the key.
_KEY_TYPES: Final = frozenset({b"00A", b"00B", b"FFF"})
_NONE: Final = DataPadding.NONE


def _mode(f: Fields, name: str, code: str) -> CipherMode:
    found = _MODES.get(f.take(2, name, code))
    if found is None:
        raise HostError(code, name)
    return found


def _key_type(f: Fields, name: str, code: str) -> None:
    if f.take(3, name, code).upper() not in _KEY_TYPES:
        raise HostError(code, name)


def _block(s: Services, c: Caller, ref: KeyRef, op: Operation, field: str) -> int:
    """The key's cipher block size, once ``s.key`` has found that the caller may use it for ``op``."""
    return s.key(c, ref, op, field).cryptogram.spec.algorithm.block_size


def _iv(f: Fields, mode: CipherMode, block: int, name: str) -> bytes:
    return f.hex(2 * block, name) if mode is CipherMode.CBC else b""


def _whole(data: bytes, *blocks: int) -> None:
    if any(len(data) % b for b in blocks):
        raise HostError(codes.DATA_LENGTH, "message")


def _chain(mode: CipherMode, ciphertext: bytes, block: int) -> bytes:
    """CBC's output IV: the last ciphertext block, hex."""
    return ciphertext[-block:].hex().upper().encode() if mode is CipherMode.CBC else b""


def _one(s: Services, c: Caller, f: Fields, op: Operation) -> tuple[CipherMode, int, KeyRef, int, bytes, bytes]:
    """M0's and M2's fields: mode, output format, key, block size, IV, message."""
    mode = _mode(f, "mode flag", codes.M_MODE)
    fmt_in = input_format(f, "input format flag", codes.M_INPUT_FORMAT)
    fmt_out = input_format(f, "output format flag", codes.M_OUTPUT_FORMAT)
    _key_type(f, "key type", codes.M_KEY_TYPE)
    ref = key_ref(s, c, f.stored_key("key"), "key")
    block = _block(s, c, ref, op, "key")
    iv = _iv(f, mode, block, "IV")
    data = message(f, fmt_in)
    f.end()
    _whole(data, block)
    return mode, fmt_out, ref, block, iv, data


@command("M0", "DataService.Encrypt", Lane.INLINE)
def encrypt(s: Services, c: Caller, f: Fields) -> bytes:
    """M0: a message enciphered under a data key."""
    mode, fmt_out, ref, block, iv, data = _one(s, c, f, Operation.DATA_ENCRYPT)
    out, _, _ = uc.encrypt(s, c, key=ref, mode=mode, padding=_NONE, iv=iv, aad=b"", data=data)
    return _chain(mode, out, block) + reply_message(out, fmt_out)


@command("M2", "DataService.Decrypt", Lane.INLINE)
def decrypt(s: Services, c: Caller, f: Fields) -> bytes:
    """M2: a message deciphered under a data key."""
    mode, fmt_out, ref, block, iv, data = _one(s, c, f, Operation.DATA_DECRYPT)
    out = uc.decrypt(s, c, key=ref, mode=mode, padding=_NONE, iv=iv, aad=b"", data=data)
    return _chain(mode, data, block) + reply_message(out, fmt_out)


@command("M4", "DataService.ReEncrypt", Lane.OTHER, destinations=("destination_key",))
def translate(s: Services, c: Caller, f: Fields) -> bytes:
    """M4: a message from one data key (and mode) to another, never clear outside the backend."""
    src_mode = _mode(f, "source mode flag", codes.M_MODE)
    dst_mode = _mode(f, "destination mode flag", codes.M_DESTINATION_MODE)
    fmt_in = input_format(f, "input format flag", codes.M_INPUT_FORMAT)
    fmt_out = input_format(f, "output format flag", codes.M_OUTPUT_FORMAT)
    _key_type(f, "source key type", codes.M_KEY_TYPE)
    src_field = f.stored_key("source key")
    _key_type(f, "destination key type", codes.M_DESTINATION_KEY_TYPE)
    dst_field = f.stored_key("destination key", codes.DESTINATION_KEY)
    src = key_ref(s, c, src_field, "source_key")
    dst = key_ref(s, c, dst_field, "destination_key")
    src_block = _block(s, c, src, Operation.DATA_DECRYPT, "source_key")
    dst_block = _block(s, c, dst, Operation.DATA_ENCRYPT, "destination_key")
    src_iv = _iv(f, src_mode, src_block, "source IV")
    _iv(f, dst_mode, dst_block, "destination IV")  # read for the layout; hsmsvc draws its own (above)
    data = message(f, fmt_in)
    f.end()
    _whole(data, src_block, dst_block)
    out, iv, _ = uc.reencrypt(s, c, source=src, source_params=FieldParams(src_mode, src_iv, _NONE), destination=dst,
                              mode=dst_mode, padding=_NONE, aad=b"", data=data)
    return iv.hex().upper().encode() + reply_message(out, fmt_out)
