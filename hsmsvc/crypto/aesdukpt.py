"""AES DUKPT, host side: derived unique key per transaction (ANSI X9.24-3:2017, clause 6).

* :class:`AesKsn`: the 12-byte KSN, an 8-byte initial key ID (4-byte BDK ID and 4-byte
  derivation ID) and a 32-bit transaction counter of at most 16 one bits (6.1).
* :func:`initial_key`: the device's initial key from an AES BDK and the initial key ID.
* :func:`transaction_key`: the key for one KSN, one derivation for each one bit of the
  counter from the top (6.1, 6.5.3).
* :func:`working_key`: a PIN, MAC or data key of a given type for one transaction.

Every key comes from the one derivation of 6.3.1: AES-ECB encipherment, under the parent key,
of the 16-byte derivation data of 6.3.2 (tables 2 and 3), one block per 128 bits of the child
key. Key types are :class:`~hsmsvc.types.Algorithm` members (TDES 2-key and 3-key, AES
128/192/256); HMAC working keys are not offered. Pure functions over clear key bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, unique
from typing import Final

from hsmsvc.crypto import _cipher, _validate, dukpt
from hsmsvc.errors import InvalidInput
from hsmsvc.types import Algorithm

__all__ = [
    "COUNTER_BITS",
    "INITIAL_KEY_ID_LENGTH",
    "KSN_LENGTH",
    "MAX_COUNTER",
    "MAX_ONE_BITS",
    "AesKsn",
    "DukptKeyUsage",
    "derive",
    "initial_key",
    "transaction_key",
    "working_key",
]

INITIAL_KEY_ID_LENGTH: Final = 8
KSN_LENGTH: Final = INITIAL_KEY_ID_LENGTH + 4
COUNTER_BITS: Final = 32
MAX_ONE_BITS: Final = 16
"""6.1: counters of more than 16 one bits are skipped, so no key is more than 16 derivations from the IK."""
MAX_COUNTER: Final = ((1 << MAX_ONE_BITS) - 1) << (COUNTER_BITS - MAX_ONE_BITS)
"""FFFF0000, the highest counter with at most 16 one bits: the device's last transaction."""

_VERSION: Final = 0x01
# Table 2's key usage indicators of the derivation keys themselves; never a working key's usage.
_KEY_DERIVATION: Final = 0x8000
_KEY_DERIVATION_INITIAL_KEY: Final = 0x8001
# Table 3: algorithm indicator and key length in bits of each key type.
_KEY_TYPES: Final = {
    Algorithm.TDES_2KEY: (0x0000, 128),
    Algorithm.TDES_3KEY: (0x0001, 192),
    Algorithm.AES_128: (0x0002, 128),
    Algorithm.AES_192: (0x0003, 192),
    Algorithm.AES_256: (0x0004, 256),
}
_DERIVATION_KEYS: Final = {16: Algorithm.AES_128, 24: Algorithm.AES_192, 32: Algorithm.AES_256}
# Security strength in bits (NIST SP 800-57 part 1 table 2), for the rule of 6.1.3.
_STRENGTH: Final = {
    Algorithm.TDES_2KEY: 80,
    Algorithm.TDES_3KEY: 112,
    Algorithm.AES_128: 128,
    Algorithm.AES_192: 192,
    Algorithm.AES_256: 256,
}


@unique
class DukptKeyUsage(Enum):
    """A working key's usage: its value is the key usage indicator of table 2 (6.3.2)."""

    PIN_ENCRYPTION = 0x1000
    MAC_GENERATION = 0x2000
    MAC_VERIFICATION = 0x2001
    MAC_BOTH = 0x2002
    """MAC generation and verification."""
    DATA_ENCRYPT = 0x3000
    DATA_DECRYPT = 0x3001
    DATA_BOTH = 0x3002
    """Data encryption and decryption."""


@dataclass(frozen=True)
class AesKsn:
    """A KSN naming one transaction key.

    >>> ksn = AesKsn.parse(bytes.fromhex("123456789012345600000001"))
    >>> ksn.bdk_id.hex(), ksn.derivation_id.hex(), ksn.counter
    ('12345678', '90123456', 1)
    >>> bytes(ksn).hex()
    '123456789012345600000001'
    """

    initial_key_id: bytes
    counter: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "initial_key_id", _initial_key_id(self.initial_key_id))
        _check_counter(self.counter)

    @classmethod
    def parse(cls, ksn: bytes) -> AesKsn:
        """The 12-byte KSN as sent with a transaction: initial key ID, then the counter big-endian."""
        raw = _validate.length(ksn, "ksn", (KSN_LENGTH,))
        return cls(raw[:INITIAL_KEY_ID_LENGTH], int.from_bytes(raw[INITIAL_KEY_ID_LENGTH:], "big"))

    @property
    def bdk_id(self) -> bytes:
        return self.initial_key_id[:4]

    @property
    def derivation_id(self) -> bytes:
        return self.initial_key_id[4:]

    def __bytes__(self) -> bytes:
        return self.initial_key_id + self.counter.to_bytes(4, "big")


def _initial_key_id(value: bytes) -> bytes:
    return _validate.length(value, "initial_key_id", (INITIAL_KEY_ID_LENGTH,))


def _check_counter(counter: int) -> None:
    # Past FFFF0000 every 32-bit counter has 17 one bits or more: the device has stopped (6.1).
    dukpt.check_counter(counter, maximum=MAX_COUNTER, one_bits=MAX_ONE_BITS, clause="X9.24-3:2017 6.1")


