"""The keys a PIN block arrives under, and what a PSK is used for: shared by every PIN use case."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from hsmsvc.errors import InvalidInput
from hsmsvc.hsm.model import DukptKey, OneTimeKey, PinKey
from hsmsvc.hsm.policy import Operation
from hsmsvc.keys.model import KeyRef, StoredKey
from hsmsvc.service.context import Caller, Services
from hsmsvc.types import Algorithm, KeyUsage

__all__ = ["CheckedRoute", "DukptKeyRef", "OneTimeKeyRef", "PinSource", "pin_source", "posix", "psk_operation",
           "route_current"]


@dataclass(frozen=True)
class OneTimeKeyRef:
    """A terminal's one-time PIN key under a KTK's public half (bank design 004 clause 5.2.4(2))."""

    transport_key: KeyRef
    algorithm: Algorithm
    wrapped_key: bytes


@dataclass(frozen=True)
class DukptKeyRef:
    """A DUKPT transaction's PIN key: the stored BDK and the terminal's KSN (X9.24-1, X9.24-3)."""

    bdk: KeyRef
    ksn: bytes
    algorithm: Algorithm | None = None
    """Under an AES BDK, the PIN key's algorithm; None under a TDES BDK."""


PinSource = KeyRef | OneTimeKeyRef | DukptKeyRef
"""What a PIN block arrives under: a stored TPK or ZPK, a one-time key, or a DUKPT transaction's key."""


def pin_source(s: Services, caller: Caller, source: PinSource, field: str) -> tuple[StoredKey, PinKey]:
    """The stored key to audit and count, and what the backend deciphers under."""
    if isinstance(source, OneTimeKeyRef):
        if not isinstance(source.algorithm, Algorithm) or not source.algorithm.is_block_cipher:
            raise InvalidInput(f"{field}.algorithm", "a block cipher (TDES, AES or SM4)")
        # Never stored, so only here does the mode see a one-time key's own algorithm.
        s.mode.require_key(source.algorithm, f"{field}.algorithm")
        ktk = s.key(caller, source.transport_key, Operation.KEY_TRANSPORT_DECRYPT, f"{field}.transport_key")
        return ktk, OneTimeKey(ktk.cryptogram, source.algorithm, bytes(source.wrapped_key))
    if isinstance(source, DukptKeyRef):
        if source.algorithm is not None:
            s.mode.require_key(source.algorithm, f"{field}.pin_key_algorithm")
        bdk = s.key(caller, source.bdk, Operation.DUKPT_PIN_DECRYPT, f"{field}.bdk")
        return bdk, DukptKey(bdk.cryptogram, bytes(source.ksn), source.algorithm)
    k = s.key(caller, source, Operation.PIN_DECRYPT, field)
    return k, k.cryptogram


def psk_operation(key: StoredKey) -> Operation:
    """What a PSK is used for: enciphering stored PINs, or digesting them."""
    usage = key.cryptogram.spec.usage
    return Operation.PIN_STORE_ENCRYPT if usage is KeyUsage.PIN_ENCRYPTION else Operation.PIN_STORE_DIGEST


class CheckedRoute(Protocol):
    """Checks made once and kept: a translation's or a verification's route."""

    @property
    def stamp(self) -> int:
        """The key cache's stamp read before the checks' lookups."""
        ...

    @property
    def until(self) -> float:
        """POSIX time at which a date the checks relied on passes."""
        ...


def posix(when: datetime | None) -> float:
    return math.inf if when is None else when.timestamp()


def route_current(s: Services, route: CheckedRoute) -> bool:
    """Whether ``route``'s checks still hold: the key cache has dropped or changed nothing since
    they were made, and no date they relied on has passed."""
    return s.keys.current(route.stamp) and (route.until == math.inf or time.time() < route.until)
