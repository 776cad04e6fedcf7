"""The SM4 counterparts of :mod:`hsmsvc.crypto.emv` for PBOC 3.0 / UnionPay IC cards (issue 35).

SM4 (GB/T 32907-2016) has a 16-byte key and a 16-byte block, so the EMV 4.3 Book 2 rules for a
16-byte block apply, with no DES parity anywhere:

* ICC master key (A1.4.1/A1.4.2): SM4(IMK)[Y || Y XOR FF..FF], Y the 8-byte input of option A or B.
* Session keys (A1.3.1 with the key as long as the block): SK = SM4(MK)[R], R the ATC (cryptogram
  key) or the application cryptogram (script keys), zero-filled to 16 bytes.
* MACs: ISO/IEC 9797-1 MAC algorithm 1 (CBC-MAC, zero IV) with padding method 2; the cryptogram is
  the leftmost 8 bytes, the method-2 ARPC the leftmost 4.
* ARPC method 1 (section 8.2.1): SM4(K)[(ARQC XOR ARC || 00..00) || 00..00], leftmost 8 bytes.
* Script data: SM4-CBC, zero IV, padding method 2.

No published PBOC test vectors back these; the tests check them against an independent
construction with gmssl's SM4.
"""

from __future__ import annotations

from typing import Final

from hsmsvc.crypto import _cipher, _validate, compare, mac, pinblock
from hsmsvc.crypto.emv import (
    AC_LENGTH,
    MAX_SCRIPT_DATA,
    MasterKeyOption,
    master_key_block,
    script_mac_input,
    script_mac_length,
)
from hsmsvc.errors import InvalidInput
from hsmsvc.types import Algorithm, Padding

__all__ = [
    "compute_ac",
    "derive_common_session_key",
    "derive_icc_master_key",
    "derive_script_session_key",
    "derive_session_key",
    "encrypt_pin_change",
    "encrypt_script_data",
    "generate_ac",
    "generate_arpc_method1",
    "generate_arpc_method2",
    "generate_script_mac",
    "verify_ac",
]

_SM4: Final = Algorithm.SM4
_BLOCK: Final = 16


def _key(value: bytes, field: str) -> bytes:
    return _validate.key(_SM4, value, field)


def _data(value: bytes) -> bytes:
    if not isinstance(value, (bytes, bytearray)) or len(value) > mac.MAX_DATA:
        raise InvalidInput("data", f"bytes, at most {mac.MAX_DATA}")
    return bytes(value)


def derive_icc_master_key(imk: bytes, *, pan: str, psn: str = "00", option: MasterKeyOption) -> bytes:
    """The 16-byte SM4 ICC master key: SM4(IMK)[Y || Y XOR FF..FF] (A1.4 for a 16-byte block), no parity."""
    key = _key(imk, "imk")
    return _cipher.ecb_encrypt(_SM4, key, master_key_block(pan=pan, psn=psn, option=option))


def derive_common_session_key(icc_master_key: bytes, *, r: bytes) -> bytes:
    """A1.3.1 common session key derivation where the key is one block long: SK = SM4(MK)[R], R 16 bytes."""
    key = _key(icc_master_key, "icc_master_key")
    return _cipher.ecb_encrypt(_SM4, key, _validate.length(r, "r", (_BLOCK,)))


def derive_session_key(icc_master_key: bytes, *, atc: bytes) -> bytes:
    """The cryptogram session key: R = ATC || 00 (14 bytes)."""
    a = _validate.length(atc, "atc", (2,))
    return derive_common_session_key(icc_master_key, r=a + bytes(_BLOCK - 2))


def derive_script_session_key(icc_master_key: bytes, *, arqc: bytes) -> bytes:
    """The script integrity or confidentiality session key: R = AC || 00 (8 bytes)."""
    q = _validate.length(arqc, "arqc", (AC_LENGTH,))
    return derive_common_session_key(icc_master_key, r=q + bytes(_BLOCK - AC_LENGTH))


