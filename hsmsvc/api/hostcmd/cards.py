"""Card commands: the Visa CVV (CW, CY), EMV ARQC verification with an ARPC (KQ), and DUKPT PIN
translation to a ZPK (CI, G0).

Deviations (``docs/host-commands.md``): KQ never makes an ARPC alone (mode 2: an ARPC for a
cryptogram nobody checked is refused, ``04``); CI and G0 answer the PIN length ``12``, as hsmsvc
never releases a PIN's length (CA answers the request's maximum for the same reason).
"""

from __future__ import annotations

from typing import Final

from hsmsvc.api.hostcmd import codes
from hsmsvc.api.hostcmd.codes import HostError
from hsmsvc.api.hostcmd.fields import Fields
from hsmsvc.api.hostcmd.pin import CODES, FORMATS, pan_of
from hsmsvc.api.hostcmd.registry import Answer, command, key_ref
from hsmsvc.api.runner import Lane
from hsmsvc.crypto.cvv import CvvKind
from hsmsvc.crypto.emv import MasterKeyOption, SessionKeyMethod
from hsmsvc.errors import InvalidInput
from hsmsvc.hsm.commands import ArpcMethod, ArqcData, CvvData
from hsmsvc.service import cardvalues
from hsmsvc.service import emv as emv_uc
from hsmsvc.service import pin as pin_uc
from hsmsvc.service.context import Caller, Services
from hsmsvc.service.pinkeys import DukptKeyRef
from hsmsvc.types import PinBlockFormat

__all__ = ["SCHEMES"]

SCHEMES: Final = {b"0": (SessionKeyMethod.VISA_CVN10, ArpcMethod.METHOD_1),
                  b"1": (SessionKeyMethod.MASTERCARD_SKD, ArpcMethod.METHOD_1_CARD_KEY)}
"""KQ's Scheme ID: 0 Visa VSDC (the card's key makes the cryptogram; ARPC method 1 under it),
1 M/Chip (the Mastercard SKD with the UN; M/Chip 4's ARPC method 1 under the card's key)."""


# -- CW, CY: the Visa CVV ---------------------------------------------------------------------


def _card(f: Fields) -> CvvData:
    """PAN (up to 19N) and ``;``, expiration date (4N, YYMM), service code (3N): the CVV's data."""
    pan = f.until(b";", "primary account number", 19)
    if not pan.isdigit() or not pan.isascii():
        raise HostError(codes.INVALID_INPUT, "primary account number")
    expiry = f.digits(4, "expiration date")
    service_code = f.digits(3, "service code")
    f.end()
    return CvvData(kind=CvvKind.CVV, pan=pan.decode("ascii"), expiry=expiry, service_code=service_code)


@command("CW", "CardService.GenerateCvv", Lane.TRANSACTION)
def generate_cvv(s: Services, c: Caller, f: Fields) -> bytes:
    """CW: a card's Visa CVV under its CVK (the CVV method, IBM CCA appendix E); the issuer's duty."""
    key_field = f.stored_key("CVK")
    data = _card(f)
    value, _ = cardvalues.generate_cvv(s, c, key=key_ref(s, c, key_field, "key"), data=data)
    return value.encode("ascii")


@command("CY", "CardService.VerifyCvv", Lane.TRANSACTION)
def verify_cvv(s: Services, c: Caller, f: Fields) -> bytes | Answer:
    """CY: a Visa CVV checked, counted against the card as a PIN check is (``39`` past the limit)."""
    key_field = f.stored_key("CVK")
    cvv = f.digits(3, "CVV")
    data = _card(f)
    ok = cardvalues.verify_card_value(s, c, key=key_ref(s, c, key_field, "key"), item=data, value=cvv)
    return b"" if ok else Answer(codes.VERIFICATION_FAILED)


# -- KQ: ARQC verification and ARPC generation ------------------------------------------------


def _unpadded(data: bytes) -> bytes:
    """The M/Chip cryptogram input without the ``80 00..`` the host appends (KQ's rule: the host pads,
    the HSM zero-fills); hsmsvc's SKD pads by ISO/IEC 9797-1 method 2 itself, to the same blocks."""
    body = data.rstrip(b"\x00")
    return body[:-1] if body.endswith(b"\x80") else data