def _key_type(key_type: Algorithm) -> tuple[int, int]:
    try:
        return _KEY_TYPES[key_type]
    except KeyError:
        raise InvalidInput("key_type", "TDES_2KEY, TDES_3KEY or AES for an AES DUKPT key") from None


def _derivation_key_type(key: bytes, field: str) -> Algorithm:
    # Only AES keys derive (6.3.1); the BDK's type is every derivation key's type.
    if not isinstance(key, (bytes, bytearray)) or len(key) not in _DERIVATION_KEYS:
        raise InvalidInput(field, "an AES key of 16, 24 or 32 bytes")
    return _DERIVATION_KEYS[len(key)]


def _derivation_data(usage: int, key_type: Algorithm, tail: bytes) -> bytes:
    """The first 16-byte derivation data block of 6.3.2: version 01, key block counter 01, the
    key usage indicator, algorithm indicator and length in bits of the derived key, then ``tail``:
    the initial key ID (initial key), or the derivation ID and a 4-byte counter (all others).

    ``usage`` is table 2's indicator: a :class:`DukptKeyUsage` value, 8000 or 8001.

    >>> _derivation_data(0x8001, Algorithm.AES_128, bytes.fromhex("1234567890123456")).hex().upper()
    '01018001000200801234567890123456'
    """
    algorithm, bits = _key_type(key_type)
    head = bytes([_VERSION, 1]) + usage.to_bytes(2, "big") + algorithm.to_bytes(2, "big") + bits.to_bytes(2, "big")
    return head + bytes(tail)


def _derive(parent: bytes, key_type: Algorithm, data: bytes) -> bytes:
    """The child key of 6.3.1: the derivation data under ``parent`` by AES-ECB, block counter
    1, 2, ... until the key's length; the last block's leftmost bytes complete a 192-bit key."""
    bits = _key_type(key_type)[1]
    parent_type = _derivation_key_type(parent, "key")
    blocks = b"".join(data[:1] + bytes([i]) + data[2:] for i in range(1, -(-bits // 128) + 1))
    return _cipher.ecb_encrypt(parent_type, parent, blocks)[: bits // 8]


def _tail(initial_key_id: bytes, counter: int) -> bytes:
    return initial_key_id[4:] + counter.to_bytes(4, "big")


def initial_key(*, bdk: bytes, initial_key_id: bytes) -> bytes:
    """The device's initial key: the BDK derives it with usage 8001 and the initial key ID (6.1);
    it is of the BDK's type.

    >>> initial_key(bdk=bytes.fromhex("FEDCBA9876543210F1F1F1F1F1F1F1F1"),
    ...             initial_key_id=bytes.fromhex("1234567890123456")).hex().upper()
    '1273671EA26AC29AFA4D1084127652A1'
    """
    bdk_type = _derivation_key_type(bdk, "bdk")
    data = _derivation_data(_KEY_DERIVATION_INITIAL_KEY, bdk_type, _initial_key_id(initial_key_id))
    return _derive(bytes(bdk), bdk_type, data)


def transaction_key(initial: bytes, ksn: AesKsn) -> bytes:
    """The transaction key for ``ksn`` from the device's initial key (6.1, 6.5.3).

    For each one bit of the counter from the top, set it in a working counter and derive the
    next key (usage 8000, of the initial key's type) with the derivation ID and that counter.

    >>> ik = bytes.fromhex("1273671EA26AC29AFA4D1084127652A1")
    >>> transaction_key(ik, AesKsn.parse(bytes.fromhex("123456789012345600000001"))).hex().upper()
    '4F21B565BAD9835E112B6465635EAE44'
    """
    key_type = _derivation_key_type(initial, "initial_key")
    key = bytes(initial)
    working = 0
    bit = 1 << (COUNTER_BITS - 1)
    while bit:
        if ksn.counter & bit:
            working |= bit
            data = _derivation_data(_KEY_DERIVATION, key_type, _tail(ksn.initial_key_id, working))
            key = _derive(key, key_type, data)
        bit >>= 1
    return key


def working_key(txn_key: bytes, ksn: AesKsn, usage: DukptKeyUsage, key_type: Algorithm) -> bytes:
    """The working key of ``usage`` and ``key_type`` for the transaction ``ksn`` names (6.1): the
    transaction key derives it with the derivation ID and the KSN's counter.

    A working key is no stronger than the key it comes from (6.1.3): an AES-128 BDK gives TDES and
    AES-128 working keys, not AES-192 or AES-256 ones.
    """
    parent_type = _derivation_key_type(txn_key, "transaction_key")
    _key_type(key_type)
    if _STRENGTH[key_type] > _STRENGTH[parent_type]:
        raise InvalidInput("key_type", "no stronger than the BDK (X9.24-3:2017 6.1.3)")
    if not isinstance(usage, DukptKeyUsage):
        raise InvalidInput("key_usage", "a DukptKeyUsage")
    data = _derivation_data(usage.value, key_type, _tail(ksn.initial_key_id, ksn.counter))
    return _derive(bytes(txn_key), key_type, data)


def derive(*, bdk: bytes, ksn: AesKsn, usage: DukptKeyUsage, key_type: Algorithm) -> bytes:
    """The host's working key for a transaction: initial key, transaction key, then working key."""
    ik = initial_key(bdk=bdk, initial_key_id=ksn.initial_key_id)
    return working_key(transaction_key(ik, ksn), ksn, usage, key_type)
