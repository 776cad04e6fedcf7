"""PIN blocks: ISO 9564-1:2017 clause 9.3 formats 0 to 4, and a 16-byte format 0.

Plain blocks are built and parsed here; :func:`encipher` and :func:`decipher`
add the encipherment, taking an :class:`~hsmsvc.crypto._cipher.EcbCipher` so a
backend can keep its cipher contexts per key.

Every failure after decryption raises the same :class:`InvalidPinBlock`, whatever
the check (control field, length, digit, fill, PAN), so no oracle is offered.

Format SM4_0 is a bilateral convention, not ISO: format 0 widened to 16 bytes for
SM4 peers. PIN field = ``0 L P.. F..`` over 32 nibbles; PAN field = 16 zero
nibbles followed by the format-0 PAN field (``0000`` and the 12 rightmost PAN
digits excluding the check digit). It is chosen per zone, never guessed.
"""

from __future__ import annotations

import re

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Final

from hsmsvc.crypto import _validate
from hsmsvc.crypto._cipher import EcbCipher, xor
from hsmsvc.errors import InvalidInput, InvalidPinBlock
from hsmsvc.types import Algorithm, PinBlockFormat

__all__ = [
    "check_cipher",
    "check_iso0_blocks",
    "check_iso4_pin_fields",
    "decipher",
    "decode_iso0",
    "decode_iso1",
    "decode_iso2",
    "decode_iso3",
    "decode_iso4_pin_field",
    "decode_sm4_0",
    "encipher",
    "encode_iso0",
    "encode_iso1",
    "encode_iso2",
    "encode_iso3",
    "encode_iso4_pan_field",
    "encode_iso4_pin_field",
    "encode_sm4_0",
    "iso0_pin_fields",
    "iso4_pan_fields",
    "renew_iso4_pin_fields",
]

_HEX: Final = "0123456789ABCDEF"
_PAN_FIELD_FORMATS: Final = (PinBlockFormat.ISO_0, PinBlockFormat.ISO_3, PinBlockFormat.SM4_0)


def _pin(pin: str) -> str:
    # Clause 8.1: a PIN is 4 to 12 decimal digits.
    return _validate.digits(pin, "pin", 4, 12)


def _pan(pan: str, min_len: int = 13) -> str:
    return _validate.digits(pan, "pan", min_len, 19)


def _pin_field(control: int, pin: str, fill: str, nibbles: int) -> bytes:
    text = _HEX[control] + _HEX[len(pin)] + pin + fill
    return bytes.fromhex(text[:nibbles])


def _random_fill(alphabet: str, count: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(count))


def pan_field_iso0(pan: str) -> bytes:
    """Clause 9.3.2: ``0000`` and the 12 rightmost digits excluding the check digit.

    >>> pan_field_iso0("4012345678909").hex().upper()
    '0000401234567890'
    """
    digits = _pan(pan)
    return bytes.fromhex("0000" + digits[-13:-1])


def _parse_pin(text: str, control: int, fill_ok: str, nibbles: int) -> str:
    # Any failure is the same InvalidPinBlock: no oracle (see module docstring).
    if text[0] != _HEX[control]:
        raise InvalidPinBlock()
    n = int(text[1], 16)
    if not 4 <= n <= 12:
        raise InvalidPinBlock()
    pin = text[2 : 2 + n]
    fill = text[2 + n : nibbles]
    if not pin.isdigit() or any(c not in fill_ok for c in fill):
        raise InvalidPinBlock()
    return pin


def _block(block: bytes, size: int) -> str:
    if not isinstance(block, (bytes, bytearray)) or len(block) != size:
        raise InvalidPinBlock()
    return bytes(block).hex().upper()


def encode_iso0(pin: str, pan: str) -> bytes:
    """Format 0 plain block (clause 9.3.2): PIN field XOR PAN field.

    ANSI X9.24-1:2009 annex A.4 (DUKPT test data): PIN 1234, PAN 4012345678909:

    >>> encode_iso0("1234", "4012345678909").hex().upper()
    '041274EDCBA9876F'
    """
    return xor(_pin_field(0, _pin(pin), "F" * 14, 16), pan_field_iso0(pan))


def decode_iso0(block: bytes, pan: str) -> str:
    """Recover the PIN from a format 0 plain block; checks control, length, fill."""
    text = xor(bytes.fromhex(_block(block, 8)), pan_field_iso0(pan)).hex().upper()
    return _parse_pin(text, 0, "F", 16)


