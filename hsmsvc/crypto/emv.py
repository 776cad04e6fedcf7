"""EMV issuer cryptography over TDES: card keys, application cryptograms, issuer scripts (issue 35).

Pure functions of clear key bytes: no key store, no I/O. Clause numbers are those of
EMV 4.3 Book 2 (Security and Key Management):

* ICC master key from an issuer master key (IMK): annex A1.4.1 option A, A1.4.2 option B.
* Session keys: the common session key derivation of A1.3.1, the Mastercard SKD
  (R = ATC || 00 00 || UN), the Visa CVN 10/18/22 conventions, and the Visa secure-messaging key.
* Application cryptograms (ARQC, TC, AAC; section 8.1, A1.2.1): ISO/IEC 9797-1 MAC algorithm 3.
* ARPC methods 1 and 2 (section 8.2).
* Issuer scripts (section 9): the command MAC, the encipherment of command data, and the
  offline PIN change block.

Which data elements make up the cryptogram input (CDOL data, the CVR or the whole issuer
application data 9F10) is the scheme's rule and the caller's concern. The SM4 counterparts for
PBOC 3.0 / UnionPay IC cards are in :mod:`hsmsvc.crypto.emvsm4`.
"""

from __future__ import annotations

import hashlib
from enum import Enum, unique
from typing import Final

from hsmsvc.crypto import _cipher, _validate, compare, mac, pinblock
from hsmsvc.crypto.components import adjust_odd_parity
from hsmsvc.errors import InvalidInput
from hsmsvc.types import Algorithm, Padding

__all__ = [
    "AC_LENGTH",
    "MAX_SCRIPT_DATA",
    "MasterKeyOption",
    "ScriptEncryption",
    "ScriptKeyMethod",
    "SessionKeyMethod",
    "compute_ac",
    "derive_common_session_key",
    "derive_icc_master_key",
    "derive_script_session_key",
    "derive_session_key",
    "encrypt_pin_change",
    "encrypt_script_data",
    "encrypt_visa_pin_change",
    "generate_ac",
    "generate_arpc_method1",
    "generate_arpc_method2",
    "generate_script_mac",
    "master_key_block",
    "master_key_input",
    "script_mac_input",
    "script_mac_length",
    "verify_ac",
]

_TDES: Final = Algorithm.TDES_2KEY
AC_LENGTH: Final = 8
"""An application cryptogram (9F26) is 8 bytes, whatever the cipher."""
MAX_SCRIPT_DATA: Final = 255
"""The most command data a script command carries: a short APDU's data field."""


@unique
class MasterKeyOption(Enum):
    """How the ICC master key is derived from the IMK (annex A1.4)."""

    A = "A"
    """A1.4.1: the rightmost 16 digits of PAN || PSN."""
    B = "B"
    """A1.4.2: SHA-1 of PAN || PSN, decimalized to 16 digits; option A for PANs of 16 digits or fewer."""


@unique
class SessionKeyMethod(Enum):
    """The application cryptogram session key, by scheme."""

    EMV_CSK = "EMV_CSK"
    """A1.3.1 common session key derivation, R = ATC || 00 00 00 00 00 00."""
    MASTERCARD_SKD = "MASTERCARD_SKD"
    """Mastercard SKD (M/Chip 4, CVN 16/17): the common derivation with R = ATC || 00 00 || UN."""
    VISA_CVN10 = "VISA_CVN10"
    """Visa CVN 10: no session key; the ICC master key computes the cryptogram."""
    VISA_CVN18 = "VISA_CVN18"
    """Visa CVN 18: the EMV common session key."""
    VISA_CVN22 = "VISA_CVN22"
    """Visa CVN 22: the EMV common session key."""

    @property
    def ac_padding(self) -> Padding:
        """ISO/IEC 9797-1 padding of the cryptogram input: method 1 for Visa CVN 10, method 2
        (A1.2.1) for the others."""
        return Padding.METHOD_1 if self is SessionKeyMethod.VISA_CVN10 else Padding.METHOD_2


@unique
class ScriptKeyMethod(Enum):
    """The issuer script (secure messaging) session key."""

    EMV_CSK = "EMV_CSK"
    """A1.3.1 with R = the application cryptogram: Mastercard, Visa CVN 22, CCD."""
    VISA = "VISA"
    """Visa (VIS; CVN 10 and 18): the master key's halves XORed with the ATC and its complement."""


@unique
class ScriptEncryption(Enum):
    """How script command data is enciphered under the confidentiality session key (section 9.3)."""

    EMV = "EMV"
    """TDES-CBC, zero IV, ISO/IEC 9797-1 padding method 2 always (A1.1; CCD)."""
    MASTERCARD = "MASTERCARD"
    """TDES-CBC, zero IV, padding method 2 only when the data is not a multiple of 8 bytes."""
    VISA = "VISA"
    """TDES-ECB of a length byte, the data, then padding method 2 (VIS)."""