def compute_ac(session_key: bytes, *, data: bytes) -> bytes:
    """The 8-byte cryptogram: the leftmost 8 bytes of the SM4 CBC-MAC (padding method 2) of ``data``."""
    key = _key(session_key, "session_key")
    return mac.generate_cbc_mac(_SM4, key, _data(data), Padding.METHOD_2, AC_LENGTH)


def generate_ac(icc_master_key: bytes, *, atc: bytes, data: bytes) -> bytes:
    """The ARQC, TC or AAC of ``data`` under the session key of ``atc``."""
    return compute_ac(derive_session_key(icc_master_key, atc=atc), data=data)


def verify_ac(icc_master_key: bytes, *, atc: bytes, data: bytes, ac: bytes) -> None:
    """Raise ``VerificationFailed`` unless ``ac`` is the cryptogram :func:`generate_ac` gives."""
    presented = _validate.length(ac, "ac", (AC_LENGTH,))
    compare.require_eq(generate_ac(icc_master_key, atc=atc, data=data), presented, "ac")


def generate_arpc_method1(key: bytes, *, arqc: bytes, arc: bytes) -> bytes:
    """ARPC method 1 for a 16-byte block: SM4(key)[(ARQC XOR ARC || 00..00) || 00..00], leftmost 8 bytes.

    ``key`` is the AC session key or the ICC master key, as the card's profile states.
    """
    k = _key(key, "key")
    q = _validate.length(arqc, "arqc", (AC_LENGTH,))
    c = _validate.length(arc, "arc", (2,))
    y = _cipher.xor(q, c + bytes(6))
    return _cipher.ecb_encrypt(_SM4, k, y + bytes(_BLOCK - AC_LENGTH))[:AC_LENGTH]


def generate_arpc_method2(session_key: bytes, *, arqc: bytes, csu: bytes, proprietary_data: bytes = b"") -> bytes:
    """ARPC method 2: the leftmost 4 bytes of the SM4 CBC-MAC (padding method 2) of
    ARQC || CSU || proprietary authentication data (0 to 8 bytes)."""
    k = _key(session_key, "session_key")
    q = _validate.length(arqc, "arqc", (AC_LENGTH,))
    c = _validate.length(csu, "csu", (4,))
    if not isinstance(proprietary_data, (bytes, bytearray)) or len(proprietary_data) > 8:
        raise InvalidInput("proprietary_data", "bytes, at most 8")
    return mac.generate_cbc_mac(_SM4, k, q + c + bytes(proprietary_data), Padding.METHOD_2, 4)


def generate_script_mac(
    session_key: bytes,
    *,
    header: bytes,
    data: bytes = b"",
    atc: bytes | None = None,
    arqc: bytes | None = None,
    length: int = 8,
) -> bytes:
    """The script command MAC: the leftmost ``length`` (4 to 8) bytes of the SM4 CBC-MAC, padding
    method 2, of :func:`hsmsvc.crypto.emv.script_mac_input`."""
    k = _key(session_key, "session_key")
    data_in = script_mac_input(header=header, data=data, atc=atc, arqc=arqc)
    return mac.generate_cbc_mac(_SM4, k, data_in, Padding.METHOD_2, script_mac_length(length))


def encrypt_script_data(session_key: bytes, *, data: bytes) -> bytes:
    """Script command data, SM4-CBC with a zero IV after padding method 2, under the confidentiality key."""
    k = _key(session_key, "session_key")
    if not isinstance(data, (bytes, bytearray)) or not 1 <= len(data) <= MAX_SCRIPT_DATA:
        raise InvalidInput("data", f"1 to {MAX_SCRIPT_DATA} bytes")
    return _cipher.cbc_encrypt(_SM4, k, bytes(_BLOCK), mac.pad(bytes(data), Padding.METHOD_2, _BLOCK))


def encrypt_pin_change(session_key: bytes, *, pin: str) -> bytes:
    """The offline PIN change data: the format 2 block ``2L PPPP..FF`` padded and enciphered as script data."""
    return encrypt_script_data(session_key, data=pinblock.encode_iso2(pin))
