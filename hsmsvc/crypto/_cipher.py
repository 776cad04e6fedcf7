"""Block-cipher plumbing over OpenSSL (pyca/cryptography) for TDES, AES and SM4.

``BlockCipher`` holds one ECB encryptor and one decryptor per key, so a caller
that keeps it pays the context set-up once, an order of magnitude on small
inputs (``docs/platform-notes.md``). The functions below build one per
call and are for cold paths.
"""

from __future__ import annotations

from typing import Protocol

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import (
    BlockCipherAlgorithm,
    Cipher,
    CipherContext,
    algorithms,
    modes,
)

from hsmsvc.crypto import _validate
from hsmsvc.errors import InvalidInput
from hsmsvc.types import Algorithm


def _tdes(key: bytes) -> TripleDES:
    # Two-key (and single-DES) keys are widened to the equivalent 24-byte
    # K1||K2||K1 form, which cryptography takes without the warning it gives the
    # short forms: no warnings filter to set up on each key (it cost more than the cipher).
    if len(key) == 8:
        key = key * 3
    elif len(key) == 16:
        key = key + key[:8]
    return TripleDES(key)


def primitive(algorithm: Algorithm, key: bytes) -> BlockCipherAlgorithm:
    """The pyca algorithm object for a checked key."""
    _validate.key(algorithm, key)
    if algorithm.is_tdes:
        return _tdes(key)
    if algorithm is Algorithm.SM4:
        return algorithms.SM4(key)
    if algorithm.is_aes:
        return algorithms.AES(key)
    # HMAC_SM3_256 has the length of an AES-256 key: it must never become one.
    raise InvalidInput("algorithm", f"{algorithm.value} is not a block cipher")


def des_primitive(key: bytes) -> BlockCipherAlgorithm:
    """Single DES as TDES with K1=K2=K3, for ISO 9797-1 MAC algorithm 3 only."""
    _validate.length(key, "key", (8,))
    return _tdes(key)


def _blocks(data: bytes, block_size: int) -> None:
    if len(data) % block_size:
        raise InvalidInput("data", f"a multiple of {block_size} bytes")


class EcbCipher(Protocol):
    """ECB under one key: a :class:`BlockCipher` here, a token key in a PKCS#11 backend."""

    @property
    def algorithm(self) -> Algorithm: ...

    def encrypt(self, data: bytes) -> bytes: ...

    def decrypt(self, data: bytes) -> bytes: ...


class BlockCipher:
    """ECB encrypt/decrypt under one key with reused OpenSSL contexts.

    Not thread-safe: give each thread (or process) its own instance.
    """

    __slots__ = ("_dec", "_enc", "algorithm", "block_size")

    def __init__(self, algorithm: Algorithm, key: bytes) -> None:
        prim = primitive(algorithm, key)
        self.algorithm = algorithm
        self.block_size = algorithm.block_size
        self._enc: CipherContext = Cipher(prim, modes.ECB()).encryptor()
        self._dec: CipherContext = Cipher(prim, modes.ECB()).decryptor()

    def __repr__(self) -> str:
        return f"BlockCipher({self.algorithm.value})"

    # The length check inline: these two are on every PIN translation's path.
    def encrypt(self, data: bytes) -> bytes:
        if len(data) % self.block_size:
            _blocks(data, self.block_size)
        return self._enc.update(data)

    def decrypt(self, data: bytes) -> bytes:
        if len(data) % self.block_size:
            _blocks(data, self.block_size)
        return self._dec.update(data)


def ecb_encrypt(algorithm: Algorithm, key: bytes, data: bytes) -> bytes:
    _blocks(data, algorithm.block_size)
    ctx = Cipher(primitive(algorithm, key), modes.ECB()).encryptor()
    return ctx.update(data) + ctx.finalize()


def ecb_decrypt(algorithm: Algorithm, key: bytes, data: bytes) -> bytes:
    _blocks(data, algorithm.block_size)
    ctx = Cipher(primitive(algorithm, key), modes.ECB()).decryptor()
    return ctx.update(data) + ctx.finalize()


def cbc_encrypt(algorithm: Algorithm, key: bytes, iv: bytes, data: bytes) -> bytes:
    _blocks(data, algorithm.block_size)
    _validate.length(iv, "iv", (algorithm.block_size,))
    ctx = Cipher(primitive(algorithm, key), modes.CBC(iv)).encryptor()
    return ctx.update(data) + ctx.finalize()


def cbc_decrypt(algorithm: Algorithm, key: bytes, iv: bytes, data: bytes) -> bytes:
    _blocks(data, algorithm.block_size)
    _validate.length(iv, "iv", (algorithm.block_size,))
    ctx = Cipher(primitive(algorithm, key), modes.CBC(iv)).decryptor()
    return ctx.update(data) + ctx.finalize()


def xor(a: bytes, b: bytes) -> bytes:
    """Bytewise XOR of two equal-length strings."""
    if len(a) != len(b):
        raise InvalidInput("data", "equal lengths for XOR")
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")
