"""Field-level encipherment: padding and the modes ECB, CBC and GCM.

Sensitive fields (account, amount, time) are short, so each call enciphers one
field. GCM follows NIST SP 800-38D with a 96-bit IV and a 128-bit tag appended
to the ciphertext; it needs a 16-byte block, so TDES is refused.
"""

from __future__ import annotations

from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hsmsvc.crypto import _cipher
from hsmsvc.errors import InvalidInput
from hsmsvc.types import Algorithm, CipherMode, DataPadding

__all__ = ["GCM_IV_LENGTH", "GCM_TAG_LENGTH", "FieldKey", "decrypt", "encrypt", "pad", "unpad"]

GCM_IV_LENGTH: Final = 12
GCM_TAG_LENGTH: Final = 16
_FAULT: Final = "ciphertext invalid"


def pad(padding: DataPadding, data: bytes, block_size: int) -> bytes:
    """Pad ``data`` to whole blocks (RFC 5652 6.3, or ISO/IEC 9797-1 method 2).

    >>> pad(DataPadding.PKCS7, b"1234", 8).hex()
    '3132333404040404'
    >>> pad(DataPadding.ISO9797_M2, b"12345678", 8).hex()
    '31323334353637388000000000000000'
    """
    if padding is DataPadding.NONE:
        if len(data) % block_size:
            raise InvalidInput("data", f"a multiple of {block_size} bytes without padding")
        return data
    if padding is DataPadding.PKCS7:
        n = block_size - len(data) % block_size
        return data + bytes([n]) * n
    if padding is DataPadding.ISO9797_M2:
        data = data + b"\x80"
        return data + b"\x00" * (-len(data) % block_size)
    raise InvalidInput("padding", "a DataPadding")


def unpad(padding: DataPadding, data: bytes, block_size: int) -> bytes:
    """Inverse of :func:`pad`; one message for every fault.

    >>> unpad(DataPadding.PKCS7, bytes.fromhex("3132333404040404"), 8)
    b'1234'
    """
    if padding is DataPadding.NONE:
        return data
    if not data or len(data) % block_size:
        raise InvalidInput("ciphertext", _FAULT)
    if padding is DataPadding.PKCS7:
        n = data[-1]
        if not 1 <= n <= block_size or data[-n:] != bytes([n]) * n:
            raise InvalidInput("ciphertext", _FAULT)
        return data[:-n]
    if padding is DataPadding.ISO9797_M2:
        stripped = data.rstrip(b"\x00")
        if not stripped or stripped[-1] != 0x80 or len(data) - len(stripped) >= block_size:
            raise InvalidInput("ciphertext", _FAULT)
        return stripped[:-1]
    raise InvalidInput("padding", "a DataPadding")


def _check(algorithm: Algorithm, mode: CipherMode, iv: bytes) -> None:
    if not isinstance(mode, CipherMode):
        raise InvalidInput("mode", "a CipherMode")
    if mode is CipherMode.GCM:
        if algorithm.block_size != 16:
            raise InvalidInput("mode", "GCM needs a 16-byte block cipher (AES or SM4)")
        if len(iv) != GCM_IV_LENGTH:
            raise InvalidInput("iv", f"{GCM_IV_LENGTH} bytes for GCM")
    elif mode is CipherMode.CBC:
        if len(iv) != algorithm.block_size:
            raise InvalidInput("iv", f"{algorithm.block_size} bytes for CBC")
    elif iv:
        raise InvalidInput("iv", "empty for ECB")


