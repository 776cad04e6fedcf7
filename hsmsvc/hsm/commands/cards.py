"""Card verification values inside the backend (issue 35): the CVV method under a CVK, and a
card's dynamic values (Visa dCVV, Mastercard CVC3) under the card key derived from an IMK.

A CVK (TR-31 C0) computes CVV, CVV2 and iCVV: IBM CCA Basic Services appendix E, the Visa and
Mastercard method (``crypto/cvv.py``). Generation is issuance and verification a check: two
operations in the policy table, so a verify-only key (mode V) never answers a value.

A dCVV or CVC3 is made by the card under its own key, which the issuer derives from its IMK and the
card's PAN and PAN sequence number (EMV Book 2 annex A1.4): a Visa dCVV IMK is usage E6, a
Mastercard CVC3 IMK usage E4. The card key exists only inside the command. Nothing here gives a
dynamic value out: the backend only checks one.

A batch checks its items under one key, loaded and checked once; a malformed item is its own
``InvalidInput`` and the rest go on. A value that does not match is ``False``, compared in
constant time.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import unique
from typing import TYPE_CHECKING, Callable, Final, Sequence, TypeVar

from hsmsvc.crypto import compare, cvv, emv
from hsmsvc.errors import InvalidInput, KeyUsageViolation, VerificationFailed
from hsmsvc.hsm.commands.base import MAX_BATCH_PINS, HsmCommand, LoadedKey
from hsmsvc.hsm.commands.emv import card_key
from hsmsvc.hsm.model import Command, KeyCryptogram
from hsmsvc.hsm.policy import Operation
from hsmsvc.types import Algorithm, KeyUsage, Vocabulary

if TYPE_CHECKING:
    from hsmsvc.hsm.commands.core import CommandBackend

__all__ = [
    "CvvData", "DynamicCvvData", "DynamicKind", "GenerateCvv", "VerifyCvvs", "VerifyDynamicCvvs",
]


@dataclass(frozen=True, kw_only=True)
class CvvData:
    """What a CVV, CVV2 or iCVV is computed over: ``service_code`` only for ``CvvKind.CVV``."""

    kind: cvv.CvvKind
    pan: str
    expiry: str
    service_code: str | None = None


@unique
class DynamicKind(Vocabulary):
    """A card's dynamic verification value, and the IMK usage that derives its key."""

    DCVV = "DCVV"
    """Visa dCVV of a contactless magnetic-stripe transaction: 3 digits (IMK usage E6)."""
    CVC3 = "CVC3"
    """Mastercard CVC3 of a contactless magnetic-stripe transaction: 3 to 5 digits (IMK usage E4)."""

    @property
    def usage(self) -> KeyUsage:
        return KeyUsage.EMV_OTHER if self is DynamicKind.DCVV else KeyUsage.EMV_DYNAMIC_NUMBERS


@dataclass(frozen=True, kw_only=True)
class DynamicCvvData:
    """A card's dynamic value and what it is computed over.

    dCVV: ``expiry``, ``service_code`` and ``atc``. CVC3: ``track`` (track 1 or 2 data as the card
    holds it), ``unpredictable_number`` and ``atc``. The card key is derived from ``pan`` and
    ``psn`` by ``option``.
    """

    kind: DynamicKind
    pan: str
    psn: str
    option: emv.MasterKeyOption
    atc: bytes
    expiry: str = ""
    service_code: str = ""
    track: bytes = b""
    unpredictable_number: bytes = b""


_MAX_ITEMS: Final = MAX_BATCH_PINS
T = TypeVar("T")


def _items(items: Sequence[object], values: Sequence[str]) -> None:
    if not isinstance(items, Sequence) or not isinstance(values, Sequence) or len(items) > _MAX_ITEMS:
        raise InvalidInput("items", f"at most {_MAX_ITEMS} per call")
    if len(items) != len(values):
        raise InvalidInput("values", "one per item")


def _each(items: Sequence[T], values: Sequence[str], check: Callable[[T, str], bool]) -> list[bool | InvalidInput]:
    """``check`` of each item and value: its verdict, or the item's own ``InvalidInput``."""
    out: list[bool | InvalidInput] = []
    for item, value in zip(items, values):
        try:
            out.append(check(item, value))
        except InvalidInput as e:
            out.append(e)
    return out


