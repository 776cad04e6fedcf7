"""DUKPT inside the backend: a transaction's working keys from a stored BDK and the terminal's KSN.

ANSI X9.24-1:2009 annex A under a two-key TDES BDK, ANSI X9.24-3:2017 clause 6 under an
AES BDK (``crypto/dukpt.py``, ``crypto/aesdukpt.py``). A derived key is made for one
command and dropped. A KSN the standard forbids is INVALID_ARGUMENT before anything is
deciphered: the KSN travels in clear beside the block, so refusing it tells nothing secret.

The host functions (issue 35) each use one direction's key, so that the host never makes what
the terminal makes: it checks request MACs and deciphers request data, and MACs and enciphers
responses. Under a TDES BDK those are the request and response variants of table A-1 (an
X9.24-1:2004 "both ways" key is the request one); under an AES BDK the key usages of X9.24-3
table 6 (the terminal's MAC generation and data encryption keys for requests, its MAC
verification and data decryption keys for responses, or the "both" ones).

A terminal's initial key (IPEK) leaves only as a TR-31 block of usage B1 under a K1 KEK: an ECB
form binds no usage, and an IPEK taken in as a DEK would encipher the data that derives every
future key of the terminal.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import unique
from typing import TYPE_CHECKING, Final

from hsmsvc.crypto import aesdukpt, compare, components, dukpt
from hsmsvc.errors import InvalidInput, KeyUsageViolation
from hsmsvc.hsm.commands.base import HsmCommand, LoadedKey, check_data
from hsmsvc.hsm.commands.keys import derived_kek, export_derived
from hsmsvc.hsm.model import Command, DukptKey, KeyCryptogram, KeySpec
from hsmsvc.hsm.policy import Operation
from hsmsvc.types import Algorithm, CipherMode, KeyType, KeyUsage, MacAlgorithm, ModeOfUse, Padding, Vocabulary

if TYPE_CHECKING:
    from hsmsvc.hsm.commands.core import CommandBackend

__all__ = [
    "DecryptDukptData", "DukptDirection", "EncryptDukptData", "ExportInitialKey", "GenerateDukptMac",
    "VerifyDukptMac", "pin_key",
]


@unique
class DukptDirection(Vocabulary):
    """Which of a transaction's MAC or data keys: the message's direction."""

    REQUEST = "REQUEST"
    """Terminal to host: the host verifies MACs and deciphers data."""
    RESPONSE = "RESPONSE"
    """Host to terminal: the host makes MACs and enciphers data."""
    BOTH = "BOTH"
    """One key for both directions (X9.24-3 "both"). Under a TDES BDK the request variant, which
    the host only checks and deciphers with."""


_TDES_MAC: Final = {DukptDirection.REQUEST: dukpt.TdesDukptKey.MAC_REQUEST,
                    DukptDirection.RESPONSE: dukpt.TdesDukptKey.MAC_RESPONSE,
                    DukptDirection.BOTH: dukpt.TdesDukptKey.MAC_REQUEST}
_TDES_DATA: Final = {DukptDirection.REQUEST: dukpt.TdesDukptKey.DATA_REQUEST,
                     DukptDirection.RESPONSE: dukpt.TdesDukptKey.DATA_RESPONSE,
                     DukptDirection.BOTH: dukpt.TdesDukptKey.DATA_REQUEST}
_AES_MAC: Final = {DukptDirection.REQUEST: aesdukpt.DukptKeyUsage.MAC_GENERATION,
                   DukptDirection.RESPONSE: aesdukpt.DukptKeyUsage.MAC_VERIFICATION,
                   DukptDirection.BOTH: aesdukpt.DukptKeyUsage.MAC_BOTH}
_AES_DATA: Final = {DukptDirection.REQUEST: aesdukpt.DukptKeyUsage.DATA_ENCRYPT,
                    DukptDirection.RESPONSE: aesdukpt.DukptKeyUsage.DATA_DECRYPT,
                    DukptDirection.BOTH: aesdukpt.DukptKeyUsage.DATA_BOTH}
# What the host may do with each direction's key: never what the terminal does with it.
_HOST_MAKES: Final = frozenset({DukptDirection.RESPONSE, DukptDirection.BOTH})
_HOST_CHECKS: Final = frozenset({DukptDirection.REQUEST, DukptDirection.BOTH})


def _check(key: DukptKey) -> None:
    if not isinstance(key, DukptKey) or not isinstance(key.ksn, (bytes, bytearray)):
        raise InvalidInput("ksn", "bytes")
    if key.algorithm is not None and not isinstance(key.algorithm, Algorithm):
        raise InvalidInput("key_algorithm", "an algorithm")


def _derive(b: CommandBackend, key: DukptKey, op: Operation, *, tdes: dukpt.TdesDukptKey,
            aes: aesdukpt.DukptKeyUsage, field: str, tdes_refusal: str | None = None) -> tuple[Algorithm, bytes]:
    """The algorithm and clear bytes of ``key``'s working key of the given kind; ``tdes_refusal``: why
    a TDES BDK may not give it (a both-ways key that is really the request key)."""
    b._capabilities.require(Command.DUKPT)
    _check(key)
    bdk = b._use(key.bdk, op)
    if bdk.algorithm.is_tdes:
        if tdes_refusal is not None:
            raise KeyUsageViolation("direction", tdes_refusal)
        if key.algorithm is not None:
            raise InvalidInput(field, "unset under a TDES BDK: X9.24-1's working keys are two-key TDES")
        clear = dukpt.derive(bdk=b._clear(bdk), ksn=dukpt.TdesKsn.parse(bytes(key.ksn)), kind=tdes)
        # DES ignores parity; the transient key is checked as any TDES key is.
        return Algorithm.TDES_2KEY, components.adjust_odd_parity(clear)
    if key.algorithm is None:
        raise InvalidInput(field, "required under an AES BDK (X9.24-3 names the working key's type)")
    clear = aesdukpt.derive(bdk=b._clear(bdk), ksn=aesdukpt.AesKsn.parse(bytes(key.ksn)), usage=aes,
                            key_type=key.algorithm)
    return key.algorithm, components.adjust_odd_parity(clear) if key.algorithm.is_tdes else clear


def pin_key(b: CommandBackend, key: DukptKey) -> tuple[Algorithm, bytes]:
    """The algorithm and clear bytes of ``key``'s PIN encryption key, for ``b._transient``."""
    return _derive(b, key, Operation.DUKPT_PIN_DECRYPT, tdes=dukpt.TdesDukptKey.PIN,
                   aes=aesdukpt.DukptKeyUsage.PIN_ENCRYPTION, field="pin_key_algorithm")


