"""The Thales variant test LMK set and its key scheme: the independent reference that turns the
published host-command examples' keys back into clear keys.

The examples (nickntg/thalessimulatorlibrary, ThalesCore.Tests/HostCommandTests.vb) were made
under the standard test LMKs (that project's LMKStorage.vb, GenerateTestLMKs); a key under a
variant LMK is the key enciphered (TDES ECB) under its LMK pair with the key type's variant on
the pair's first byte, and for a double- or triple-length key (scheme U, T) a second variant per
third on the pair's ninth byte. Checked on the example BU ``011U1EF828AA…`` → KCV 6F1E3F74F826B7EB
(``test_vectors.py``). Imports nothing from hsmsvc.
"""

from __future__ import annotations

import warnings

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

# LMK pair (by its payShield key type code's last two characters) -> the pair, as published.
_BY_INDEX = ["01010101010101017902CD1FD36EF8BA", "20202020202020203131313131313131",
             "40404040404040405151515151515151", "61616161616161617070707070707070",
             "80808080808080809191919191919191", "A1A1A1A1A1A1A1A1B0B0B0B0B0B0B0B0",
             "C1C1010101010101D0D0010101010101", "E0E0010101010101F1F1010101010101",
             "1C587F1C13924FEF0101010101010101", "01010101010101010101010101010101",
             "02020202020202020404040404040404", "07070707070707071010101010101010",
             "13131313131313131515151515151515", "16161616161616161919191919191919",
             "1A1A1A1A1A1A1A1A1C1C1C1C1C1C1C1C"]
# payShield's pair codes: 00 = LMK 04-05 (index 2), 01 = 06-07 (3), 02 = 14-15 (7), 03 = 16-17 (8),
# 04 = 18-19 (9), 05 = 20-21 (10), 06 = 22-23 (11), 07 = 24-25 (12), 08 = 26-27 (13), 09 = 28-29 (14).
_PAIR_INDEX = {"00": 2, "01": 3, "02": 7, "03": 8, "04": 9, "05": 10, "06": 11, "07": 12, "08": 13, "09": 14}
_TYPE_VARIANT = [0x00, 0xA6, 0x5A, 0x6A, 0xDE, 0x2B, 0x50, 0x74, 0x9C, 0xFA]
_DOUBLE, _TRIPLE = (0xA6, 0x5A), (0x6A, 0xDE, 0x2B)


def _ecb(key: bytes, data: bytes, decrypt: bool) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # two-key TDES is what these examples use
        c = Cipher(TripleDES(key), modes.ECB())
    op = c.decryptor() if decrypt else c.encryptor()
    return op.update(data) + op.finalize()


def lmk(key_type: str) -> bytearray:
    """The LMK pair of a 3-character key type code, with the type's variant applied."""
    pair = bytearray(bytes.fromhex(_BY_INDEX[_PAIR_INDEX[key_type[1:]]]))
    pair[0] ^= _TYPE_VARIANT[int(key_type[0], 16)]
    return pair


def clear_key(key_type: str, under_lmk: str) -> bytes:
    """The clear key of ``under_lmk`` (16H, 32H, or U/T/X + hex) for a key type code such as ``001``."""
    base = lmk(key_type)
    scheme, hexed = (under_lmk[0], under_lmk[1:]) if under_lmk[0] in "UTXY" else ("", under_lmk)
    data = bytes.fromhex(hexed)
    if scheme in ("", "X", "Y"):  # each half on its own under the pair (no length variant)
        return b"".join(_ecb(bytes(base), data[i:i + 8], True) for i in range(0, len(data), 8))
    out = b""
    for i, v in enumerate(_DOUBLE if len(data) == 16 else _TRIPLE):
        k = bytearray(base)
        k[8] ^= v
        out += _ecb(bytes(k), data[8 * i:8 * i + 8], True)
    return out


def kcv(key: bytes) -> str:
    """The 16H check value: zeros enciphered under the key."""
    k = key if len(key) != 8 else key * 2
    return _ecb(k, bytes(8), False).hex().upper()