def _key(value: bytes, field: str) -> bytes:
    return _validate.key(_TDES, value, field)


def _bytes(value: bytes, field: str, max_len: int) -> bytes:
    if not isinstance(value, (bytes, bytearray)) or len(value) > max_len:
        raise InvalidInput(field, f"bytes, at most {max_len}")
    return bytes(value)


def _complement(block: bytes) -> bytes:
    return bytes(b ^ 0xFF for b in block)


def master_key_input(*, pan: str, psn: str, option: MasterKeyOption) -> bytes:
    """The 8-byte Y of annex A1.4 enciphered into the ICC master key; shared with the SM4 form.

    Option A: PAN || PSN, left-padded with zeros to 16 digits or cut to its rightmost 16.
    Option B (PAN of 17 to 19 digits): the SHA-1 hash of PAN || PSN (BCD, a zero nibble in front
    if odd), its first 16 decimal digits left to right, then, if fewer, its hex letters A to F
    left to right as 0 to 5.

    >>> master_key_input(pan="5656781234567891", psn="01", option=MasterKeyOption.A).hex()
    '5678123456789101'
    """
    if not isinstance(option, MasterKeyOption):
        raise InvalidInput("option", "a MasterKeyOption")
    p = _validate.digits(pan, "pan", 12, 19)
    x = p + _validate.digits(psn, "psn", 2, 2)
    if option is MasterKeyOption.A or len(p) <= 16:
        return bytes.fromhex(x[-16:].zfill(16))
    digest = hashlib.sha1(bytes.fromhex(x.zfill(len(x) + len(x) % 2))).hexdigest()
    digits = [c for c in digest if c.isdigit()]
    letters = [str(int(c, 16) - 10) for c in digest if not c.isdigit()]
    return bytes.fromhex("".join((digits + letters)[:16]))


def derive_icc_master_key(imk: bytes, *, pan: str, psn: str = "00", option: MasterKeyOption) -> bytes:
    """The 16-byte ICC master key (annex A1.4): DES3(IMK)[Y] || DES3(IMK)[Y XOR FF..FF], odd parity.

    ``psn`` is the 2-digit PAN sequence number (5F34), ``00`` when the card has none. pyemv's
    example (pyemv/kd.py):

    >>> imk = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    >>> derive_icc_master_key(imk, pan="99012345678901234", psn="45", option=MasterKeyOption.A).hex().upper()
    '67F8292358083E5EA7AB7FDA58D53B6B'
    """
    key = _key(imk, "imk")
    return adjust_odd_parity(_cipher.ecb_encrypt(_TDES, key, master_key_block(pan=pan, psn=psn, option=option)))


def master_key_block(*, pan: str, psn: str, option: MasterKeyOption) -> bytes:
    """Y || (Y XOR FF..FF), the two blocks the IMK enciphers into the ICC master key (annex A1.4), for
    a backend that holds the IMK as a loaded cipher: the TDES result takes odd parity, the SM4 one
    (``crypto/emvsm4.py``, one 16-byte block) is the key as it is."""
    y = master_key_input(pan=pan, psn=psn, option=option)
    return y + _complement(y)


def derive_common_session_key(icc_master_key: bytes, *, r: bytes) -> bytes:
    """A1.3.1 common session key derivation for an 8-byte block and a 16-byte key, odd parity.

    SK = DES3(MK)[R0 R1 F0 R3..R7] || DES3(MK)[R0 R1 0F R3..R7] for the 8-byte diversification value R.
    """
    key = _key(icc_master_key, "icc_master_key")
    rr = _validate.length(r, "r", (8,))
    f1 = rr[:2] + b"\xf0" + rr[3:]
    f2 = rr[:2] + b"\x0f" + rr[3:]
    return adjust_odd_parity(_cipher.ecb_encrypt(_TDES, key, f1 + f2))


def _atc(atc: bytes) -> bytes:
    return _validate.length(atc, "atc", (2,))


def derive_session_key(
    icc_master_key: bytes, *, method: SessionKeyMethod, atc: bytes, un: bytes | None = None
) -> bytes:
    """The application cryptogram key of ``method`` for the 2-byte ATC (9F36).

    ``un`` (the 4-byte unpredictable number, 9F37) for the Mastercard SKD only. For Visa CVN 10
    the result is the ICC master key itself.
    """
    if not isinstance(method, SessionKeyMethod):
        raise InvalidInput("method", "a SessionKeyMethod")
    a = _atc(atc)
    if method is SessionKeyMethod.MASTERCARD_SKD:
        if un is None:
            raise InvalidInput("un", "4 bytes, required by the Mastercard SKD")
        return derive_common_session_key(icc_master_key, r=a + bytes(2) + _validate.length(un, "un", (4,)))
    if un is not None:
        raise InvalidInput("un", f"not used by {method.value}")
    if method is SessionKeyMethod.VISA_CVN10:
        return _key(icc_master_key, "icc_master_key")
    return derive_common_session_key(icc_master_key, r=a + bytes(6))


