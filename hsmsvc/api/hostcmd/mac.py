"""MAC commands: M6 (generate a MAC, M7) and M8 (verify a MAC, M9), payShield 9000/10K layout.

Mode flag 1N, input format 1N, MAC size 1N, MAC algorithm 1N, padding method 1N, key type 3H, key,
message length 4H, message (M8: then the MAC, 8H or 16H by the MAC size). The MAC is ISO/IEC
9797-1:2011 algorithm 1 or 3 (ANSI X9.19), or CMAC (NIST SP 800-38B), computed by the same use
cases as ``MacService`` (``service/mac.py``). Deviations (``docs/host-commands.md``):

- Mode flag 0 (the whole message) only: modes 1-3 chain a message over several commands through
  an intermediate CBC value, which ``service/mac.py`` neither takes nor gives (and under
  algorithm 3 that value is a single-DES CBC-MAC a caller could extend), so they answer ``02``.
- The message length counts the characters of the message field as sent (2 per byte in hex), as
  the published examples do; the MAC field of M7 is the MAC alone (8H or 16H), no length.
- Padding method 0 (none) requires whole blocks and is padding method 1 on them, which adds
  nothing. With CMAC the padding method is read and ignored: CMAC pads itself (SP 800-38B 6.2).
- A binary message may not hold X'19: the framing takes it for the end-message delimiter.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from typing import Final

from hsmsvc.api.hostcmd import codes
from hsmsvc.api.hostcmd.codes import HostError
from hsmsvc.api.hostcmd.fields import Fields
from hsmsvc.api.hostcmd.registry import Answer, command, key_ref
from hsmsvc.api.runner import Lane
from hsmsvc.errors import KeyUsageViolation
from hsmsvc.hsm.policy import Operation
from hsmsvc.keys.model import KeyRef
from hsmsvc.service import mac as uc
from hsmsvc.service.context import Caller, Services
from hsmsvc.types import KeyType, MacAlgorithm, Padding

__all__ = ["BINARY", "HEX", "TEXT", "input_format", "message", "reply_message"]

BINARY, HEX, TEXT = 0, 1, 2
"""The input and output format flags: binary, hex-encoded binary, text (taken as its bytes)."""
_HEX_DIGITS: Final = frozenset(b"0123456789ABCDEFabcdef")

_ALGORITHMS: Final = {b"1": MacAlgorithm.ISO9797_ALG1, b"3": MacAlgorithm.ISO9797_ALG3, b"6": MacAlgorithm.CMAC}
# 0 (no padding) is method 1 on whole blocks (checked once the key's block size is known).
_PADDINGS: Final = {b"0": Padding.METHOD_1, b"1": Padding.METHOD_1, b"2": Padding.METHOD_2, b"3": Padding.METHOD_3}
_SIZES: Final = {b"0": 4, b"1": 8}
# payShield's key type codes: 003 a TAK (LMK 16-17), 008 a ZAK (LMK 26-27: hsmsvc's MAK), FFF a key block.
_KEY_TYPES: Final = {b"003": frozenset({KeyType.TAK}), b"008": frozenset({KeyType.MAK}),
                     b"FFF": frozenset({KeyType.TAK, KeyType.MAK})}


# -- shared with data.py: the format flags and the message field ------------------------------

def input_format(f: Fields, name: str, code: str) -> int:
    """A format flag (1N): 0 binary, 1 hex-encoded binary, 2 text."""
    raw = f.take(1, name, code)
    if raw not in (b"0", b"1", b"2"):
        raise HostError(code, name)
    return int(raw)


def message(f: Fields, fmt: int) -> bytes:
    """Message length (4H, the characters of the field as sent) and the message, as bytes."""
    raw = f.take(4, "message length", codes.M_MESSAGE_LENGTH)
    if not _HEX_DIGITS.issuperset(raw):
        raise HostError(codes.M_MESSAGE_LENGTH, "message length")
    n = int(raw, 16)
    # Fewer characters than stated is the length field's error (M4's "actual message too short").
    if n == 0 or f.rest() < n:
        raise HostError(codes.M_MESSAGE_LENGTH, "message length")
    if fmt == HEX:
        return f.hex(n, "message", codes.INVALID_INPUT)  # an odd count or a non-hex character: 15
    return f.take(n, "message")


def reply_message(data: bytes, fmt: int) -> bytes:
    """Message length (4H, characters) and the message in output format ``fmt``."""
    out = binascii.hexlify(data).upper() if fmt == HEX else data
    if len(out) > 0xFFFF:
        raise HostError(codes.DATA_LENGTH, "message")
    return b"%04X" % len(out) + out


# -- M6 / M8 ------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Request:
    key: KeyRef
    algorithm: MacAlgorithm
    padding: Padding | None
    """None with CMAC, which pads itself."""
    data: bytes
    size: int
    mac: bytes
    """M8's MAC to check (empty for M6)."""


