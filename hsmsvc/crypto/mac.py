"""Block-cipher and hash MACs used in payments.

* ISO/IEC 9797-1:2011 MAC algorithm 1 (CBC-MAC) over TDES, AES or SM4, and
  MAC algorithm 3 (retail MAC; ANSI X9.19) over DES with K||K', with the
  padding methods 1, 2 and 3.
* HMAC (ISO/IEC 9797-2 / RFC 2104) over SHA-256 or SM3.
* The China UnionPay POS MAC ("ECB" algorithm of the UnionPay POS terminal
  specification), with TDES or SM4: XOR of the blocks, two encryptions over its hex form.

CMAC is in :mod:`hsmsvc.crypto.cmac`.
"""

from __future__ import annotations

from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as _hmac
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, modes

from hsmsvc.crypto import _cipher, compare, _validate
from hsmsvc.errors import InvalidInput
from hsmsvc.types import Algorithm, HashAlgorithm, Padding

__all__ = [
    "CbcMac",
    "Hmac",
    "generate_cbc_mac",
    "generate_hmac",
    "generate_retail_mac",
    "generate_unionpay_pos_mac",
    "pad",
    "verify_cbc_mac",
    "verify_hmac",
    "digest",
    "verify_retail_mac",
    "verify_unionpay_pos_mac",
]

# One call's input is bounded so a request cannot hold a worker; 1 MiB is far
# above any ISO 8583 message.
MAX_DATA = 1 << 20


def pad(data: bytes, padding: Padding, block_size: int) -> bytes:
    """Pad ``data`` by ISO/IEC 9797-1:2011 padding method 1, 2 or 3.

    >>> pad(b"\\x01", Padding.METHOD_2, 8).hex()
    '0180000000000000'
    >>> pad(b"\\x01", Padding.METHOD_3, 8).hex()
    '00000000000000080100000000000000'
    """
    if not isinstance(padding, Padding):
        raise InvalidInput("padding", "a Padding method")
    if padding is Padding.METHOD_2:
        data = data + b"\x80"
    elif padding is Padding.METHOD_3:
        # Method 3: a block holding the bit length, then method-1 padding.
        data = (len(data) * 8).to_bytes(block_size, "big") + data
    if padding is Padding.METHOD_1 and not data:
        # Method 1 pads to a positive multiple of the block: empty data gets one block.
        return bytes(block_size)
    return data + bytes(-len(data) % block_size)


def _mac_length(length: int | None, block_size: int) -> int:
    n = block_size if length is None else length
    if not 4 <= n <= block_size:
        raise InvalidInput("mac_length", f"4 to {block_size} bytes")
    return n


def _check_data(data: bytes) -> None:
    if not isinstance(data, (bytes, bytearray)) or len(data) > MAX_DATA:
        raise InvalidInput("data", f"bytes, at most {MAX_DATA}")


class CbcMac:
    """ISO/IEC 9797-1:2011 MAC algorithms 1 and 3 under one key, with reused OpenSSL contexts.

    One object per loaded key, so a MAC costs no cipher construction or key
    schedule. The CBC context is kept from one message to the next: its
    chaining value is then the last block it gave, so XORing that block into
    the next message's first block restores the zero IV of initial
    transformation 1 (clause 7.2). Not thread-safe: use it under one lock.
    """

    __slots__ = ("_cbc", "_chain", "_final", "_prim", "block_size")

    def __init__(self, algorithm: Algorithm, key: bytes, retail: bool = False) -> None:
        """Algorithm 1 under ``key``; with ``retail``, algorithm 3 under ``key`` = K||K' (DES halves)."""
        final: tuple[CipherContext, CipherContext] | None = None
        if retail:
            k = _validate.key(Algorithm.TDES_2KEY, key)
            prim = _cipher.des_primitive(k[:8])
            # Output transformation 3: decipher under K', encipher under K.
            final = (Cipher(_cipher.des_primitive(k[8:]), modes.ECB()).decryptor(),
                     Cipher(prim, modes.ECB()).encryptor())
        else:
            prim = _cipher.primitive(algorithm, key)
        self.block_size = 8 if retail else algorithm.block_size
        self._prim = prim
        self._final = final
        self._restart()

    def _restart(self) -> None:
        self._cbc = Cipher(self._prim, modes.CBC(bytes(self.block_size))).encryptor()
        self._chain = 0

    def generate(self, data: bytes, padding: Padding, length: int | None = None) -> bytes:
        """The leftmost ``length`` bytes (default: a whole block) of the MAC of ``data``."""
        _check_data(data)
        bs = self.block_size
        n = _mac_length(length, bs)
        padded = pad(data, padding, bs)
        first = (int.from_bytes(padded[:bs], "big") ^ self._chain).to_bytes(bs, "big")
        try:
            h = self._cbc.update(first + padded[bs:])[-bs:]
        except BaseException:
            self._restart()  # the context's chaining value is no longer known
            raise
        self._chain = int.from_bytes(h, "big")
        if self._final is not None:
            h = self._final[1].update(self._final[0].update(h))
        return h[:n]