def _direction(direction: DukptDirection, allowed: frozenset[DukptDirection], what: str) -> DukptDirection:
    if not isinstance(direction, DukptDirection):
        raise InvalidInput("direction", "REQUEST, RESPONSE or BOTH")
    if direction not in allowed:
        raise KeyUsageViolation("direction", f"the host does not {what} with the terminal's {direction.value} key")
    return direction


def _both_refusal(direction: DukptDirection, op: Operation) -> str | None:
    """Under a TDES BDK a both-ways key is the request key (X9.24-1:2004 had one MAC and one data
    variant): the host checks and deciphers with it, and never makes or enciphers with it, which
    would forge what the terminal sends (an adversarial review found it)."""
    if direction is DukptDirection.BOTH and op in (Operation.DUKPT_MAC_GENERATE, Operation.DUKPT_DATA_ENCRYPT):
        return "BOTH under a TDES BDK is the terminal's request key: the host does not make with it"
    return None


def _mac_key(b: CommandBackend, key: DukptKey, direction: DukptDirection, op: Operation) -> LoadedKey:
    alg, clear = _derive(b, key, op, tdes=_TDES_MAC[direction], aes=_AES_MAC[direction], field="key_algorithm",
                         tdes_refusal=_both_refusal(direction, op))
    usage = KeyUsage.MAC_ISO9797_ALG3 if alg is Algorithm.TDES_2KEY else KeyUsage.MAC_CMAC
    return b._transient(alg, clear, KeySpec("dukpt-mac", 1, KeyType.MAK, alg, usage, ModeOfUse.MAC_GENERATE_VERIFY))


