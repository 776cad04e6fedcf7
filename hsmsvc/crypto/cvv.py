"""Card verification values: the Visa/Mastercard CVV method, Visa dCVV, Mastercard CVC3 (issue 35).

* CVV method (Visa CVV, Mastercard CVC; IBM CCA Basic Services appendix E, "CVV and CVC method"):
  CVV, CVV2 and iCVV are one algorithm with different service codes (:class:`CvvKind`).
* dCVV of Visa contactless magnetic-stripe (MSD) transactions: the CVV method with the ATC in the
  data (see :func:`generate_dcvv` for exactly what, and where that convention comes from).
* CVC3 of Mastercard contactless magnetic-stripe transactions, as pyemv documents it.

Clear key bytes in, digits out. The CVK is a double-length key A||B (a two-key TDES key). The dCVV
and CVC3 keys are the card's own (ICC) keys, which the issuer derives from its master key (EMV
Book 2 annex A1.4, option A or B); that derivation is not in this module.

American Express CSC is not here: no public description of its versions 1 and 2 with test
vectors was found (issue 35).
"""

from __future__ import annotations

from enum import Enum, unique
from typing import Final

from cryptography.hazmat.primitives.ciphers import Cipher, modes

from hsmsvc.crypto import _cipher, compare, _validate, mac
from hsmsvc.errors import InvalidInput
from hsmsvc.types import Algorithm, Padding

__all__ = [
    "CvvKind",
    "CvvMethod",
    "generate_cvc3",
    "generate_cvv",
    "generate_dcvv",
    "generate_ivcvc3",
    "verify_cvc3",
    "verify_cvv",
    "verify_dcvv",
]

KEY_LENGTH: Final = 16
"""Every key here is double length: CVK A||B, the ICC dCVV key, the ICC CVC3 key."""
MIN_CVV_LENGTH: Final = 3
MAX_CVV_LENGTH: Final = 5
"""IBM CCA's CVV Generate gives 1 to 5 digits; fewer than 3 is refused here as too guessable."""
MAX_TRACK: Final = 79
"""The longest track data for an IVCVC3: 79 characters, the capacity of track 1 (ISO/IEC 7813)."""
CVC3_DIGITS: Final = 5
"""A CVC3 is a 2-byte number, so at most 65535: five decimal digits."""

_DIGITS: Final = frozenset("0123456789")
_DCVV_LENGTH: Final = 3


@unique
class CvvKind(Enum):
    """Which value of the CVV method: they differ only in the service code in the data.

    000 and 999 are the conventional codes (psec's ``generate_cvv`` notes give 000 for CVV2 and
    only require iCVV's to differ; no public scheme text was found): an issuer with another
    convention uses ``CVV`` with its own code.
    """

    CVV = "CVV"
    """CVV1 / CVC1 of the magnetic stripe: the card's own service code, given by the caller."""
    CVV2 = "CVV2"
    """CVV2 / CVC2 printed on the card: service code 000."""
    ICVV = "ICVV"
    """iCVV / chip CVC of the chip's track 2 equivalent data: service code 999."""

    @property
    def service_code(self) -> str | None:
        """The service code this kind fixes; ``None`` for CVV, which takes the card's."""
        return _FIXED_SERVICE_CODE.get(self)


_FIXED_SERVICE_CODE: Final = {CvvKind.CVV2: "000", CvvKind.ICVV: "999"}


def _key(value: bytes, field: str) -> bytes:
    return _validate.length(value, field, (KEY_LENGTH,))


def _pan(pan: str) -> str:
    return _validate.digits(pan, "pan", 12, 19)


def _expiry(expiry: str) -> str:
    # YYMM as the issuer encodes it; the month is not checked (IBM CCA does not either).
    return _validate.digits(expiry, "expiry", 4, 4)


def _service_code(code: str) -> str:
    return _validate.digits(code, "service_code", 3, 3)


def _length(length: int) -> int:
    if isinstance(length, bool) or not isinstance(length, int) or not MIN_CVV_LENGTH <= length <= MAX_CVV_LENGTH:
        raise InvalidInput("length", f"{MIN_CVV_LENGTH} to {MAX_CVV_LENGTH} digits")
    return length


def _presented(value: str, field: str, min_len: int, max_len: int) -> str:
    if not isinstance(value, str) or not min_len <= len(value) <= max_len or not _DIGITS.issuperset(value):
        raise InvalidInput(field, f"{min_len} to {max_len} digits")
    return value


def _decimalize(block: bytes) -> str:
    """The decimal digits of ``block``'s hex form left to right, then its digits A-F minus 10."""
    hexed = block.hex()
    digits = [c for c in hexed if c in _DIGITS]
    letters = [str(int(c, 16) - 10) for c in hexed if c not in _DIGITS]
    return "".join(digits + letters)