def generate_cbc_mac(
    algorithm: Algorithm,
    key: bytes,
    data: bytes,
    padding: Padding,
    length: int | None = None,
) -> bytes:
    """ISO/IEC 9797-1:2011 MAC algorithm 1: CBC-MAC, zero IV.

    Initial transformation 1, output transformation 1; the MAC is the leftmost
    ``length`` bytes of the last block. Annex B.2 (DES as TDES with K=K'=K''):

    >>> k = bytes.fromhex("0123456789ABCDEF") * 3
    >>> d = b"Now is the time for all "
    >>> generate_cbc_mac(Algorithm.TDES_3KEY, k, d, Padding.METHOD_1, 4).hex()
    '70a30640'
    """
    _check_data(data)
    return CbcMac(algorithm, key).generate(data, padding, length)


def verify_cbc_mac(
    algorithm: Algorithm, key: bytes, data: bytes, padding: Padding, mac: bytes
) -> None:
    """Raise ``VerificationFailed`` unless ``mac`` is the MAC algorithm 1 tag."""
    computed = generate_cbc_mac(algorithm, key, data, padding, _mac_length(len(mac), algorithm.block_size))
    compare.require_eq(computed, mac, "mac")


def generate_retail_mac(
    key: bytes, data: bytes, padding: Padding, length: int | None = None
) -> bytes:
    """ISO/IEC 9797-1:2011 MAC algorithm 3; ANSI X9.19 retail MAC.

    ``key`` is K||K' (a two-key TDES key). DES CBC under K over all blocks,
    then output transformation 3: encrypt under K of decrypt under K'. Annex B.4:

    >>> k = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    >>> generate_retail_mac(k, b"Now is the time for all ", Padding.METHOD_1).hex()
    'a1c72e74ea3fa9b6'
    """
    _check_data(data)
    return CbcMac(Algorithm.TDES_2KEY, key, retail=True).generate(data, padding, length)


def verify_retail_mac(key: bytes, data: bytes, padding: Padding, mac: bytes) -> None:
    """Raise ``VerificationFailed`` unless ``mac`` is the retail MAC."""
    computed = generate_retail_mac(key, data, padding, _mac_length(len(mac), 8))
    compare.require_eq(computed, mac, "mac")


def _hash(algorithm: HashAlgorithm) -> hashes.HashAlgorithm:
    if algorithm is HashAlgorithm.SHA256:
        return hashes.SHA256()
    if algorithm is HashAlgorithm.SM3:
        return hashes.SM3()
    raise InvalidInput("hash", "SHA256 or SM3")


MAX_DIGEST_DATA: Final = 64 * 1024
"""The most bytes :func:`digest` takes in one call: about 0.3 ms of SM3, which holds the GIL; a
1 MiB flood of Digest calls held a manager's GetKey for 1.4 s in a review."""


