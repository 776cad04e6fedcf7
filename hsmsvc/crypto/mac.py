"""Block-cipher and hash MACs used in payments.

* ISO/IEC 9797-1:2011 MAC algorithm 1 (CBC-MAC) over TDES, AES or SM4, and
  MAC algorithm 3 (retail MAC; ANSI X9.19) over DES with K||K', with the
  padding methods 1, 2 and 3.
* HMAC (ISO/IEC 9797-2 / RFC 2104) over SHA-256 or SM3.
* The China UnionPay POS MAC ("ECB" algorithm of the UnionPay POS terminal
  specification): XOR of the blocks, two encryptions over its hex form.

CMAC is in :mod:`hsmsvc.crypto.cmac`.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as _hmac
from cryptography.hazmat.primitives.ciphers import BlockCipherAlgorithm, Cipher, modes

from hsmsvc.crypto import _cipher, _compare, _validate
from hsmsvc.errors import InvalidInput
from hsmsvc.types import Algorithm, HashAlgorithm, Padding

__all__ = [
    "generate_cbc_mac",
    "generate_hmac",
    "generate_retail_mac",
    "generate_unionpay_pos_mac",
    "pad",
    "verify_cbc_mac",
    "verify_hmac",
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


def _last_cbc_block(prim: BlockCipherAlgorithm, block_size: int, data: bytes) -> bytes:
    ctx = Cipher(prim, modes.CBC(bytes(block_size))).encryptor()
    return (ctx.update(data) + ctx.finalize())[-block_size:]


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
    bs = algorithm.block_size
    n = _mac_length(length, bs)
    return _last_cbc_block(_cipher.primitive(algorithm, key), bs, pad(data, padding, bs))[:n]


def verify_cbc_mac(
    algorithm: Algorithm, key: bytes, data: bytes, padding: Padding, mac: bytes
) -> None:
    """Raise ``VerificationFailed`` unless ``mac`` is the MAC algorithm 1 tag."""
    computed = generate_cbc_mac(algorithm, key, data, padding, _mac_length(len(mac), algorithm.block_size))
    _compare.require_eq(computed, mac, "mac")


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
    k = _validate.key(Algorithm.TDES_2KEY, key)
    n = _mac_length(length, 8)
    k1 = _cipher.des_primitive(k[:8])
    k2 = _cipher.des_primitive(k[8:])
    h = _last_cbc_block(k1, 8, pad(data, padding, 8))
    d = Cipher(k2, modes.ECB()).decryptor().update(h)
    return Cipher(k1, modes.ECB()).encryptor().update(d)[:n]


def verify_retail_mac(key: bytes, data: bytes, padding: Padding, mac: bytes) -> None:
    """Raise ``VerificationFailed`` unless ``mac`` is the retail MAC."""
    computed = generate_retail_mac(key, data, padding, _mac_length(len(mac), 8))
    _compare.require_eq(computed, mac, "mac")


def _hash(algorithm: HashAlgorithm) -> hashes.HashAlgorithm:
    if algorithm is HashAlgorithm.SHA256:
        return hashes.SHA256()
    if algorithm is HashAlgorithm.SM3:
        return hashes.SM3()
    raise InvalidInput("hash", "SHA256 or SM3")


def generate_hmac(algorithm: HashAlgorithm, key: bytes, data: bytes) -> bytes:
    """HMAC (RFC 2104; ISO/IEC 9797-2:2021 MAC algorithm 2) over SHA-256 or SM3.

    RFC 4231 test case 2:

    >>> generate_hmac(HashAlgorithm.SHA256, b"Jefe", b"what do ya want for nothing?").hex()[:16]
    '5bdcc146bf60754e'
    """
    _check_data(data)
    # RFC 2104 section 3: keys shorter than the output length weaken the MAC.
    if not isinstance(key, (bytes, bytearray)) or not 4 <= len(key) <= 64:
        raise InvalidInput("key", "4 to 64 bytes")
    ctx = _hmac.HMAC(bytes(key), _hash(algorithm))
    ctx.update(data)
    return ctx.finalize()


def verify_hmac(algorithm: HashAlgorithm, key: bytes, data: bytes, mac: bytes) -> None:
    """Raise ``VerificationFailed`` unless ``mac`` (at least 16 bytes) is the HMAC prefix."""
    if not 16 <= len(mac) <= 32:
        raise InvalidInput("mac_length", "16 to 32 bytes")
    _compare.require_eq(generate_hmac(algorithm, key, data)[: len(mac)], mac, "mac")


def generate_unionpay_pos_mac(algorithm: Algorithm, key: bytes, data: bytes) -> bytes:
    """The UnionPay POS MAC: 8 ASCII hex characters (the field 64 content).

    Data zero-padded to 8-byte blocks and XORed together; the 16 upper-case hex
    characters of the result are split in two halves; the left half is encrypted,
    XORed with the right half and encrypted again; the MAC is the first 8 hex
    characters of that result. TDES keys only (the scheme is defined for DES).
    """
    _check_data(data)
    if not algorithm.is_tdes:
        raise InvalidInput("algorithm", "TDES for the UnionPay POS MAC")
    padded = data + bytes(-len(data) % 8) if data else bytes(8)
    acc = 0
    for i in range(0, len(padded), 8):
        acc ^= int.from_bytes(padded[i : i + 8], "big")
    hexed = acc.to_bytes(8, "big").hex().upper().encode("ascii")
    enc = Cipher(_cipher.primitive(algorithm, key), modes.ECB()).encryptor()
    first = enc.update(hexed[:8])
    second = enc.update(_cipher.xor(first, hexed[8:]))
    return second.hex().upper()[:8].encode("ascii")


def verify_unionpay_pos_mac(algorithm: Algorithm, key: bytes, data: bytes, mac: bytes) -> None:
    """Raise ``VerificationFailed`` unless ``mac`` is the UnionPay POS MAC."""
    _compare.require_eq(generate_unionpay_pos_mac(algorithm, key, data), mac, "mac")