class CvvMethod:
    """The CVV method under one CVK A||B, its two ECB contexts made once: the items of a batch share
    them (an ECB context keeps no state from one block to the next)."""

    __slots__ = ("_des", "_tdes")

    def __init__(self, cvk: bytes) -> None:
        key = _key(cvk, "cvk")
        self._des = Cipher(_cipher.des_primitive(key[:8]), modes.ECB()).encryptor()
        self._tdes = Cipher(_cipher.primitive(Algorithm.TDES_2KEY, key), modes.ECB()).encryptor()

    def digits(self, data: str, length: int) -> str:
        """IBM CCA appendix E: ``data`` (hex digits) right-padded with zeros to 32, split in two blocks;
        the left one DES-enciphered under key A, XORed with the right one, TDES-enciphered (EDE, A, B),
        then decimalized."""
        block = bytes.fromhex(data.ljust(32, "0"))
        left = self._des.update(block[:8])
        return _decimalize(self._tdes.update(_cipher.xor(left, block[8:])))[:length]

    def generate(self, *, kind: CvvKind, pan: str, expiry: str, service_code: str | None = None,
                 length: int = 3) -> str:
        """:func:`generate_cvv` under this method's CVK."""
        code = _kind_service_code(kind, service_code)
        n = _length(length)
        return self.digits(_pan(pan) + _expiry(expiry) + code, n)


def _cvv_method(key: bytes, data: str, length: int) -> str:
    return CvvMethod(key).digits(data, length)


def _kind_service_code(kind: CvvKind, service_code: str | None) -> str:
    if not isinstance(kind, CvvKind):
        raise InvalidInput("kind", "a CvvKind")
    fixed = kind.service_code
    if fixed is None:
        if service_code is None:
            raise InvalidInput("service_code", "required for a magnetic-stripe CVV")
        return _service_code(service_code)
    if service_code is not None:
        raise InvalidInput("service_code", f"none: {kind.value} fixes it")
    return fixed


def generate_cvv(
    cvk: bytes,
    *,
    kind: CvvKind,
    pan: str,
    expiry: str,
    service_code: str | None = None,
    length: int = 3,
) -> str:
    """The CVV method (Visa CVV, Mastercard CVC; IBM CCA Basic Services appendix E) under CVK A||B.

    Data: PAN (12 to 19 digits), expiry (4 digits, YYMM), service code (3 digits): the card's for
    ``CvvKind.CVV``, 000 for CVV2, 999 for iCVV. The result is the first ``length`` (3 to 5)
    decimalized digits. psec's documented example (``psec.cvv.generate_cvv``):

    >>> cvk = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    >>> generate_cvv(cvk, kind=CvvKind.CVV, pan="1234567890123456", expiry="9912", service_code="220")
    '170'
    """
    return CvvMethod(cvk).generate(kind=kind, pan=pan, expiry=expiry, service_code=service_code, length=length)


def verify_cvv(
    cvk: bytes,
    *,
    kind: CvvKind,
    pan: str,
    expiry: str,
    cvv: str,
    service_code: str | None = None,
) -> None:
    """Raise ``VerificationFailed`` unless ``cvv`` (3 to 5 digits) is the value of :func:`generate_cvv`."""
    presented = _presented(cvv, "cvv", MIN_CVV_LENGTH, MAX_CVV_LENGTH)
    computed = generate_cvv(cvk, kind=kind, pan=pan, expiry=expiry, service_code=service_code,
                            length=len(presented))
    compare.require_eq(computed.encode(), presented.encode(), "cvv")


def _atc(atc: bytes) -> bytes:
    return _validate.length(atc, "atc", (2,))


def generate_dcvv(
    key: bytes,
    *,
    pan: str,
    expiry: str,
    atc: bytes,
    service_code: str = "000",
) -> str:
    """The 3-digit dCVV of a Visa contactless magnetic-stripe (MSD) transaction.

    ``key`` is the card's dCVV key (derived by the issuer from its dCVV master key, EMV option A),
    ``atc`` the 2-byte application transaction counter (tag 9F36). What is computed: the CVV
    method, first 3 digits, over the data

        ATC as 4 hex digits || the PAN without its 4 leftmost digits || expiry (YYMM) || service code

    that is, the ATC *replaces the PAN's 4 leftmost digits*; it does not replace the service code.
    No public text of Visa's specification (the Visa Contactless Payment Specification) was found. This
    convention is that of the public implementation spochic/gep3 (``src/emv/dsc.py``,
    ``generate_dcvv``), whose tests (``tests/dsc_test.py``) hold the two vectors the hsmsvc tests
    reproduce; it places the service code 000 after the expiry, which the zero padding makes the
    same as no service code. Those vectors have ATC 0001: an ATC whose hex form has a digit A-F is
    covered by no public vector. The first vector of gep3:

    >>> k = bytes.fromhex("9991C31043BFD9858016396CF24F0D6F")
    >>> generate_dcvv(k, pan="4012340000000016", expiry="1228", atc=bytes.fromhex("0001"))
    '369'
    """
    k = _key(key, "key")
    p = _pan(pan)
    data = _atc(atc).hex() + p[4:] + _expiry(expiry) + _service_code(service_code)
    return _cvv_method(k, data, _DCVV_LENGTH)