def _mac(k: LoadedKey, data: bytes, padding: Padding | None) -> bytes:
    """A two-key TDES working key MACs by ISO/IEC 9797-1 algorithm 3 (the X9.19 retail MAC, as the
    A.4 test data does), with the caller's padding; an AES or three-key TDES one by CMAC, which
    pads itself."""
    if k.spec.usage is KeyUsage.MAC_ISO9797_ALG3:
        if padding is not Padding.METHOD_1 and padding is not Padding.METHOD_2:
            raise InvalidInput("padding", "ISO/IEC 9797-1 padding method 1 or 2 under a two-key TDES MAC key")
        return k.mac(MacAlgorithm.ISO9797_ALG3, padding, data)
    if padding is not None:
        raise InvalidInput("padding", "none: CMAC pads itself")
    return k.mac(MacAlgorithm.CMAC, Padding.METHOD_1, data)


@dataclass(frozen=True, kw_only=True, repr=False)
class GenerateDukptMac(HsmCommand[bytes]):
    """The full MAC of ``data`` under the transaction's response (or both-ways) MAC key."""

    key: DukptKey
    direction: DukptDirection
    data: bytes
    padding: Padding | None = None

    def run(self, b: CommandBackend) -> bytes:
        d = _direction(self.direction, _HOST_MAKES, "make MACs")
        check_data(self.data)
        with b._guard():
            return _mac(_mac_key(b, self.key, d, Operation.DUKPT_MAC_GENERATE), bytes(self.data), self.padding)


@dataclass(frozen=True, kw_only=True, repr=False)
class VerifyDukptMac(HsmCommand[bool]):
    """Whether ``mac`` (4 bytes up to a block, its leftmost part) is ``data``'s under the transaction's
    request (or both-ways) MAC key: compared in constant time."""

    key: DukptKey
    direction: DukptDirection
    data: bytes
    mac: bytes
    padding: Padding | None = None

    def run(self, b: CommandBackend) -> bool:
        d = _direction(self.direction, _HOST_CHECKS, "check MACs")
        check_data(self.data)
        with b._guard():
            k = _mac_key(b, self.key, d, Operation.DUKPT_MAC_VERIFY)
            if not isinstance(self.mac, (bytes, bytearray)) or not 4 <= len(self.mac) <= k.algorithm.block_size:
                raise InvalidInput("mac", f"4 to {k.algorithm.block_size} bytes")
            computed = _mac(k, bytes(self.data), self.padding)
        return compare.bytes_eq(computed[: len(self.mac)], bytes(self.mac))


def _data_key(b: CommandBackend, key: DukptKey, direction: DukptDirection, op: Operation) -> LoadedKey:
    alg, clear = _derive(b, key, op, tdes=_TDES_DATA[direction], aes=_AES_DATA[direction], field="key_algorithm",
                         tdes_refusal=_both_refusal(direction, op))
    return b._transient(alg, clear, KeySpec("dukpt-data", 1, KeyType.DEK, alg, KeyUsage.DATA,
                                            ModeOfUse.ENCRYPT_DECRYPT))


def _cbc(k: LoadedKey, iv: bytes, data: bytes) -> tuple[bytes, bytes]:
    bs = k.algorithm.block_size
    if not isinstance(iv, (bytes, bytearray)) or len(iv) != bs:
        raise InvalidInput("iv", f"{bs} bytes")
    if not isinstance(data, (bytes, bytearray)) or not data or len(data) % bs or len(data) > 1 << 20:
        raise InvalidInput("data", f"whole {bs}-byte blocks, at most 1 MiB: the terminal pads its data")
    return bytes(iv), bytes(data)