_PAN_LENGTHS: Final = frozenset(range(13, 20))
# A format 0 PIN field (clause 9.3.2) for each PIN length 4-12, as hex.
_ISO0_FIELD: Final = re.compile("|".join(f"0{n:X}[0-9]{{{n}}}F{{{14 - n}}}" for n in range(4, 13)))
_DIGIT_CLASS: Final = str.maketrans("0123456789", "d" * 10)


def _shapes(control: int, fill: str) -> dict[str, str]:
    """Per PIN length nibble, the shape of a well-formed 16-nibble field: digits as ``d``."""
    return {_HEX[n]: (_HEX[control] + _HEX[n] + "0" * n + fill * (14 - n)).translate(_DIGIT_CLASS)
            for n in range(4, 13)}


_ISO0_SHAPES: Final = _shapes(0, "F")


def _all_well_formed(text: str, control: int, shapes: dict[str, str]) -> bool:
    """Whether every 16-nibble field of ``text`` is well formed (:func:`_parse_pin`'s checks).

    The common case, a run with no bad field, in a few passes over the whole
    run: its control nibbles, then its digit classes against the shapes its
    length nibbles call for. A field of another length finds no shape.
    """
    n = len(text) // 16
    if text[0::16] != _HEX[control] * n:
        return False
    lengths = text[1::16]
    if lengths == lengths[:1] * n:
        want = shapes.get(lengths[:1], "") * n
    else:
        want = "".join(map(shapes.get, lengths, repeat("", n)))
    return text.translate(_DIGIT_CLASS) == want


def check_iso0_blocks(blocks: bytes, pans: Sequence[str]) -> list[bool]:
    """For a run of plain format 0 blocks, whether each holds a well-formed PIN field for its PAN.

    The batch form of :func:`decode_iso0` for re-enciphering stored PINs: one
    XOR over the whole run, one hex conversion, one match per block.

    >>> check_iso0_blocks(encode_iso0("1234", "4012345678909") * 2, ["4012345678909", "4012345678919"])
    [True, False]
    """
    if len(blocks) != 8 * len(pans):
        raise InvalidInput("blocks", "8 bytes per PAN")
    if not pans:
        return []
    if len(pans) == 1:
        # A single translation's block: the same check in as few steps as it takes.
        return [_ISO0_FIELD.fullmatch(_one_iso0_field_hex(blocks, pans[0])) is not None]
    return _iso0_good(_iso0_fields_hex(blocks, pans))


def _one_iso0_field_hex(block: bytes, pan: str) -> str:
    """One block XOR its PAN's field, as upper-case hex (:func:`_iso0_fields_hex` for a run of one)."""
    if type(pan) is str and 13 <= len(pan) <= 19 and pan.isascii() and pan.isdigit():
        field = int(pan[-13:-1], 16)
    else:
        field = int.from_bytes(pan_field_iso0(pan), "big")  # raises, naming the fault
    return f"{int.from_bytes(block, 'big') ^ field:016X}"


def iso0_pin_fields(blocks: bytes, pans: Sequence[str]) -> tuple[bytes, list[bool]]:
    """For a run of plain format 0 blocks: each one's PIN field (clause 9.3.2: the block XOR its PAN
    field), back to back, and whether each is well formed.

    Two well-formed fields hold the same PIN exactly when they are equal, so a
    batch of PINs is compared field against field without a PIN leaving this form.

    >>> fields, good = iso0_pin_fields(encode_iso0("1234", "4012345678909"), ["4012345678909"])
    >>> fields.hex().upper(), good
    ('041234FFFFFFFFFF', [True])
    """
    if len(blocks) != 8 * len(pans):
        raise InvalidInput("blocks", "8 bytes per PAN")
    if not pans:
        return b"", []
    if len(pans) == 1:
        text = _one_iso0_field_hex(blocks, pans[0])
        return bytes.fromhex(text), [_ISO0_FIELD.fullmatch(text) is not None]
    text = _iso0_fields_hex(blocks, pans)
    return bytes.fromhex(text), _iso0_good(text)


def _iso0_fields_hex(blocks: bytes, pans: Sequence[str]) -> str:
    """Each block XOR its PAN's field, as upper-case hex: one XOR and one conversion for the run."""
    # Checked once for the whole run, as pan_field_iso0 checks one.
    digits, lengths = _pan_digits(pans, _PAN_LENGTHS)
    fields = _pan_fields(digits, pans, lengths)
    return (int.from_bytes(blocks, "big") ^ int.from_bytes(fields, "big")).to_bytes(len(blocks), "big").hex().upper()


