"""PIN commands: translation (CA, CC) and verification (DA, EA: IBM 3624 offset; DC, EC: Visa PVV;
BC, BE: against the PIN the host database keeps).

The clear PIN never leaves the backend; the length field of a translation's reply is the
request's maximum PIN length, not the PIN's (``docs/host-commands.md``, "Deviations").
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Final

from hsmsvc.api.hostcmd import codes
from hsmsvc.api.hostcmd.codes import HostError
from hsmsvc.api.hostcmd.fields import Fields
from hsmsvc.api.hostcmd.registry import Answer, command, key_ref, stored_key
from hsmsvc.api.runner import Lane
from hsmsvc.errors import KeyUsageViolation
from hsmsvc.hsm.policy import Operation
from hsmsvc.keys.model import KeyRef, StoredKey
from hsmsvc.service import pin as uc
from hsmsvc.service import verification as vf
from hsmsvc.service.cards import luhn_valid
from hsmsvc.service.context import Caller, Services
from hsmsvc.hsm.model import StoredPin, StoredPinMethod
from hsmsvc.types import Algorithm, KeyType, PinBlockFormat

__all__ = ["FORMATS", "pan_of"]

FORMATS: Final = {b"01": PinBlockFormat.ISO_0, b"05": PinBlockFormat.ISO_1, b"47": PinBlockFormat.ISO_3,
                  b"48": PinBlockFormat.ISO_4}
"""payShield's PIN block format codes (2N) for the ISO 9564-1 formats hsmsvc takes."""
CODES: Final = {**{v: k for k, v in FORMATS.items()}, PinBlockFormat.SM4_0: b"01"}
"""The code a reply names a format by: the SM4 widened format 0 is ``01`` under its SM4 key."""


def _format(f: Fields, name: str, key: StoredKey | None = None) -> PinBlockFormat:
    """A format code; ``01`` under an SM4 key is format 0 widened to SM4's 16-byte block (32H), as
    Chinese terminals and financial HSMs form it (``docs/host-commands.md``, SM4)."""
    found = FORMATS.get(f.take(2, name, codes.PIN_FORMAT))
    if found is None:
        raise HostError(codes.PIN_FORMAT, name)
    if found is PinBlockFormat.ISO_0 and key is not None and key.cryptogram.spec.algorithm is Algorithm.SM4:
        return PinBlockFormat.SM4_0
    return found


def pan_of(account: str) -> str:
    """A PAN whose 12 rightmost digits before the check digit are ``account``: all that formats 0
    and 3, and the card's attempt counter, use of it (``service/cards.py``, ``pan_field``)."""
    for d in "0123456789":
        if luhn_valid(account + d):
            return account + d
    raise AssertionError("a Luhn digit always exists")


def _account(f: Fields, formats: tuple[PinBlockFormat, ...]) -> str:
    """12N, the account field of formats 0, 1 and 3; with format 4 (48) the whole PAN, 12 to 19
    digits, ended by ``;`` or the message."""
    if PinBlockFormat.ISO_4 in formats:
        end = f.data.find(b";", f.pos)
        n = (end if end >= 0 else len(f.data)) - f.pos
        if not 12 <= n <= 19:
            raise HostError(codes.ACCOUNT, "account number")
        pan = f.digits(n, "account number", codes.ACCOUNT)
        f.skip(b";")
        if not luhn_valid(pan):
            raise HostError(codes.ACCOUNT, "account number")
        return pan
    return pan_of(f.digits(12, "account number", codes.ACCOUNT))


def _block(f: Fields, key: StoredKey, types: tuple[KeyType, ...], field: str) -> bytes:
    """The PIN block under ``key``, which must be of one of ``types`` (a TPK where the command says
    terminal, a ZPK where zone): 16H under a TDES key, 32H under an AES or SM4 key (format 4).
    Its usage, state and dates are the use case's to check."""
    spec = key.cryptogram.spec
    if spec.key_type not in types:
        raise KeyUsageViolation(field, "not the key type this command takes")
    return f.hex(2 * spec.algorithm.block_size, "PIN block", codes.INVALID_INPUT)


def _translate(s: Services, c: Caller, f: Fields, key_type: KeyType) -> bytes:
    src_field, dst_field = f.stored_key("source key"), None
    if f.peek() in (b"*", b"~"):  # a BDK destination (DUKPT): hsmsvc translates to ZPKs only
        raise HostError(codes.DISABLED, "destination key flag")
    dst_field = f.stored_key("destination key", codes.DESTINATION_KEY)
    max_length = f.digits(2, "maximum PIN length")
    src, src_key = stored_key(s, c, src_field, "source_key")
    dst, dst_key = stored_key(s, c, dst_field, "destination_key")
    block = _block(f, src_key, (key_type,), "source_key")
    src_fmt = _format(f, "source PIN block format", src_key)
    dst_fmt = _format(f, "destination PIN block format", dst_key)
    pan = _account(f, (src_fmt, dst_fmt))
    f.end()
    words = ("host", src, dst, src_fmt, dst_fmt)
    route = s.routes.route(s, c, words, lambda: (src, src_fmt, dst, dst_fmt))
    out, _, _ = uc.translate_routed(s, c, route=route, pin_block=block, pan=pan)
    return max_length.encode() + out.hex().upper().encode() + CODES[dst_fmt]


def _terminal_and_zone(terminal: str, zone: str, method: str, lane: Lane, run: Callable[..., bytes | Answer],
                       destinations: tuple[str, ...]) -> None:
    """Register a command pair that differs only in its PIN key: ``terminal`` takes a TPK, ``zone``
    (interchange) a ZPK, as payShield's pairs do (CA/CC, DA/EA, DC/EC, BC/BE)."""
    for code, key_type in ((terminal, KeyType.TPK), (zone, KeyType.ZPK)):
        command(code, method, lane, destinations=destinations)(functools.partial(run, key_type=key_type))