def _cbc_command(b: CommandBackend, c: EncryptDukptData | DecryptDukptData, *, encrypt: bool) -> bytes:
    """The host enciphers with the response (or both-ways) data key and deciphers with the request one."""
    d = _direction(c.direction, _HOST_MAKES if encrypt else _HOST_CHECKS, "encipher" if encrypt else "decipher")
    with b._guard():
        k = _data_key(b, c.key, d, Operation.DUKPT_DATA_ENCRYPT if encrypt else Operation.DUKPT_DATA_DECRYPT)
        iv, data = _cbc(k, c.iv, c.data)
        return (k.field_encrypt if encrypt else k.field_decrypt)(CipherMode.CBC, iv, data, b"")


@dataclass(frozen=True, kw_only=True, repr=False)
class EncryptDukptData(HsmCommand[bytes]):
    """``data`` (whole blocks) enciphered in CBC mode under the transaction's response (or both-ways)
    data key: the TDES data key of figure A-2, or the X9.24-3 data decryption key."""

    key: DukptKey
    direction: DukptDirection
    iv: bytes
    data: bytes

    def run(self, b: CommandBackend) -> bytes:
        return _cbc_command(b, self, encrypt=True)


@dataclass(frozen=True, kw_only=True, repr=False)
class DecryptDukptData(HsmCommand[bytes]):
    """``data`` (whole blocks) deciphered in CBC mode under the transaction's request (or both-ways)
    data key."""

    key: DukptKey
    direction: DukptDirection
    iv: bytes
    data: bytes

    def run(self, b: CommandBackend) -> bytes:
        return _cbc_command(b, self, encrypt=False)


@dataclass(frozen=True, kw_only=True, repr=False)
class ExportInitialKey(HsmCommand[tuple[bytes, bytes]]):
    """A terminal's initial key from the BDK ``bdk``, as a TR-31 block (usage B1, mode X) under the
    K1 KEK ``kek``, and its KCV (the key loader checks it): for a TDES BDK ``initial`` is the
    terminal's initial KSN (10 bytes, counter 0; X9.24-1 A.6), for an AES BDK its initial key ID
    (8 bytes; X9.24-3 6.3.1)."""

    bdk: KeyCryptogram
    kek: KeyCryptogram
    initial: bytes

    def run(self, b: CommandBackend) -> tuple[bytes, bytes]:
        b._capabilities.require(Command.DUKPT)
        b._capabilities.require(Command.EXPORT_KEY, self.kek.spec.algorithm)
        if not isinstance(self.initial, (bytes, bytearray)):
            raise InvalidInput("initial_key_id", "bytes")
        with b._guard():
            k = derived_kek(b, self.kek, "an initial key", KeyType.IPEK)
            bdk = b._use(self.bdk, Operation.DUKPT_INITIAL_KEY_EXPORT)
            if bdk.algorithm.is_tdes:
                initial = bytes(self.initial)
                if len(initial) != dukpt.KSN_LENGTH or dukpt.initial_ksn(initial) != initial:
                    raise InvalidInput("initial_key_id", "the terminal's initial KSN: 10 bytes, its counter 0")
                clear = components.adjust_odd_parity(dukpt.initial_key(bdk=b._clear(bdk), ksn=initial))
            else:
                clear = aesdukpt.initial_key(bdk=b._clear(bdk), initial_key_id=bytes(self.initial))
            spec = KeySpec("dukpt-ipek", 1, KeyType.IPEK, bdk.algorithm, KeyUsage.DUKPT_INITIAL_KEY,
                           ModeOfUse.DERIVE)
            return export_derived(b, k, spec, clear)