@command("KQ", "CardService.VerifyArqc", Lane.INLINE)
def verify_arqc(s: Services, c: Caller, f: Fields) -> bytes | Answer:
    """KQ: an ARQC (TC, AAC) checked under the card's key from the MK-AC (EMV 4.3 Book 2 annex A1.4
    option A: the PAN/PSN field is its Y), answered with an ARPC (section 8.2.1) in mode 1."""
    mode = f.take(1, "mode flag", codes.KQ_MODE)
    if mode not in (b"0", b"1"):  # 2 (ARPC only) and later modes: no ARPC without a verified ARQC
        raise HostError(codes.KQ_MODE, "mode flag")
    scheme = SCHEMES.get(f.take(1, "scheme ID", codes.KQ_SCHEME))
    if scheme is None:
        raise HostError(codes.KQ_SCHEME, "scheme ID")
    key_field = f.stored_key("MK-AC")
    y = f.take(8, "PAN/PAN sequence number").hex()
    if not y.isdigit():
        raise HostError(codes.INVALID_INPUT, "PAN/PAN sequence number")
    atc = f.take(2, "ATC")
    un = f.take(4, "unpredictable number")
    n = f.hex(2, "transaction data length", codes.DATA_LENGTH)[0]
    if n == 0:
        raise HostError(codes.KQ_NO_DATA, "transaction data length")
    data = f.take(n, "transaction data", codes.DATA_LENGTH)
    if not f.skip(b";"):  # the data is not the length said
        raise HostError(codes.DATA_LENGTH, "transaction data")
    arqc = f.take(8, "ARQC")
    arc = f.take(2, "ARC") if mode == b"1" else b""
    f.end()
    method, arpc = scheme
    skd = method is SessionKeyMethod.MASTERCARD_SKD
    # Option A takes only the rightmost 16 digits of PAN || PSN, which the field is: its first 14
    # stand for the PAN (what the card key and nothing else here is derived from).
    item = ArqcData(pan=y[:14], psn=y[14:], option=MasterKeyOption.A, method=method, atc=atc,
                    data=_unpadded(data) if skd else data, arqc=arqc, un=un if skd else None,
                    arpc=arpc if mode == b"1" else ArpcMethod.NONE, arc=arc)
    try:
        out, _ = emv_uc.verify_arqc(s, c, key=key_ref(s, c, key_field, "key"), item=item)
    except InvalidInput as e:
        if e.field == "transaction_data":  # shorter than Book 2 8.1.1's data elements
            raise HostError(codes.DATA_LENGTH, "transaction data") from None
        raise
    return Answer(codes.VERIFICATION_FAILED) if out is None else out


# -- CI, G0: a DUKPT PIN block to a ZPK -------------------------------------------------------


_PIN_LENGTH: Final = b"12"
"""The reply's PIN length: hsmsvc never releases a PIN's length (module docstring)."""


def _ksn(f: Fields) -> bytes:
    """KSN descriptor (3H: the lengths of the key set id, sub-key and device id) and the KSN, 20H
    (X9.24-1:2009's 80 bits, ``F``-padded on the left): the KSN alone names the transaction key."""
    raw = f.take(3, "KSN descriptor")
    try:
        lengths = [int(chr(x), 16) for x in raw]
    except ValueError:
        raise HostError(codes.INVALID_INPUT, "KSN descriptor") from None
    if sum(lengths) + 5 > 20:  # and the 21-bit counter (5H) must fit
        raise HostError(codes.INVALID_INPUT, "KSN descriptor")
    return f.hex(20, "KSN")


def _format(f: Fields, name: str, allowed: tuple[bytes, ...]) -> PinBlockFormat:
    raw = f.take(2, name, codes.PIN_FORMAT)
    if raw not in allowed:
        raise HostError(codes.PIN_FORMAT, name)
    return FORMATS[raw]


def _dukpt(s: Services, c: Caller, f: Fields, g0: bool) -> bytes:
    if g0 and not f.skip(b"*"):  # the BDK flag: the stored key's own type says what it is
        f.skip(b"~")
    bdk_field = f.stored_key("BDK")
    if g0 and f.peek() in (b"*", b"~"):  # a BDK destination: hsmsvc translates to ZPKs only
        raise HostError(codes.DISABLED, "destination key flag")
    zpk_field = f.stored_key("ZPK", codes.DESTINATION_KEY)
    ksn = _ksn(f)
    block = f.hex(16, "source PIN block")
    if g0:
        _format(f, "source PIN block format", (b"01",))
    # CI: 01 (ANSI X9.8, ISO 0) or 04 (PLUS, not taken); G0 also ISO 1 and 3 (a 12N account).
    dst_fmt = _format(f, "destination PIN block format", (b"01", b"05", b"47") if g0 else (b"01",))
    pan = pan_of(f.digits(12, "account number", codes.ACCOUNT))
    f.end()
    source = DukptKeyRef(key_ref(s, c, bdk_field, "bdk"), ksn)
    dst = key_ref(s, c, zpk_field, "destination_key")
    route = s.routes.route(s, c, None, lambda: (source, PinBlockFormat.ISO_0, dst, dst_fmt))  # a KSN is once
    out, _, _ = pin_uc.translate_routed(s, c, route=route, pin_block=block, pan=pan)
    return _PIN_LENGTH + out.hex().upper().encode() + CODES[dst_fmt]


@command("CI", "PinService.TranslatePin", Lane.INLINE, destinations=("destination_key",))
def translate_dukpt_to_zpk(s: Services, c: Caller, f: Fields) -> bytes:
    """CI: an ISO 0 PIN block under a TDES DUKPT transaction's PIN key (X9.24-1:2009 annex A) to a ZPK."""
    return _dukpt(s, c, f, g0=False)


@command("G0", "PinService.TranslatePin", Lane.INLINE, destinations=("destination_key",))
def translate_bdk_to_zpk(s: Services, c: Caller, f: Fields) -> bytes:
    """G0: as CI, with the source format given; a BDK destination is refused (``68``)."""
    return _dukpt(s, c, f, g0=True)