def digest(algorithm: HashAlgorithm, data: bytes) -> bytes:
    """SHA-256 (FIPS 180-4) or SM3 (GB/T 32905-2016) of ``data``: no key, for DataService.Digest."""
    if not isinstance(data, (bytes, bytearray)) or len(data) > MAX_DIGEST_DATA:
        raise InvalidInput("data", f"at most {MAX_DIGEST_DATA} bytes")
    h = hashes.Hash(_hash(algorithm))
    h.update(bytes(data))
    return h.finalize()


class Hmac:
    """HMAC under one key. The keyed context (the key's inner and outer pads absorbed) is made
    once and copied for each message. Not thread-safe."""

    __slots__ = ("_keyed",)

    def __init__(self, algorithm: HashAlgorithm, key: bytes) -> None:
        # RFC 2104 section 3: keys shorter than the output length weaken the MAC.
        if not isinstance(key, (bytes, bytearray)) or not 4 <= len(key) <= 64:
            raise InvalidInput("key", "4 to 64 bytes")
        self._keyed = _hmac.HMAC(bytes(key), _hash(algorithm))

    def generate(self, data: bytes) -> bytes:
        _check_data(data)
        ctx = self._keyed.copy()
        ctx.update(data)
        return ctx.finalize()


def generate_hmac(algorithm: HashAlgorithm, key: bytes, data: bytes) -> bytes:
    """HMAC (RFC 2104; ISO/IEC 9797-2:2021 MAC algorithm 2) over SHA-256 or SM3.

    RFC 4231 test case 2:

    >>> generate_hmac(HashAlgorithm.SHA256, b"Jefe", b"what do ya want for nothing?").hex()[:16]
    '5bdcc146bf60754e'
    """
    _check_data(data)
    return Hmac(algorithm, key).generate(data)


def verify_hmac(algorithm: HashAlgorithm, key: bytes, data: bytes, mac: bytes) -> None:
    """Raise ``VerificationFailed`` unless ``mac`` (at least 16 bytes) is the HMAC prefix."""
    if not 16 <= len(mac) <= 32:
        raise InvalidInput("mac_length", "16 to 32 bytes")
    compare.require_eq(generate_hmac(algorithm, key, data)[: len(mac)], mac, "mac")


def generate_unionpay_pos_mac(algorithm: Algorithm, key: bytes, data: bytes) -> bytes:
    """The UnionPay POS MAC ("ECB" algorithm): 8 ASCII hex characters (the field 64 content).

    With TDES (the China UnionPay POS terminal specification) and with SM4 (its national-algorithm
    form, the steps a) to h) as terminal software quotes them), over the cipher's block of n bytes
    (8 or 16):

    a, b) the data zero-padded to n-byte blocks (one zero block when empty), XORed together;
    c) the result as 2n upper-case hex characters (ASCII);
    d, e, f) the first n characters enciphered, XORed with the last n, enciphered again;
    g, h) that block as hex characters, the first 8 of them the MAC, for TDES and SM4 alike.

    Some SM4 implementations return instead the first 8 *bytes* of the last block (16 hex
    characters); that is not this MAC (docs/architecture.md, issue 33).
    """
    _check_data(data)
    if not (algorithm.is_tdes or algorithm is Algorithm.SM4):
        raise InvalidInput("algorithm", "TDES or SM4 for the UnionPay POS MAC")
    n = algorithm.block_size
    padded = data + bytes(-len(data) % n) if data else bytes(n)
    acc = 0
    for i in range(0, len(padded), n):
        acc ^= int.from_bytes(padded[i : i + n], "big")
    hexed = acc.to_bytes(n, "big").hex().upper().encode("ascii")
    enc = Cipher(_cipher.primitive(algorithm, key), modes.ECB()).encryptor()
    first = enc.update(hexed[:n])
    second = enc.update(_cipher.xor(first, hexed[n:]))
    return second.hex().upper()[:8].encode("ascii")


def verify_unionpay_pos_mac(algorithm: Algorithm, key: bytes, data: bytes, mac: bytes) -> None:
    """Raise ``VerificationFailed`` unless ``mac`` is the UnionPay POS MAC."""
    compare.require_eq(generate_unionpay_pos_mac(algorithm, key, data), mac, "mac")
