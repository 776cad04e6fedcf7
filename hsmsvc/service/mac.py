"""MAC use cases: ISO 9797-1 algorithms 1 and 3 (X9.19), CMAC, HMAC, UnionPay POS.

The MAC algorithm is chosen by the caller but must match the key's bound
usage, so a key made for CMAC never produces a retail MAC. A wrong MAC is a
result (``False``); tags are compared in constant time in the backend.
"""

from __future__ import annotations

from typing import Sequence

from hsmsvc.errors import HsmsvcError, InvalidInput, VerificationFailed
from hsmsvc.hsm.commands import GenerateMac, GenerateMacs, VerifyMac, VerifyMacs
from hsmsvc.hsm.commands.mac import min_mac_length
from hsmsvc.hsm.policy import Operation
from hsmsvc.keys.model import KeyRef
from hsmsvc.service.context import Caller, Services
from hsmsvc.types import MacAlgorithm, Padding, KeyType

__all__ = ["generate_mac", "generate_mac_batch", "verify_mac", "verify_mac_batch"]

_PADDED = (MacAlgorithm.ISO9797_ALG1, MacAlgorithm.ISO9797_ALG3)


def _padding(algorithm: MacAlgorithm, padding: Padding | None) -> Padding:
    if not isinstance(algorithm, MacAlgorithm):
        raise InvalidInput("algorithm", "a MAC algorithm")
    if algorithm in _PADDED:
        if padding is None:
            raise InvalidInput("padding", "required for ISO 9797-1 algorithms 1 and 3")
        return padding
    # CMAC, HMAC and the UnionPay MAC define their own padding.
    if padding is not None:
        raise InvalidInput("padding", f"not used by {algorithm.value}")
    return Padding.METHOD_1


def _truncate(tag: bytes, length: int, algorithm: MacAlgorithm) -> bytes:
    """The tag cut to ``length``: from the algorithm's minimum (the one VerifyMac takes) to full."""
    if length == 0:
        return tag
    lo = min_mac_length(algorithm)
    if not lo <= length <= len(tag):
        raise InvalidInput("mac_length", f"{lo} to {len(tag)} bytes, or 0 for the full tag")
    return tag[:length]


def generate_mac(
    s: Services, caller: Caller, *, key: KeyRef, algorithm: MacAlgorithm, padding: Padding | None,
    data: bytes, length: int = 0,
) -> tuple[bytes, int, bool]:
    """The MAC, the key's version, and whether a TAK is due for a new version (sign on again)."""
    pad = _padding(algorithm, padding)
    s.mode.require_mac(algorithm)
    k = s.key(caller, key, Operation.MAC_GENERATE)
    tag = s.backend.execute(GenerateMac(key=k.cryptogram, data=data, algorithm=algorithm, padding=pad))
    s.observer.key_used(k)
    return _truncate(tag, length, algorithm), k.version, k.cryptogram.spec.key_type is KeyType.TAK and k.rotation_due


def verify_mac(
    s: Services, caller: Caller, *, key: KeyRef, algorithm: MacAlgorithm, padding: Padding | None,
    data: bytes, mac: bytes,
) -> bool:
    pad = _padding(algorithm, padding)
    s.mode.require_mac(algorithm)
    k = s.key(caller, key, Operation.MAC_VERIFY)
    try:
        s.backend.execute(VerifyMac(key=k.cryptogram, data=data, mac=mac, algorithm=algorithm, padding=pad))
    except VerificationFailed:
        return False
    s.observer.key_used(k)
    return True


def generate_mac_batch(
    s: Services, caller: Caller, *, key: KeyRef, algorithm: MacAlgorithm, padding: Padding | None,
    messages: Sequence[bytes], length: int = 0,
) -> tuple[list[bytes | HsmsvcError], int]:
    pad = _padding(algorithm, padding)
    s.mode.require_mac(algorithm)
    k = s.key(caller, key, Operation.MAC_GENERATE)
    tags = s.backend.execute(GenerateMacs(key=k.cryptogram, messages=messages, algorithm=algorithm,
                                          padding=pad))
    # A mac_length the tags cannot have fails the whole request, as it would fail every item.
    out: list[bytes | HsmsvcError] = [_truncate(t, length, algorithm) if isinstance(t, bytes) else t for t in tags]
    s.observer.key_used(k, sum(1 for r in out if isinstance(r, bytes)))
    return out, k.version


def verify_mac_batch(
    s: Services, caller: Caller, *, key: KeyRef, algorithm: MacAlgorithm, padding: Padding | None,
    messages: Sequence[bytes], macs: Sequence[bytes],
) -> list[bool | HsmsvcError]:
    if len(messages) != len(macs):
        raise InvalidInput("macs", "one per message")
    pad = _padding(algorithm, padding)
    s.mode.require_mac(algorithm)
    k = s.key(caller, key, Operation.MAC_VERIFY)
    out: list[bool | HsmsvcError] = list(s.backend.execute(VerifyMacs(
        key=k.cryptogram, messages=messages, macs=macs, algorithm=algorithm, padding=pad)))
    s.observer.key_used(k, sum(1 for r in out if r is True))
    return out
