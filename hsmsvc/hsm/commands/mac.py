"""MAC commands: generation and constant-time verification (ISO 9797-1, CMAC SP 800-38B, HMAC FIPS 198-1).

The key's usage names the one MAC algorithm it may compute, and an HMAC key's
size the hash; a tag to verify may be truncated, no shorter than the
algorithm allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Sequence

from hsmsvc.crypto import compare
from hsmsvc.errors import InvalidInput, KeyUsageViolation, Unsupported
from hsmsvc.hsm import policy
from hsmsvc.hsm.commands.base import HsmCommand, LoadedKey, check_data, hmac_for
from hsmsvc.hsm.model import Command, KeyCryptogram
from hsmsvc.hsm.policy import Operation
from hsmsvc.types import MacAlgorithm, Padding

if TYPE_CHECKING:
    from hsmsvc.hsm.commands.core import CommandBackend

__all__ = ["GenerateMac", "GenerateMacs", "VerifyMac", "VerifyMacs", "min_mac_length"]

_FULL_LENGTHS: Final = {
    MacAlgorithm.HMAC_SHA256: 32,
    MacAlgorithm.HMAC_SM3: 32,
    MacAlgorithm.UNIONPAY_POS: 8,
}
_MIN_LENGTHS: Final = {
    # 128 bits: nothing bounds how often a caller may try a MAC, so a short HMAC tag would be a
    # forgery in hours (2^32 guesses at 277k/s on one core); FIPS 198-1 leaves the length to us.
    MacAlgorithm.HMAC_SHA256: 16,
    MacAlgorithm.HMAC_SM3: 16,
    # The UnionPay POS MAC is its 8 characters, whole, with TDES and with SM4 alike.
    MacAlgorithm.UNIONPAY_POS: 8,
}


def min_mac_length(algorithm: MacAlgorithm) -> int:
    """The shortest tag generated or verified: 16 bytes for HMAC, 8 for the UnionPay POS MAC (TDES or
    SM4: the 8 hex characters of field 64, never cut), and 4 for the block-cipher MACs (ISO/IEC
    9797-1 clause 5, m >= 32: what payment messages carry)."""
    return _MIN_LENGTHS.get(algorithm, 4)


def _check_mac(k: LoadedKey, algorithm: MacAlgorithm, mac: bytes) -> None:
    """A tag to verify is as long as GenerateMac may make it: the algorithm's minimum up to the full tag."""
    # The key's block size only for the block-cipher MACs: an HMAC-only key (HMAC_SM3_256) has none.
    full = _FULL_LENGTHS.get(algorithm)
    lo, hi = min_mac_length(algorithm), k.algorithm.block_size if full is None else full
    if not isinstance(mac, (bytes, bytearray)) or not lo <= len(mac) <= hi:
        raise InvalidInput("mac", f"{lo} to {hi} bytes")


def _mac_key(b: CommandBackend, key: KeyCryptogram, op: Operation, algorithm: MacAlgorithm) -> LoadedKey:
    if not isinstance(algorithm, MacAlgorithm):
        raise InvalidInput("mac_algorithm", "a MacAlgorithm")
    if algorithm not in b._capabilities.mac_algorithms:
        raise Unsupported("mac_algorithm", f"{algorithm.value} is not supported by this backend")
    k = b._use(key, op)
    if k.spec.usage is not policy.MAC_USAGE[algorithm]:
        raise KeyUsageViolation("key", f"its usage does not permit {algorithm.value}")
    if algorithm in (MacAlgorithm.HMAC_SHA256, MacAlgorithm.HMAC_SM3) and hmac_for(k) is not algorithm:
        raise KeyUsageViolation("key", f"its algorithm does not permit {algorithm.value}")
    return k


@dataclass(frozen=True, kw_only=True, repr=False)
class GenerateMac(HsmCommand[bytes]):
    """The full-length tag of ``data`` under ``key``."""

    key: KeyCryptogram
    data: bytes
    algorithm: MacAlgorithm
    padding: Padding

    def run(self, b: CommandBackend) -> bytes:
        b._capabilities.require(Command.GENERATE_MAC)
        check_data(self.data)
        with b._guard():
            return _mac_key(b, self.key, Operation.MAC_GENERATE, self.algorithm).mac(
                self.algorithm, self.padding, bytes(self.data))


@dataclass(frozen=True, kw_only=True, repr=False)
class VerifyMac(HsmCommand[None]):
    """Raise ``VerificationFailed`` unless ``mac`` is right (constant-time compare)."""

    key: KeyCryptogram
    data: bytes
    mac: bytes
    algorithm: MacAlgorithm
    padding: Padding

    def run(self, b: CommandBackend) -> None:
        b._capabilities.require(Command.VERIFY_MAC)
        check_data(self.data)
        with b._guard():
            k = _mac_key(b, self.key, Operation.MAC_VERIFY, self.algorithm)
            _check_mac(k, self.algorithm, self.mac)
            computed = k.mac(self.algorithm, self.padding, bytes(self.data))
        compare.require_eq(computed[: len(self.mac)], bytes(self.mac), "mac")


@dataclass(frozen=True, kw_only=True, repr=False)
class GenerateMacs(HsmCommand[list[bytes | InvalidInput]]):
    """:class:`GenerateMac` of each message under one key, checked and loaded once:
    a full tag each, or the message's own ``InvalidInput``."""

    key: KeyCryptogram
    messages: Sequence[bytes]
    algorithm: MacAlgorithm
    padding: Padding

    def run(self, b: CommandBackend) -> list[bytes | InvalidInput]:
        b._capabilities.require(Command.GENERATE_MAC)
        out: list[bytes | InvalidInput] = []
        with b._guard():
            k = _mac_key(b, self.key, Operation.MAC_GENERATE, self.algorithm)
            for data in self.messages:
                try:
                    check_data(data)
                    out.append(k.mac(self.algorithm, self.padding, bytes(data)))
                except InvalidInput as e:
                    out.append(e)
        return out


@dataclass(frozen=True, kw_only=True, repr=False)
class VerifyMacs(HsmCommand[list[bool | InvalidInput]]):
    """:class:`VerifyMac` of each message and tag under one key: whether it verifies
    (constant-time compare), or the pair's own ``InvalidInput``."""

    key: KeyCryptogram
    messages: Sequence[bytes]
    macs: Sequence[bytes]
    algorithm: MacAlgorithm
    padding: Padding

    def run(self, b: CommandBackend) -> list[bool | InvalidInput]:
        b._capabilities.require(Command.VERIFY_MAC)
        if len(self.messages) != len(self.macs):
            raise InvalidInput("macs", "one per message")
        out: list[bool | InvalidInput] = []
        with b._guard():
            k = _mac_key(b, self.key, Operation.MAC_VERIFY, self.algorithm)
            for data, mac in zip(self.messages, self.macs):
                try:
                    check_data(data)
                    _check_mac(k, self.algorithm, mac)
                    computed = k.mac(self.algorithm, self.padding, bytes(data))
                    out.append(compare.bytes_eq(computed[: len(mac)], bytes(mac)))
                except InvalidInput as e:
                    out.append(e)
        return out