def derive_script_session_key(
    icc_master_key: bytes,
    *,
    method: ScriptKeyMethod,
    arqc: bytes | None = None,
    atc: bytes | None = None,
) -> bytes:
    """The issuer script integrity or confidentiality session key, from the matching ICC master key.

    EMV_CSK takes the 8-byte application cryptogram (R = AC, A1.3.1); VISA takes the 2-byte ATC:
    SK = (MK_L XOR 00..00 || ATC) || (MK_R XOR 00..00 || NOT ATC), odd parity.
    """
    if not isinstance(method, ScriptKeyMethod):
        raise InvalidInput("method", "a ScriptKeyMethod")
    if method is ScriptKeyMethod.EMV_CSK:
        if atc is not None or arqc is None:
            raise InvalidInput("arqc", "the application cryptogram, and no ATC, for EMV_CSK")
        return derive_common_session_key(icc_master_key, r=_validate.length(arqc, "arqc", (AC_LENGTH,)))
    if arqc is not None or atc is None:
        raise InvalidInput("atc", "the ATC, and no cryptogram, for VISA")
    key = _key(icc_master_key, "icc_master_key")
    a = _atc(atc)
    left = _cipher.xor(key[:8], bytes(6) + a)
    right = _cipher.xor(key[8:], bytes(6) + _complement(a))
    return adjust_odd_parity(left + right)


def _ac_padding(padding: Padding) -> Padding:
    if padding is not Padding.METHOD_1 and padding is not Padding.METHOD_2:
        raise InvalidInput("padding", "ISO/IEC 9797-1 padding method 1 or 2")
    return padding


def compute_ac(session_key: bytes, *, data: bytes, padding: Padding) -> bytes:
    """The 8-byte cryptogram (A1.2.1): ISO/IEC 9797-1 MAC algorithm 3 over ``data`` under the session key.

    ``padding`` is the scheme's (:attr:`SessionKeyMethod.ac_padding`).
    """
    key = _key(session_key, "session_key")
    return mac.generate_retail_mac(key, _bytes(data, "data", mac.MAX_DATA), _ac_padding(padding))


def generate_ac(
    icc_master_key: bytes,
    *,
    method: SessionKeyMethod,
    atc: bytes,
    data: bytes,
    un: bytes | None = None,
) -> bytes:
    """The ARQC, TC or AAC of ``data`` (section 8.1): the session key and the padding of ``method``.

    ``data`` is the scheme's cryptogram input: for Visa CVN 10 the terminal data, AIP, ATC and the
    4-byte CVR; for CVN 18 and 22 the same with the whole issuer application data (9F10).
    """
    sk = derive_session_key(icc_master_key, method=method, atc=atc, un=un)
    return compute_ac(sk, data=data, padding=method.ac_padding)


def verify_ac(
    icc_master_key: bytes,
    *,
    method: SessionKeyMethod,
    atc: bytes,
    data: bytes,
    ac: bytes,
    un: bytes | None = None,
) -> None:
    """Raise ``VerificationFailed`` unless ``ac`` is the cryptogram :func:`generate_ac` gives."""
    presented = _validate.length(ac, "ac", (AC_LENGTH,))
    computed = generate_ac(icc_master_key, method=method, atc=atc, data=data, un=un)
    compare.require_eq(computed, presented, "ac")


def generate_arpc_method1(key: bytes, *, arqc: bytes, arc: bytes) -> bytes:
    """ARPC method 1 (section 8.2.1): DES3(key)[ARQC XOR (ARC || 00 00 00 00 00 00)], 8 bytes.

    ``key`` is the scheme's: the AC session key (EMV CSK, Mastercard CVN 20/21), or the ICC master
    key (Visa CVN 10, Mastercard M/Chip 4 CVN 16/17). ``arc`` is the 2-byte response code (8A).
    """
    k = _key(key, "key")
    q = _validate.length(arqc, "arqc", (AC_LENGTH,))
    c = _validate.length(arc, "arc", (2,))
    return _cipher.ecb_encrypt(_TDES, k, _cipher.xor(q, c + bytes(6)))