def verify_dcvv(
    key: bytes,
    *,
    pan: str,
    expiry: str,
    atc: bytes,
    dcvv: str,
    service_code: str = "000",
) -> None:
    """Raise ``VerificationFailed`` unless ``dcvv`` (3 digits) is the value of :func:`generate_dcvv`."""
    presented = _presented(dcvv, "dcvv", _DCVV_LENGTH, _DCVV_LENGTH)
    computed = generate_dcvv(key, pan=pan, expiry=expiry, atc=atc, service_code=service_code)
    compare.require_eq(computed.encode(), presented.encode(), "dcvv")


def _track(track: bytes) -> bytes:
    if not isinstance(track, (bytes, bytearray)) or not 1 <= len(track) <= MAX_TRACK:
        raise InvalidInput("track", f"1 to {MAX_TRACK} bytes")
    return bytes(track)


def generate_ivcvc3(key: bytes, *, track: bytes) -> bytes:
    """The 2-byte IVCVC3 of Mastercard contactless magnetic stripe, from the card's CVC3 key.

    The rightmost 2 bytes of ISO/IEC 9797-1 MAC algorithm 3 (retail MAC, DES with K||K', padding
    method 2) over the track template under ``key``, as pyemv's ``generate_cvc3`` documents it:
    track 2 as packed hex (``PAN D YYMM service code discretionary data``, F-padded to whole
    bytes), track 1 as ASCII (``B PAN ^NAME^ YYMM service code discretionary data``).

    >>> k = bytes.fromhex("A3D0BC420A766611F7BC19E7F2E221AF")
    >>> generate_ivcvc3(k, track=bytes.fromhex("5413123456784800D20061019000990000000F")).hex().upper()
    'A46B'
    """
    k = _key(key, "key")
    return mac.generate_retail_mac(k, _track(track), Padding.METHOD_2)[-2:]


def generate_cvc3(key: bytes, *, track: bytes, unpredictable_number: bytes, atc: bytes) -> str:
    """The 5-digit CVC3 (Mastercard contactless magnetic stripe), following pyemv's ``generate_cvc3``.

    ``key`` is the card's CVC3 key (the ICC key derived from the issuer's CVC3 master key),
    ``unpredictable_number`` the terminal's 4-byte UN, ``atc`` the 2-byte ATC. The 2 rightmost
    bytes of the TDES encipherment of IVCVC3 || UN || ATC, read as a number, zero-padded to five
    digits (pyemv returns the number without leading zeros). A track carries only its rightmost
    digits: :func:`verify_cvc3` compares those.

    >>> k = bytes.fromhex("A3D0BC420A766611F7BC19E7F2E221AF")
    >>> generate_cvc3(k, track=bytes.fromhex("5413123456784800D20061019000990000000F"),
    ...               unpredictable_number=bytes.fromhex("00000899"), atc=bytes.fromhex("005E"))
    '30687'
    """
    k = _key(key, "key")
    iv = generate_ivcvc3(k, track=track)
    un = _validate.length(unpredictable_number, "unpredictable_number", (4,))
    block = _cipher.ecb_encrypt(Algorithm.TDES_2KEY, k, iv + un + _atc(atc))
    return f"{int.from_bytes(block[-2:], 'big'):0{CVC3_DIGITS}d}"


def verify_cvc3(key: bytes, *, track: bytes, unpredictable_number: bytes, atc: bytes, cvc3: str) -> None:
    """Raise ``VerificationFailed`` unless ``cvc3`` (the 3 to 5 digits a track carries) is the
    rightmost part of :func:`generate_cvc3`'s value."""
    presented = _presented(cvc3, "cvc3", 3, CVC3_DIGITS)
    computed = generate_cvc3(key, track=track, unpredictable_number=unpredictable_number, atc=atc)
    compare.require_eq(computed[-len(presented):].encode(), presented.encode(), "cvc3")