class FieldKey:
    """Field encipherment under one key, keeping what can be kept between calls.

    The pyca algorithm object is made once, and for AES-GCM the AEAD object,
    which keeps its key schedule (a fresh GCM context cost ten times the
    encipherment of a short field). Not thread-safe: use it under one lock.
    """

    __slots__ = ("_aead", "_prim", "algorithm")

    def __init__(self, algorithm: Algorithm, key: bytes) -> None:
        self.algorithm = algorithm
        self._prim = _cipher.primitive(algorithm, key)
        self._aead = AESGCM(key) if algorithm.is_aes else None

    def encrypt(self, mode: CipherMode, iv: bytes, data: bytes, aad: bytes = b"") -> bytes:
        _check(self.algorithm, mode, iv)
        if mode is CipherMode.GCM:
            if self._aead is not None:
                return self._aead.encrypt(iv, data, aad)
            enc = Cipher(self._prim, modes.GCM(iv)).encryptor()
            enc.authenticate_additional_data(aad)
            return enc.update(data) + enc.finalize() + enc.tag
        if aad:
            raise InvalidInput("aad", "only with GCM")
        if len(data) % self.algorithm.block_size:
            raise InvalidInput("data", f"a multiple of {self.algorithm.block_size} bytes")
        e = Cipher(self._prim, modes.CBC(iv) if mode is CipherMode.CBC else modes.ECB()).encryptor()
        return e.update(data) + e.finalize()

    def decrypt(self, mode: CipherMode, iv: bytes, data: bytes, aad: bytes = b"") -> bytes:
        _check(self.algorithm, mode, iv)
        if mode is CipherMode.GCM:
            if len(data) < GCM_TAG_LENGTH:
                raise InvalidInput("ciphertext", _FAULT)
            try:
                if self._aead is not None:
                    return self._aead.decrypt(iv, data, aad)
                dec = Cipher(self._prim, modes.GCM(iv, data[-GCM_TAG_LENGTH:])).decryptor()
                dec.authenticate_additional_data(aad)
                return dec.update(data[:-GCM_TAG_LENGTH]) + dec.finalize()
            except InvalidTag:
                raise InvalidInput("ciphertext", _FAULT) from None
        if aad:
            raise InvalidInput("aad", "only with GCM")
        if not data or len(data) % self.algorithm.block_size:
            raise InvalidInput("ciphertext", f"a multiple of {self.algorithm.block_size} bytes")
        d = Cipher(self._prim, modes.CBC(iv) if mode is CipherMode.CBC else modes.ECB()).decryptor()
        return d.update(data) + d.finalize()


def encrypt(
    algorithm: Algorithm, *, key: bytes, mode: CipherMode, iv: bytes, data: bytes, aad: bytes = b""
) -> bytes:
    """Encipher whole blocks (ECB, CBC) or any length (GCM, tag appended).

    NIST SP 800-38D (GCM spec test case 4, AES-128):

    >>> h = bytes.fromhex
    >>> out = encrypt(Algorithm.AES_128, key=h("feffe9928665731c6d6a8f9467308308"), mode=CipherMode.GCM,
    ...     iv=h("cafebabefacedbaddecaf888"),
    ...     data=h("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    ...            "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"),
    ...     aad=h("feedfacedeadbeeffeedfacedeadbeefabaddad2"))
    >>> out[-16:].hex()
    '5bc94fbc3221a5db94fae95ae7121a47'
    """
    return FieldKey(algorithm, key).encrypt(mode, iv, data, aad)


def decrypt(
    algorithm: Algorithm, *, key: bytes, mode: CipherMode, iv: bytes, data: bytes, aad: bytes = b""
) -> bytes:
    """Inverse of :func:`encrypt`; a GCM tag that fails gives ``InvalidInput``.

    RFC 8998 appendix A.1 (SM4-GCM):

    >>> h = bytes.fromhex
    >>> pt = decrypt(Algorithm.SM4, key=h("0123456789ABCDEFFEDCBA9876543210"), mode=CipherMode.GCM,
    ...     iv=h("00001234567800000000ABCD"),
    ...     data=h("17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735"
    ...            "D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D"
    ...            "83DE3541E4C2B58177E065A9BF7B62EC"),
    ...     aad=h("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2"))
    >>> pt[:16].hex().upper()
    'AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB'
    """
    return FieldKey(algorithm, key).decrypt(mode, iv, data, aad)