def _pan_digits(pans: Sequence[str], allowed: frozenset[int]) -> tuple[bytes, set[int]]:
    """A run's PANs joined as ASCII digits, and their lengths; ``InvalidInput`` unless every PAN
    is all digits and of an allowed length."""
    joined = "".join(pans)
    # bytes.isdigit is ASCII-only and ten times quicker than str.isdigit on a long run.
    digits = joined.encode("ascii") if joined.isascii() else b""
    lengths = set(map(len, pans))
    if not digits.isdigit() or not lengths <= allowed:
        raise InvalidInput("pan", f"{min(allowed)} to {max(allowed)} digits")
    return digits, lengths


def _iso0_good(text: str) -> list[bool]:
    """Per 16-nibble field of ``text``: whether it is a well-formed format 0 PIN field."""
    if _all_well_formed(text, 0, _ISO0_SHAPES):
        return [True] * (len(text) // 16)
    match = _ISO0_FIELD.fullmatch
    return [match(text, i, i + 16) is not None for i in range(0, len(text), 16)]


def _pan_fields(digits: bytes, pans: Sequence[str], lengths: set[int]) -> bytes:
    """Each PAN's format 0 field (four zeros, the 12 digits before the check digit), back to back."""
    if len(lengths) != 1:
        return bytes.fromhex("0000" + "0000".join([p[-13:-1] for p in pans]))
    # All PANs one length (the usual case): 16 strided copies instead of a slice per PAN.
    (size,) = lengths
    out = bytearray(b"0" * (16 * len(pans)))
    for k in range(12):
        out[4 + k :: 16] = digits[size - 13 + k :: size]
    return bytes.fromhex(out.decode("ascii"))


def encode_iso1(pin: str, fill: str | None = None) -> bytes:
    """Format 1 plain block (clause 9.3.3): no PAN, random or transaction fill.

    >>> encode_iso1("1234", "0123456789").hex().upper()
    '1412340123456789'
    """
    p = _pin(pin)
    need = 14 - len(p)
    if fill is None:
        fill = _random_fill(_HEX, need)
    elif len(fill) != need or not set(fill.upper()) <= set(_HEX):
        raise InvalidInput("fill", f"{need} hex digits")
    return _pin_field(1, p, fill.upper(), 16)


def decode_iso1(block: bytes) -> str:
    """Recover the PIN from a format 1 plain block."""
    return _parse_pin(_block(block, 8), 1, _HEX, 16)


def encode_iso2(pin: str) -> bytes:
    """Format 2 plain block (clause 9.3): IC card offline use, F fill.

    >>> encode_iso2("123456").hex().upper()
    '26123456FFFFFFFF'
    """
    return _pin_field(2, _pin(pin), "F" * 14, 16)


def decode_iso2(block: bytes) -> str:
    """Recover the PIN from a format 2 plain block."""
    return _parse_pin(_block(block, 8), 2, "F", 16)


def encode_iso3(pin: str, pan: str, fill: str | None = None) -> bytes:
    """Format 3 plain block (clause 9.3.5): like format 0, random fill A to F.

    >>> encode_iso3("1234", "4012345678909", "ABCDEFABCD").hex().upper()
    '341274B9F9B9D35D'
    """
    p = _pin(pin)
    need = 14 - len(p)
    if fill is None:
        fill = _random_fill("ABCDEF", need)
    elif len(fill) != need or any(c not in "ABCDEF" for c in fill):
        raise InvalidInput("fill", f"{need} digits A to F")
    return xor(_pin_field(3, p, fill, 16), pan_field_iso0(pan))


def decode_iso3(block: bytes, pan: str) -> str:
    """Recover the PIN from a format 3 plain block; fill must be A to F."""
    text = xor(bytes.fromhex(_block(block, 8)), pan_field_iso0(pan)).hex().upper()
    return _parse_pin(text, 3, "ABCDEF", 16)


def encode_iso4_pin_field(pin: str, random_half: bytes | None = None) -> bytes:
    """Format 4 plain-text PIN field (clause 9.3): ``4 L P.. A..`` then 8 random bytes.

    ANSI X9.24-3:2017 supplement, "Calculation of AES PIN block format 4":

    >>> encode_iso4_pin_field("1234", bytes(8)).hex().upper()[:16]
    '441234AAAAAAAAAA'
    """
    p = _pin(pin)
    half = secrets.token_bytes(8) if random_half is None else _validate.length(
        random_half, "random_half", (8,)
    )
    return _pin_field(4, p, "A" * 14, 16) + half


def decode_iso4_pin_field(field: bytes) -> str:
    """Recover the PIN from a format 4 plain-text PIN field."""
    return _parse_pin(_block(field, 16), 4, "A", 16)


def encode_iso4_pan_field(pan: str) -> bytes:
    """Format 4 plain-text PAN field (clause 9.3): ``M`` and the PAN, zero padded.

    ``M`` is the PAN length less 12; a PAN shorter than 12 digits is left-padded
    with zeros to 12. ANSI X9.24-3:2017 supplement:

    >>> encode_iso4_pan_field("4111111111111111").hex().upper()
    '44111111111111111000000000000000'
    """
    digits = _validate.digits(pan, "pan", 1, 19)
    digits = digits.rjust(12, "0")
    text = _HEX[len(digits) - 12] + digits
    return bytes.fromhex(text.ljust(32, "0"))


# The first half of a format 4 PIN field (clause 9.3.6.2) for each PIN length 4-12, as hex: fill A.
# The second half is random and any value is well formed.
_ISO4_FIELD: Final = re.compile("|".join(f"4{n:X}[0-9]{{{n}}}A{{{14 - n}}}" for n in range(4, 13)))
_ISO4_SHAPES: Final = _shapes(4, "A")
_PAN4_LENGTHS: Final = frozenset(range(1, 20))


def iso4_pan_fields(pans: Sequence[str]) -> bytes:
    """Each PAN's format 4 field (clause 9.3.6.3), back to back: :func:`encode_iso4_pan_field` for a run.

    >>> iso4_pan_fields(["4111111111111111", "123456789"]).hex().upper()
    '4411111111111111100000000000000000001234567890000000000000000000'
    """
    if len(pans) < 2:
        return encode_iso4_pan_field(pans[0]) if pans else b""
    digits, lengths = _pan_digits(pans, _PAN4_LENGTHS)
    if len(lengths) == 1 and (size := len(pans[0])) >= 12:
        # All PANs one length (the usual case): strided copies instead of a string per PAN.
        out = bytearray(b"0" * (32 * len(pans)))
        out[0::32] = _HEX[size - 12].encode() * len(pans)
        for k in range(size):
            out[1 + k::32] = digits[k::size]
        return bytes.fromhex(out.decode("ascii"))
    return bytes.fromhex("".join([(_HEX[len(d) - 12] + d).ljust(32, "0") for d in (p.rjust(12, "0") for p in pans)]))


def check_iso4_pin_fields(fields: bytes) -> list[bool]:
    """For a run of plain format 4 PIN fields (clause 9.3.6.2), whether each is well formed.

    The batch form of :func:`decode_iso4_pin_field`, on the first halves only:
    the second is random.

    >>> check_iso4_pin_fields(encode_iso4_pin_field("1234") + bytes(16))
    [True, False]
    """
    if len(fields) % 16:
        raise InvalidInput("fields", "16 bytes each")
    n = len(fields) // 16
    if n == 1:
        # A single translation's field: the same check in as few steps as it takes.
        return [_ISO4_FIELD.fullmatch(fields[:8].hex().upper()) is not None]
    firsts = bytearray(8 * n)
    for k in range(8):
        firsts[k::8] = fields[k::16]
    text = firsts.hex().upper()
    if _all_well_formed(text, 4, _ISO4_SHAPES):
        return [True] * n
    match = _ISO4_FIELD.fullmatch
    return [match(text, i, i + 16) is not None for i in range(0, len(text), 16)]


def renew_iso4_pin_fields(fields: bytes) -> bytes:
    """The same PIN fields, each with a fresh random second half (clause 9.3.6.2), as a new block has."""
    if len(fields) % 16:
        raise InvalidInput("fields", "16 bytes each")
    n = len(fields) // 16
    if n == 1:
        return fields[:8] + secrets.token_bytes(8)
    out = bytearray(fields)
    fresh = secrets.token_bytes(8 * n)
    for k in range(8):
        out[8 + k::16] = fresh[k::8]
    return bytes(out)


def encode_sm4_0(pin: str, pan: str) -> bytes:
    """The 16-byte widened format 0 for SM4 zones (bilateral; see module docstring)."""
    pin_field = _pin_field(0, _pin(pin), "F" * 30, 32)
    return xor(pin_field, bytes(8) + pan_field_iso0(pan))


def decode_sm4_0(block: bytes, pan: str) -> str:
    """Recover the PIN from a widened format 0 plain block."""
    text = xor(bytes.fromhex(_block(block, 16)), bytes(8) + pan_field_iso0(pan)).hex().upper()
    return _parse_pin(text, 0, "F", 32)


def check_cipher(fmt: PinBlockFormat, algorithm: Algorithm) -> None:
    """Formats 0-3 need a 64-bit block cipher, 4 a 128-bit one, SM4_0 SM4 itself."""
    if fmt is PinBlockFormat.SM4_0:
        ok = algorithm is Algorithm.SM4
    elif fmt is PinBlockFormat.ISO_4:
        ok = algorithm.block_size == 16
    else:
        ok = algorithm.block_size == 8
    if not ok:
        raise InvalidInput("pin_block_format", f"{fmt.value} cannot be used with {algorithm.value}")


def _pan_for(fmt: PinBlockFormat, pan: str | None) -> str:
    """The PAN a PAN-bound format needs; formats 1 and 2 ignore it."""
    if not fmt.pan_bound:
        return ""
    if pan is None:
        raise InvalidInput("pan", "required for this PIN block format")
    return pan


def encipher(fmt: PinBlockFormat, cipher: EcbCipher, pin: str, pan: str | None) -> bytes:
    """Build and encipher a PIN block of format ``fmt`` under ``cipher``'s key.

    Format 4 is enciphered as in clause 9.3: E(K, E(K, PIN field) XOR PAN field).
    """
    check_cipher(fmt, cipher.algorithm)
    p = _pan_for(fmt, pan)
    if fmt is PinBlockFormat.ISO_4:
        a = cipher.encrypt(encode_iso4_pin_field(pin))
        return cipher.encrypt(xor(a, encode_iso4_pan_field(p)))
    return cipher.encrypt(encode(fmt, pin, p))


@dataclass(frozen=True)
class _Codec:
    """A format's plain block (for ISO 4, the plain-text PIN field), given the PIN and the PAN it binds."""

    encode: Callable[[str, str], bytes]
    decode: Callable[[bytes, str], str]


# Formats 1 and 2 bind no PAN (clause 9.3.3, 9.3.4): their codecs are given "" and ignore it.
_CODECS: Final[Mapping[PinBlockFormat, _Codec]] = {
    PinBlockFormat.ISO_0: _Codec(encode_iso0, decode_iso0),
    PinBlockFormat.ISO_1: _Codec(lambda pin, _: encode_iso1(pin), lambda block, _: decode_iso1(block)),
    PinBlockFormat.ISO_2: _Codec(lambda pin, _: encode_iso2(pin), lambda block, _: decode_iso2(block)),
    PinBlockFormat.ISO_3: _Codec(encode_iso3, decode_iso3),
    PinBlockFormat.ISO_4: _Codec(lambda pin, _: encode_iso4_pin_field(pin),
                                 lambda field, _: decode_iso4_pin_field(field)),
    PinBlockFormat.SM4_0: _Codec(encode_sm4_0, decode_sm4_0),
}


def _codec(fmt: PinBlockFormat) -> _Codec:
    codec = _CODECS.get(fmt)
    if codec is None:
        raise InvalidInput("pin_block_format", "a known format")
    return codec


def encode(fmt: PinBlockFormat, pin: str, pan: str | None) -> bytes:
    """The plain block of ``fmt`` (for ISO 4, the plain-text PIN field)."""
    return _codec(fmt).encode(pin, _pan_for(fmt, pan))


def decode(fmt: PinBlockFormat, block: bytes, pan: str | None) -> str:
    """Parse the plain block of ``fmt``; ``InvalidPinBlock`` on any fault."""
    return _codec(fmt).decode(block, _pan_for(fmt, pan))


def decipher(fmt: PinBlockFormat, cipher: EcbCipher, block: bytes, pan: str | None) -> str:
    """Decipher and parse a PIN block; one ``InvalidPinBlock`` for every fault."""
    check_cipher(fmt, cipher.algorithm)
    p = _pan_for(fmt, pan)
    if not isinstance(block, (bytes, bytearray)) or len(block) != fmt.block_size:
        raise InvalidInput("pin_block", f"{fmt.block_size} bytes")
    if fmt is PinBlockFormat.ISO_4:
        b = cipher.decrypt(bytes(block))
        return decode_iso4_pin_field(cipher.decrypt(xor(b, encode_iso4_pan_field(p))))
    return decode(fmt, cipher.decrypt(bytes(block)), p)