def _read(s: Services, c: Caller, f: Fields, verify: bool) -> _Request:
    """The fields of M6, or of M8 with its MAC."""
    if f.take(1, "mode flag", codes.M_MODE) != b"0":
        raise HostError(codes.M_MODE, "mode flag")
    fmt = input_format(f, "input format flag", codes.M_INPUT_FORMAT)
    size = _SIZES.get(f.take(1, "MAC size"))
    if size is None:
        raise HostError(codes.INVALID_INPUT, "MAC size")
    algorithm = _ALGORITHMS.get(f.take(1, "MAC algorithm", codes.M_MAC_ALGORITHM))
    if algorithm is None:
        raise HostError(codes.M_MAC_ALGORITHM, "MAC algorithm")
    flag = f.take(1, "padding method", codes.M_PADDING)
    if flag not in _PADDINGS:
        raise HostError(codes.M_PADDING, "padding method")
    types = _KEY_TYPES.get(f.take(3, "key type", codes.M_KEY_TYPE).upper())
    if types is None:
        raise HostError(codes.M_KEY_TYPE, "key type")
    key_field = f.stored_key("MAC key")
    data = message(f, fmt)
    mac = f.hex(2 * size, "MAC") if verify else b""
    f.end()
    ref = key_ref(s, c, key_field, "key")
    key = s.key(c, ref, Operation.MAC_VERIFY if verify else Operation.MAC_GENERATE, "key")
    if key.cryptogram.spec.key_type not in types:
        raise KeyUsageViolation("key", "not the key type this command names")
    if algorithm is MacAlgorithm.CMAC:
        return _Request(ref, algorithm, None, data, size, mac)
    if flag == b"0" and len(data) % key.cryptogram.spec.algorithm.block_size:
        raise HostError(codes.DATA_LENGTH, "message")  # no padding: whole blocks only
    return _Request(ref, algorithm, _PADDINGS[flag], data, size, mac)


@command("M6", "MacService.GenerateMac", Lane.INLINE)
def generate_mac(s: Services, c: Caller, f: Fields) -> bytes:
    """M6: the MAC of a message (8H, or 16H with MAC size 1)."""
    r = _read(s, c, f, verify=False)
    tag, _, _ = uc.generate_mac(s, c, key=r.key, algorithm=r.algorithm, padding=r.padding, data=r.data, length=r.size)
    return binascii.hexlify(tag).upper()


@command("M8", "MacService.VerifyMac", Lane.INLINE)
def verify_mac(s: Services, c: Caller, f: Fields) -> bytes | Answer:
    """M8: whether a message's MAC is right (``01`` when it is not)."""
    r = _read(s, c, f, verify=True)
    ok = uc.verify_mac(s, c, key=r.key, algorithm=r.algorithm, padding=r.padding, data=r.data, mac=r.mac)
    return b"" if ok else Answer(codes.VERIFICATION_FAILED)
