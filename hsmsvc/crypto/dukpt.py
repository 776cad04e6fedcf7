"""TDES DUKPT, host side: derived unique key per transaction (ANSI X9.24-1:2009, annex A).

* :class:`TdesKsn`: the 10-byte key serial number, a 59-bit initial KSN (key set identifier and
  device ID) and a 21-bit transaction counter of at most 10 one bits (A.3).
* :func:`initial_key`: the IPEK from a double-length BDK and the initial KSN (A.6).
* :func:`transaction_key`: the device's key for one KSN, the non-reversible key generation
  process (A.2) applied once for each one bit of the counter, from the top.
* :func:`working_key`: the variants of table A-1 (A.4.1); data keys then pass the one-way
  function of figure A-2.

Pure functions over clear key bytes: no key store and no device state (the device's future-key
registers are not kept; the host recomputes the key from the IPEK each time).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, unique
from typing import Final

from cryptography.hazmat.primitives.ciphers import Cipher, modes

from hsmsvc.crypto import _cipher, _validate
from hsmsvc.crypto._cipher import xor
from hsmsvc.errors import InvalidInput
from hsmsvc.types import Algorithm

__all__ = [
    "COUNTER_BITS",
    "KSN_LENGTH",
    "MAX_COUNTER",
    "MAX_ONE_BITS",
    "TdesDukptKey",
    "TdesKsn",
    "check_counter",
    "derive",
    "initial_key",
    "initial_ksn",
    "transaction_key",
    "working_key",
]

KSN_LENGTH: Final = 10
COUNTER_BITS: Final = 21
MAX_ONE_BITS: Final = 10
"""A.3: counters of more than 10 one bits are skipped, so no key is more than 10 steps from the IPEK."""
MAX_COUNTER: Final = ((1 << MAX_ONE_BITS) - 1) << (COUNTER_BITS - MAX_ONE_BITS)
"""1FF800, the highest counter with at most 10 one bits: the device's last transaction."""
_COUNTER_MASK: Final = (1 << COUNTER_BITS) - 1
_KEY_LENGTH: Final = 16
# A.6 and A.2: the variant that makes the right half of the IPEK and of each derived key.
_KEY_VARIANT: Final = bytes.fromhex("C0C0C0C000000000C0C0C0C000000000")


@unique
class TdesDukptKey(Enum):
    """A working key of a transaction key: its value is the variant of table A-1 (A.4.1)."""

    PIN = bytes.fromhex("00000000000000FF00000000000000FF")
    """PIN encryption."""
    MAC_REQUEST = bytes.fromhex("000000000000FF00000000000000FF00")
    """MAC, request (the device's message)."""
    MAC_RESPONSE = bytes.fromhex("00000000FF00000000000000FF000000")
    """MAC, response (the host's message)."""
    DATA_REQUEST = bytes.fromhex("0000000000FF00000000000000FF0000")
    """Data encryption, request; the variant then the one-way function of figure A-2."""
    DATA_RESPONSE = bytes.fromhex("000000FF00000000000000FF00000000")
    """Data encryption, response; the variant then the one-way function of figure A-2."""

    @property
    def is_data(self) -> bool:
        return self in (TdesDukptKey.DATA_REQUEST, TdesDukptKey.DATA_RESPONSE)


@dataclass(frozen=True)
class TdesKsn:
    """A KSN naming one transaction key: ``initial`` is the KSN with its 21 counter bits zero.

    >>> ksn = TdesKsn.parse(bytes.fromhex("FFFF9876543210E00001"))
    >>> ksn.initial.hex().upper(), ksn.counter
    ('FFFF9876543210E00000', 1)
    >>> bytes(ksn).hex().upper()
    'FFFF9876543210E00001'
    """

    initial: bytes
    counter: int

    def __post_init__(self) -> None:
        initial = _validate.length(self.initial, "ksn", (KSN_LENGTH,))
        if int.from_bytes(initial, "big") & _COUNTER_MASK:
            raise InvalidInput("ksn", "the initial KSN has its 21 counter bits zero")
        object.__setattr__(self, "initial", initial)  # bytes, even when given a bytearray
        _check_counter(self.counter)

    @classmethod
    def parse(cls, ksn: bytes) -> TdesKsn:
        """The KSN of 10 bytes as sent with a transaction; the rightmost 21 bits are the counter."""
        raw = int.from_bytes(_validate.length(ksn, "ksn", (KSN_LENGTH,)), "big")
        return cls((raw & ~_COUNTER_MASK).to_bytes(KSN_LENGTH, "big"), raw & _COUNTER_MASK)

    def __bytes__(self) -> bytes:
        return (int.from_bytes(self.initial, "big") | self.counter).to_bytes(KSN_LENGTH, "big")


def check_counter(counter: int, *, maximum: int, one_bits: int, clause: str) -> None:
    """Refuse a KSN counter DUKPT never uses: 0 (the initial KSN or key ID alone, whose key the
    device never uses itself), one past the last, or one of more than ``one_bits`` one bits (the
    device skips those, so no key is more than ``one_bits`` derivations from the initial key)."""
    if isinstance(counter, bool) or not isinstance(counter, int):
        raise InvalidInput("ksn", "the counter is an integer")
    if counter == 0:
        raise InvalidInput("ksn", "a counter of 0 names no transaction key")
    if not 0 < counter <= maximum:
        raise InvalidInput("ksn", f"the counter is from 1 to its maximum, {maximum:X}")
    if counter.bit_count() > one_bits:
        raise InvalidInput("ksn", f"the counter has at most {one_bits} one bits ({clause})")


