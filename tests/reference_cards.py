"""Independent card references for the tests: the CVV method, EMV card keys, session keys and
cryptograms; the standard library and pyca/cryptography only, like tests/reference.py, which
re-exports every name here.

Nothing here imports hsmsvc (tests/test_reference.py holds this module to that too). Each
function is written out from its standard's steps, not from hsmsvc's code.
"""

from __future__ import annotations

import warnings

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def _des(key: bytes, block: bytes, decrypt: bool = False) -> bytes:
    """DES (an 8-byte key, as K||K||K) or two-key TDES (16 bytes) on one block, ECB."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = Cipher(TripleDES(key * 3 if len(key) == 8 else key + key[:8]), modes.ECB())
    op = c.decryptor() if decrypt else c.encryptor()
    return op.update(block) + op.finalize()


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _odd(key: bytes) -> bytes:
    return bytes((b & 0xFE) | (bin(b & 0xFE).count("1") % 2 == 0) for b in key)


def cvv_value(cvk: bytes, pan: str, expiry: str, service_code: str, n: int = 3) -> str:
    """IBM CCA Basic Services appendix E, the CVV/CVC method, figure E-6 step by step: the data
    zero-padded to 32 digits, E_A(left), XOR right, E_A, D_B, E_A, then decimalized."""
    data = bytes.fromhex((pan + expiry + service_code).ljust(32, "0"))
    a, b = cvk[:8], cvk[8:]
    x = _des(a, _xor(_des(a, data[:8]), data[8:]))
    x = _des(a, _des(b, x, decrypt=True))
    hexed = x.hex().upper()
    return ("".join(c for c in hexed if c.isdigit()) + "".join(str("ABCDEF".index(c)) for c in hexed
                                                              if c in "ABCDEF"))[:n]


def option_a(master: bytes, y: bytes) -> bytes:
    """EMV 4.3 Book 2 annex A1.4.1's step: TDES(master)[Y] || TDES(master)[Y XOR FF..FF], odd parity."""
    return _odd(_des(master, y) + _des(master, _xor(y, b"\xff" * 8)))


def emv_card_key(imk: bytes, pan: str, psn: str) -> bytes:
    """EMV 4.3 Book 2 annex A1.4.1 option A: Y = the rightmost 16 digits of PAN || PSN; the card
    key is :func:`option_a` of Y."""
    return option_a(imk, bytes.fromhex((pan + psn)[-16:].rjust(16, "0")))


def emv_session_key(card_key: bytes, atc: bytes, r: bytes | None = None) -> bytes:
    """EMV 4.3 Book 2 annex A1.3.1, the common session key derivation with R = ATC || 00..00 (or the
    8-byte ``r`` given, an application cryptogram for script keys):
    TDES(MK)[R0 R1 F0 R3..R7] || TDES(MK)[R0 R1 0F R3..R7], odd parity."""
    r = atc + bytes(6) if r is None else r
    return _odd(_des(card_key, r[:2] + b"\xf0" + r[3:]) + _des(card_key, r[:2] + b"\x0f" + r[3:]))


def emv_ac(session_key: bytes, data: bytes) -> bytes:
    """EMV 4.3 Book 2 annex A1.2.1: ISO/IEC 9797-1 MAC algorithm 3 with padding method 2 (80 00..)."""
    data = data + b"\x80" + bytes(-(len(data) + 1) % 8)
    k, k2 = session_key[:8], session_key[8:]
    h = bytes(8)
    for i in range(0, len(data), 8):
        h = _des(k, _xor(h, data[i:i + 8]))
    return _des(k, _des(k2, h, decrypt=True))


def emv_arpc_method1(key: bytes, arqc: bytes, arc: bytes) -> bytes:
    """EMV 4.3 Book 2 section 8.2.1: TDES(key)[ARQC XOR (ARC || 00..00)]."""
    return _des(key, _xor(arqc, arc + bytes(6)))


def _sm4(key: bytes, block: bytes) -> bytes:
    e = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
    return e.update(block) + e.finalize()


def sm4_emv_card_key(imk: bytes, pan: str, psn: str) -> bytes:
    """Annex A1.4.1 option A for a 16-byte block cipher (PBOC 3.0): SM4(IMK)[Y || Y XOR FF..FF], no parity."""
    y = bytes.fromhex((pan + psn)[-16:].rjust(16, "0"))
    return _sm4(imk, y + _xor(y, b"\xff" * 8))


def sm4_emv_session_key(card_key: bytes, atc: bytes) -> bytes:
    """Annex A1.3.1 where the key is one block long: SM4(MK)[ATC || 00..00]."""
    return _sm4(card_key, atc + bytes(14))


def sm4_emv_ac(session_key: bytes, data: bytes) -> bytes:
    """The leftmost 8 bytes of the SM4 CBC-MAC, zero IV, of ``data`` with padding method 2."""
    data = data + b"\x80" + bytes(-(len(data) + 1) % 16)
    h = bytes(16)
    for i in range(0, len(data), 16):
        h = _sm4(session_key, _xor(h, data[i:i + 16]))
    return h[:8]