def _cvv_data(d: CvvData) -> CvvData:
    if not isinstance(d, CvvData):
        raise InvalidInput("item", "a CvvData")
    return d


def _matches(computed: str, presented: str) -> bool:
    return compare.bytes_eq(computed.encode(), presented.encode())


def _cvv_value(value: str) -> str:
    if not isinstance(value, str) or not cvv.MIN_CVV_LENGTH <= len(value) <= cvv.MAX_CVV_LENGTH \
            or not (value.isascii() and value.isdigit()):
        raise InvalidInput("cvv", f"{cvv.MIN_CVV_LENGTH} to {cvv.MAX_CVV_LENGTH} digits")
    return value


@dataclass(frozen=True, kw_only=True, repr=False)
class GenerateCvv(HsmCommand[str]):
    """The ``length``-digit CVV, CVV2 or iCVV of ``data`` under the CVK ``key``: issuance only."""

    key: KeyCryptogram
    data: CvvData
    length: int = 3

    def run(self, b: CommandBackend) -> str:
        b._capabilities.require(Command.CARD)
        d = _cvv_data(self.data)
        with b._guard():
            k = b._use(self.key, Operation.CVV_GENERATE)
            return cvv.generate_cvv(b._clear(k), kind=d.kind, pan=d.pan, expiry=d.expiry,
                                    service_code=d.service_code, length=self.length)


@dataclass(frozen=True, kw_only=True, repr=False)
class VerifyCvvs(HsmCommand[list[bool | InvalidInput]]):
    """Whether each presented value is its item's CVV, CVV2 or iCVV under the CVK ``key`` (as many
    digits as presented), or the item's own ``InvalidInput``."""

    key: KeyCryptogram
    items: Sequence[CvvData]
    values: Sequence[str]

    def run(self, b: CommandBackend) -> list[bool | InvalidInput]:
        b._capabilities.require(Command.CARD)
        _items(self.items, self.values)
        with b._guard():
            method = cvv.CvvMethod(b._clear(b._use(self.key, Operation.CVV_VERIFY)))

            def one(item: CvvData, value: str) -> bool:
                d = _cvv_data(item)
                presented = _cvv_value(value)
                computed = method.generate(kind=d.kind, pan=d.pan, expiry=d.expiry, service_code=d.service_code,
                                           length=len(presented))
                return _matches(computed, presented)

            return _each(self.items, self.values, one)


def _dynamic(imk: LoadedKey, d: DynamicCvvData, value: str) -> bool:
    if not isinstance(d, DynamicCvvData) or not isinstance(d.kind, DynamicKind):
        raise InvalidInput("item", "a DynamicCvvData")
    if imk.spec.usage is not d.kind.usage:
        raise KeyUsageViolation("key", f"a {d.kind.value} needs an IMK of usage {d.kind.usage.value}")
    key = card_key(imk, pan=d.pan, psn=d.psn, option=d.option)
    try:
        if d.kind is DynamicKind.DCVV:
            cvv.verify_dcvv(key, pan=d.pan, expiry=d.expiry, atc=d.atc, dcvv=value,
                            service_code=d.service_code or "000")
        else:
            cvv.verify_cvc3(key, track=d.track, unpredictable_number=d.unpredictable_number, atc=d.atc, cvc3=value)
    except VerificationFailed:
        return False
    return True


@dataclass(frozen=True, kw_only=True, repr=False)
class VerifyDynamicCvvs(HsmCommand[list[bool | InvalidInput]]):
    """Whether each presented dCVV or CVC3 is its card's, under the card key derived from the IMK
    ``key``; or the item's own ``InvalidInput``. A TDES IMK only: no scheme defines these over SM4."""

    key: KeyCryptogram
    items: Sequence[DynamicCvvData]
    values: Sequence[str]

    def run(self, b: CommandBackend) -> list[bool | InvalidInput]:
        b._capabilities.require(Command.CARD)
        _items(self.items, self.values)
        with b._guard():
            imk = b._use(self.key, Operation.DYNAMIC_CVV_VERIFY)
            if imk.algorithm is not Algorithm.TDES_2KEY:
                raise KeyUsageViolation("key", "dCVV and CVC3 are defined over two-key TDES only")
            return _each(self.items, self.values, lambda d, value: _dynamic(imk, d, value))