def _check_counter(counter: int) -> None:
    # Past 1FF800 every 21-bit counter has 11 one bits or more: the device has stopped (A.3).
    check_counter(counter, maximum=MAX_COUNTER, one_bits=MAX_ONE_BITS, clause="X9.24-1:2009 A.3")


def _bdk(bdk: bytes) -> bytes:
    return _validate.length(bdk, "bdk", (_KEY_LENGTH,))


def _des(key: bytes, block: bytes) -> bytes:
    ctx = Cipher(_cipher.des_primitive(key), modes.ECB()).encryptor()
    return ctx.update(block) + ctx.finalize()


def _tdes(key: bytes, block: bytes) -> bytes:
    return _cipher.ecb_encrypt(Algorithm.TDES_2KEY, key, block)


def initial_ksn(ksn: bytes) -> bytes:
    """``ksn`` (10 bytes) with its 21 counter bits cleared: the device's initial KSN.

    >>> initial_ksn(bytes.fromhex("FFFF9876543210E00001")).hex().upper()
    'FFFF9876543210E00000'
    """
    raw = int.from_bytes(_validate.length(ksn, "ksn", (KSN_LENGTH,)), "big") & ~_COUNTER_MASK
    return raw.to_bytes(KSN_LENGTH, "big")


def initial_key(*, bdk: bytes, ksn: bytes) -> bytes:
    """The IPEK of a device (A.6): TDES of the KSN's left 8 bytes, counter bits cleared, under the
    BDK (left half) and under the BDK XOR C0C0C0C000000000C0C0C0C000000000 (right half).

    ``ksn`` is the 10-byte initial KSN or any KSN of the device: its counter bits are ignored.

    >>> initial_key(bdk=bytes.fromhex("0123456789ABCDEFFEDCBA9876543210"),
    ...             ksn=bytes.fromhex("FFFF9876543210E00000")).hex().upper()
    '6AC292FAA1315B4D858AB3A3D7D5933A'
    """
    key = _bdk(bdk)
    data = initial_ksn(ksn)[:8]
    return _tdes(key, data) + _tdes(xor(key, _KEY_VARIANT), data)


def _generate(key: bytes, data: bytes) -> bytes:
    """The non-reversible key generation process (A.2): the key for ``data`` (8 bytes) under ``key``.

    Each half is DES(left, data XOR right) XOR right; the left half of the result under the key
    XOR the C0C0 variant, the right half under the key itself.
    """

    def half(k: bytes) -> bytes:
        left, right = k[:8], k[8:]
        return xor(_des(left, xor(data, right)), right)

    return half(xor(key, _KEY_VARIANT)) + half(key)


def transaction_key(ipek: bytes, ksn: TdesKsn) -> bytes:
    """The transaction key for ``ksn`` from the device's IPEK (A.2, as the host derives it).

    Starting from the IPEK and the rightmost 8 bytes of the initial KSN, for each one bit of the
    counter from the top: set it in that register and apply the non-reversible process to it.

    >>> ipek = bytes.fromhex("6AC292FAA1315B4D858AB3A3D7D5933A")
    >>> transaction_key(ipek, TdesKsn.parse(bytes.fromhex("FFFF9876543210E00001"))).hex().upper()
    '042666B49184CFA368DE9628D0397BC9'
    """
    key = _validate.length(ipek, "ipek", (_KEY_LENGTH,))
    register = int.from_bytes(ksn.initial[2:], "big")
    bit = 1 << (COUNTER_BITS - 1)
    while bit:
        if ksn.counter & bit:
            register |= bit
            key = _generate(key, register.to_bytes(8, "big"))
        bit >>= 1
    return key


def working_key(txn_key: bytes, kind: TdesDukptKey) -> bytes:
    """The working key ``kind`` of a transaction key: the table A-1 variant (A.4.1); for data keys
    each half then enciphered with TDES under that variant (figure A-2), as the A.4 vectors are.

    >>> txn = bytes.fromhex("042666B49184CFA368DE9628D0397BC9")
    >>> working_key(txn, TdesDukptKey.PIN).hex().upper()
    '042666B49184CF5C68DE9628D0397B36'
    """
    key = xor(_validate.length(txn_key, "transaction_key", (_KEY_LENGTH,)), kind.value)
    if kind.is_data:
        # A variant is reversible: whoever holds it holds the transaction key, and so the PIN and
        # MAC keys. Data keys may be used in software outside a secure device; the one-way step
        # keeps them from giving the others away.
        key = _tdes(key, key[:8]) + _tdes(key, key[8:])
    return key


def derive(*, bdk: bytes, ksn: TdesKsn, kind: TdesDukptKey) -> bytes:
    """The host's working key ``kind`` for a transaction: IPEK, transaction key, then variant."""
    return working_key(transaction_key(initial_key(bdk=bdk, ksn=ksn.initial), ksn), kind)