def generate_arpc_method2(session_key: bytes, *, arqc: bytes, csu: bytes, proprietary_data: bytes = b"") -> bytes:
    """ARPC method 2 (section 8.2.2): the 4-byte MAC algorithm 3, padding method 2, of
    ARQC || CSU || proprietary authentication data (0 to 8 bytes), under the AC session key."""
    k = _key(session_key, "session_key")
    q = _validate.length(arqc, "arqc", (AC_LENGTH,))
    c = _validate.length(csu, "csu", (4,))
    p = _bytes(proprietary_data, "proprietary_data", 8)
    return mac.generate_retail_mac(k, q + c + p, Padding.METHOD_2, 4)


def script_mac_input(*, header: bytes, data: bytes, atc: bytes | None, arqc: bytes | None) -> bytes:
    """The MAC input of section 9.2.3: CLA INS P1 P2 Lc, then ATC || AC when the scheme includes the
    transaction data (Visa, Mastercard M/Chip), then the (enciphered) command data."""
    h = _validate.length(header, "header", (5,))
    d = _bytes(data, "data", MAX_SCRIPT_DATA)
    if (atc is None) != (arqc is None):
        raise InvalidInput("arqc", "the ATC and the application cryptogram together, or neither")
    tx = b"" if atc is None or arqc is None else _atc(atc) + _validate.length(arqc, "arqc", (AC_LENGTH,))
    return h + tx + d


def generate_script_mac(
    session_key: bytes,
    *,
    header: bytes,
    data: bytes = b"",
    atc: bytes | None = None,
    arqc: bytes | None = None,
    length: int = 8,
) -> bytes:
    """The issuer script command MAC (section 9.2.3, A1.2.1): MAC algorithm 3, padding method 2,
    4 to 8 bytes, over :func:`script_mac_input` under the integrity session key."""
    k = _key(session_key, "session_key")
    return mac.generate_retail_mac(k, script_mac_input(header=header, data=data, atc=atc, arqc=arqc),
                                   Padding.METHOD_2, script_mac_length(length))


def script_mac_length(length: int) -> int:
    """``length`` if a script MAC may be that long: 4 to 8 bytes (section 9.2.3)."""
    if isinstance(length, bool) or not isinstance(length, int) or not 4 <= length <= 8:
        raise InvalidInput("mac_length", "4 to 8 bytes")
    return length


def _script_data(data: bytes) -> bytes:
    if not isinstance(data, (bytes, bytearray)) or not 1 <= len(data) <= MAX_SCRIPT_DATA:
        raise InvalidInput("data", f"1 to {MAX_SCRIPT_DATA} bytes")
    return bytes(data)


def encrypt_script_data(session_key: bytes, *, data: bytes, encryption: ScriptEncryption) -> bytes:
    """Script command data enciphered under the confidentiality session key (section 9.3, A1.1)."""
    k = _key(session_key, "session_key")
    d = _script_data(data)
    if not isinstance(encryption, ScriptEncryption):
        raise InvalidInput("encryption", "a ScriptEncryption")
    if encryption is ScriptEncryption.VISA:
        return _cipher.ecb_encrypt(_TDES, k, mac.pad(bytes([len(d)]) + d, Padding.METHOD_2, 8))
    if encryption is ScriptEncryption.EMV or len(d) % 8:
        d = mac.pad(d, Padding.METHOD_2, 8)
    return _cipher.cbc_encrypt(_TDES, k, bytes(8), d)


def encrypt_pin_change(session_key: bytes, *, pin: str, encryption: ScriptEncryption) -> bytes:
    """The offline PIN change command data: the ISO 9564-1 format 2 block ``2L PPPP..FF`` (EMV Book 3,
    PIN CHANGE/UNBLOCK; CPA) enciphered as script data under the confidentiality session key."""
    return encrypt_script_data(session_key, data=pinblock.encode_iso2(pin), encryption=encryption)


def encrypt_visa_pin_change(
    session_key: bytes, *, icc_master_key_ac: bytes, pin: str, current_pin: str | None = None
) -> bytes:
    """The Visa (VIS) offline PIN change command data, enciphered by :attr:`ScriptEncryption.VISA`.

    The block is (L || PIN || F fill, 8 bytes) XOR (00 00 00 00 || bytes 5 to 8 of the AC master
    key), XORed further with the current PIN zero-filled to 16 digits when the card requires it.
    """
    mk = _key(icc_master_key_ac, "icc_master_key_ac")
    p = _validate.digits(pin, "pin", 4, 12)
    block = _cipher.xor(bytes.fromhex(f"{len(p):02X}" + p.ljust(14, "F")), bytes(4) + mk[4:8])
    if current_pin is not None:
        c = _validate.digits(current_pin, "current_pin", 4, 12)
        block = _cipher.xor(block, bytes.fromhex(c.ljust(16, "0")))
    return encrypt_script_data(session_key, data=block, encryption=ScriptEncryption.VISA)
