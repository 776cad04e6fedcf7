"""EMV issuer commands inside the backend (issue 35): ARQC verification and the ARPC.

The card's key is derived from the IMK (usage E0, mode X) and the card's PAN and PAN sequence
number (EMV 4.3 Book 2 annex A1.4), its session key by the scheme's method (A1.3.1, the
Mastercard SKD, the Visa CVN conventions), and the cryptogram checked (section 8.1), in one
command: no derived key leaves it. An ARPC (section 8.2) is made only for a cryptogram that
verified, so the command never enciphers a value the caller chose under a card's key.

A TDES IMK follows ``crypto/emv.py``; an SM4 IMK, for PBOC 3.0 / UnionPay IC cards, follows
``crypto/emvsm4.py`` with the common session key derivation (the only method it has).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import unique
from typing import TYPE_CHECKING, Final, Sequence

from hsmsvc.crypto import compare, emv, emvsm4
from hsmsvc.crypto.components import adjust_odd_parity
from hsmsvc.errors import InvalidInput
from hsmsvc.hsm.commands.base import MAX_BATCH_PINS, HsmCommand, LoadedKey
from hsmsvc.hsm.model import Command, KeyCryptogram
from hsmsvc.hsm.policy import Operation
from hsmsvc.types import Algorithm, Vocabulary

if TYPE_CHECKING:
    from hsmsvc.hsm.commands.core import CommandBackend

__all__ = ["ArpcMethod", "ArqcData", "VerifyArqcs", "card_key"]


@unique
class ArpcMethod(Vocabulary):
    """The ARPC to answer a verified ARQC with (EMV 4.3 Book 2 section 8.2)."""

    NONE = "NONE"
    METHOD_1 = "METHOD_1"
    """8.2.1: the ARQC XOR the 2-byte ARC, enciphered under the AC session key: 8 bytes (EMV CSK,
    Mastercard CVN 20/21, Interac; for Visa CVN 10 the session key is the card's key)."""
    METHOD_1_CARD_KEY = "METHOD_1_CARD_KEY"
    """8.2.1 under the card's (ICC master) key: Mastercard M/Chip 4 CVN 16/17, the only scheme taken."""
    METHOD_2 = "METHOD_2"
    """8.2.2: a 4-byte MAC of ARQC || CSU || proprietary authentication data."""


_METHOD_1: Final = frozenset({ArpcMethod.METHOD_1, ArpcMethod.METHOD_1_CARD_KEY})
MIN_DATA: Final = 21
"""The shortest cryptogram input taken. An ARPC is a cryptogram under the same key: method 1 is the
encipherment of one block (which a one-block CVN 10 input MACs to), method 2 a MAC over 12 to 20
bytes. Inputs longer than both keep an ARPC from being a valid cryptogram for a value the caller
chose (an adversarial review chained them); EMV Book 2's recommended minimum set is 33 bytes."""


@dataclass(frozen=True, kw_only=True)
class ArqcData:
    """One authorisation's cryptogram and what the issuer needs to check it.

    ``data`` is the scheme's cryptogram input (CDOL1 data; for Visa CVN 18 and 22 with the whole
    issuer application data 9F10), unpadded: the method pads it. ``un`` (9F37) only for the
    Mastercard SKD. ``arc`` (8A) for ARPC method 1; ``csu`` and ``proprietary_data`` for method 2.
    """

    pan: str
    psn: str
    option: emv.MasterKeyOption
    method: emv.SessionKeyMethod
    atc: bytes
    data: bytes
    arqc: bytes
    un: bytes | None = None
    arpc: ArpcMethod = ArpcMethod.NONE
    arc: bytes = b""
    csu: bytes = b""
    proprietary_data: bytes = b""


def _check(d: ArqcData) -> None:
    if not isinstance(d, ArqcData) or not isinstance(d.arpc, ArpcMethod):
        raise InvalidInput("item", "an ArqcData")
    if not isinstance(d.arqc, (bytes, bytearray)) or len(d.arqc) != emv.AC_LENGTH:
        raise InvalidInput("arqc", f"{emv.AC_LENGTH} bytes")
    if not isinstance(d.data, (bytes, bytearray)) or len(d.data) < MIN_DATA:
        raise InvalidInput("transaction_data", f"at least {MIN_DATA} bytes (EMV Book 2 8.1.1's data elements)")
    if d.arpc is ArpcMethod.METHOD_1_CARD_KEY and d.method is not emv.SessionKeyMethod.MASTERCARD_SKD:
        raise InvalidInput("arpc_method_1.card_key", "only for the Mastercard SKD (M/Chip 4 CVN 16 and 17)")
    if d.arpc in _METHOD_1 and len(d.arc) != 2:
        raise InvalidInput("arc", "2 bytes for ARPC method 1")
    if d.arpc is ArpcMethod.METHOD_2 and len(d.csu) != 4:
        raise InvalidInput("csu", "4 bytes for ARPC method 2")
    if d.arpc not in _METHOD_1 and d.arc:
        raise InvalidInput("arc", "only for ARPC method 1")
    if d.arpc is not ArpcMethod.METHOD_2 and (d.csu or d.proprietary_data):
        raise InvalidInput("csu", "only for ARPC method 2")


def card_key(imk: LoadedKey, *, pan: str, psn: str, option: emv.MasterKeyOption) -> bytes:
    """The card's (ICC master) key from the loaded IMK (annex A1.4), enciphered by the IMK's own
    cipher: the IMK's clear bytes are never taken out of the loaded key."""
    block = emv.master_key_block(pan=pan, psn=psn, option=option)
    enciphered = imk.encrypt(block)
    return enciphered if imk.algorithm is Algorithm.SM4 else adjust_odd_parity(enciphered)


def _tdes(imk: LoadedKey, d: ArqcData) -> bytes | None:
    mk = card_key(imk, pan=d.pan, psn=d.psn, option=d.option)
    sk = emv.derive_session_key(mk, method=d.method, atc=d.atc, un=d.un)
    computed = emv.compute_ac(sk, data=d.data, padding=d.method.ac_padding)
    if not compare.bytes_eq(computed, bytes(d.arqc)):
        return None
    if d.arpc in _METHOD_1:
        return emv.generate_arpc_method1(mk if d.arpc is ArpcMethod.METHOD_1_CARD_KEY else sk, arqc=d.arqc,
                                         arc=d.arc)
    if d.arpc is ArpcMethod.METHOD_2:
        return emv.generate_arpc_method2(sk, arqc=d.arqc, csu=d.csu, proprietary_data=d.proprietary_data)
    return b""


def _sm4(imk: LoadedKey, d: ArqcData) -> bytes | None:
    if d.method is not emv.SessionKeyMethod.EMV_CSK or d.un is not None:
        raise InvalidInput("method", "EMV_CSK, without an unpredictable number, under an SM4 IMK")
    mk = card_key(imk, pan=d.pan, psn=d.psn, option=d.option)
    sk = emvsm4.derive_session_key(mk, atc=d.atc)
    if not compare.bytes_eq(emvsm4.compute_ac(sk, data=d.data), bytes(d.arqc)):
        return None
    if d.arpc in _METHOD_1:
        return emvsm4.generate_arpc_method1(mk if d.arpc is ArpcMethod.METHOD_1_CARD_KEY else sk, arqc=d.arqc,
                                            arc=d.arc)
    if d.arpc is ArpcMethod.METHOD_2:
        return emvsm4.generate_arpc_method2(sk, arqc=d.arqc, csu=d.csu, proprietary_data=d.proprietary_data)
    return b""


def _verify(imk: LoadedKey, d: ArqcData) -> bytes | None:
    _check(d)
    if not isinstance(d.method, emv.SessionKeyMethod):
        raise InvalidInput("method", "a SessionKeyMethod")
    return _sm4(imk, d) if imk.algorithm is Algorithm.SM4 else _tdes(imk, d)


@dataclass(frozen=True, kw_only=True, repr=False)
class VerifyArqcs(HsmCommand[list[bytes | None | InvalidInput]]):
    """Each item's ARQC checked under its card's key from the IMK ``key``: the ARPC asked for
    (``b""`` for none) if it verifies, ``None`` if not, or the item's own ``InvalidInput``."""

    key: KeyCryptogram
    items: Sequence[ArqcData]

    def run(self, b: CommandBackend) -> list[bytes | None | InvalidInput]:
        b._capabilities.require(Command.CARD)
        if not isinstance(self.items, Sequence) or len(self.items) > MAX_BATCH_PINS:
            raise InvalidInput("items", f"at most {MAX_BATCH_PINS} per call")
        out: list[bytes | None | InvalidInput] = []
        with b._guard():
            imk = b._use(self.key, Operation.ARQC_VERIFY)
            for d in self.items:
                try:
                    out.append(_verify(imk, d))
                except InvalidInput as e:
                    out.append(e)
        return out