# CA: a terminal's PIN block from its TPK to a ZPK; CC: from one ZPK to another (ISO 9564-1 9.3).
_terminal_and_zone("CA", "CC", "PinService.TranslatePin", Lane.INLINE, _translate, ("destination_key",))


def _verdict(matched: bool) -> bytes | Answer:
    return b"" if matched else Answer(codes.VERIFICATION_FAILED)


def _verify(s: Services, c: Caller, *, key: KeyRef, f: Fields, block: bytes, fmt: PinBlockFormat, pan: str,
            check: vf.PinCheck) -> bytes | Answer:
    f.end()
    return _verdict(vf.verify_pin(s, c, key=key, fmt=fmt, pin_block=block, pan=pan, check=check))


def _offset(s: Services, c: Caller, f: Fields, key_type: KeyType) -> bytes | Answer:
    """DA/EA (IBM 3624 offset): key, PVK, max PIN length, PIN block, format, check length, account,
    decimalization table, PIN validation data (12A, ``N`` is the account's last 5 digits), offset (12H)."""
    key_field = f.stored_key("PIN key")
    pvk_field = f.stored_key("PVK", codes.DESTINATION_KEY)
    f.digits(2, "maximum PIN length")
    key, pin_key = stored_key(s, c, key_field, "key")
    pvk = key_ref(s, c, pvk_field, "pvk")
    block = _block(f, pin_key, (key_type,), "key")
    fmt = _format(f, "PIN block format", pin_key)
    check_length = f.number(2, "check length")
    pan = _account(f, (fmt,))
    table = f.digits(16, "decimalization table", codes.DECIMALIZATION)
    bound = s.key(c, pvk, Operation.PIN_VERIFY_IBM3624, "pvk").cryptogram.spec.decimalization_table
    if table != (bound or "0123456789012345"):
        raise HostError(codes.DECIMALIZATION, "decimalization table")
    raw = f.take(12, "PIN validation data")
    if not raw.isascii() or not raw.isalnum():
        raise HostError(codes.INVALID_INPUT, "PIN validation data")
    validation = raw.decode().upper().replace("N", pan[-6:-1])
    offset = f.take(12, "offset")
    if not 4 <= check_length <= 12 or not offset[:check_length].isdigit() \
            or offset[check_length:].strip(b"F") != b"":
        raise HostError(codes.INVALID_INPUT, "offset")
    check = vf.OffsetCheck(pvk, validation, offset[:check_length].decode())
    return _verify(s, c, key=key, f=f, block=block, fmt=fmt, pan=pan, check=check)


# DA (terminal) and EA (interchange): a PIN against its IBM 3624 offset.
_terminal_and_zone("DA", "EA", "PinService.VerifyPin", Lane.TRANSACTION, _offset, ("pvk",))


def _pvv(s: Services, c: Caller, f: Fields, key_type: KeyType) -> bytes | Answer:
    """DC/EC (Visa PVV): key, PVK pair, PIN block, format, account, PVKI (1N), PVV (4N)."""
    key_field = f.stored_key("PIN key")
    pvk_field = f.stored_key("PVK pair", codes.DESTINATION_KEY)
    key, pin_key = stored_key(s, c, key_field, "key")
    pvk = key_ref(s, c, pvk_field, "pvk")
    block = _block(f, pin_key, (key_type,), "key")
    fmt = _format(f, "PIN block format", pin_key)
    pan = _account(f, (fmt,))
    pvki = f.number(1, "PVKI")
    pvv = f.digits(4, "PVV")
    return _verify(s, c, key=key, f=f, block=block, fmt=fmt, pan=pan, check=vf.PvvCheck(pvk, pvki, pvv))


# DC (terminal) and EC (interchange): a PIN against its Visa PVV.
_terminal_and_zone("DC", "EC", "PinService.VerifyPin", Lane.TRANSACTION, _pvv, ("pvk",))


_METHODS: Final = {b"E": StoredPinMethod.ENCRYPTED, b"D": StoredPinMethod.DIGEST}


def _compare(s: Services, c: Caller, f: Fields, key_type: KeyType) -> bytes | Answer:
    """BC/BE (comparison): key, PIN block, format, account, and the host database's PIN.

    payShield keeps that PIN under its LMK (pair 02-03); hsmsvc keeps it under a PSK, bound to
    the account (gRPC EncryptPinForStorage). So its field is hsmsvc's: the PSK (``S`` or ``L``),
    the method (``E`` enciphered, ``D`` keyed digest), two digits counting the hex characters,
    and the stored value. The account it is bound to is the command's 12-digit account field.
    """
    key_field = f.stored_key("PIN key")
    key, pin_key = stored_key(s, c, key_field, "key")
    block = _block(f, pin_key, (key_type,), "key")
    fmt = _format(f, "PIN block format", pin_key)
    pan = _account(f, (fmt,))
    psk = key_ref(s, c, f.stored_key("PSK", codes.DESTINATION_KEY), "psk")
    method = _METHODS.get(f.take(1, "stored PIN method"))
    if method is None:
        raise HostError(codes.INVALID_INPUT, "stored PIN method")
    stored = f.hex(f.number(2, "stored PIN length"), "stored PIN")
    check = vf.StoredPinCheck(psk, pan[-13:-1], StoredPin(method, stored))
    return _verify(s, c, key=key, f=f, block=block, fmt=fmt, pan=pan, check=check)


# BC (terminal) and BE (interchange): a PIN against the host database's (comparison method).
_terminal_and_zone("BC", "BE", "PinService.VerifyPin", Lane.TRANSACTION, _compare, ("psk",))
