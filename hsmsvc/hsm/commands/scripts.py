"""EMV issuer script commands inside the backend (issue 35): script MACs and the offline PIN change
(EMV 4.3 Book 2 section 9, Book 3 PIN CHANGE/UNBLOCK).

The card's integrity and confidentiality keys are derived from IMKs of usage E2 and E1 and the
card's PAN and PSN (annex A1.4), then their session keys by the scheme's method (A1.3.1 with the
ARQC as R, or Visa's ATC method), in one command. The command answers the whole script command:
CLA INS P1 P2, an Lc it computes, the data and the MAC.

A PIN change deciphers the customer's new PIN block under its PIN key inside the command and
enciphers the card's PIN block under the card's confidentiality key. Any fault after the decryption
is the one ``InvalidPinBlock``, and every refusal that names a field is made before it.

The confidentiality key enciphers PIN changes only, never data the caller chooses. Two adversarial
reviews recovered PINs from script data enciphered under it: a format 2 block of each PIN, then the
blocks a VISA encipherment makes of one (a length byte and the first 7 bytes), were a codebook for
the card's PIN changes, whatever checks the data passed. A PIN change is bound to its card (the
source block's PAN is the script's, and its format binds a PAN). A session key R of the EMV common
derivation is refused when its fourth byte is zero, the form of an application cryptogram key's
(ATC || 00.., or the Mastercard SKD's ATC || 00 00 || UN; A1.3.1 overwrites the third): with an E2
or E1 IMK of an E0 IMK's value a script MAC would otherwise be an ARQC. A genuine cryptogram has a
zero there once in 256, and its script waits for the card's next online transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from hsmsvc.crypto import _validate, emv, emvsm4
from hsmsvc.errors import InvalidInput, KeyUsageViolation
from hsmsvc.hsm.commands.base import HsmCommand, LoadedKey
from hsmsvc.hsm.commands.emv import card_key
from hsmsvc.hsm.model import Command, KeyCryptogram, PinBlock, PinKey
from hsmsvc.hsm.policy import Operation
from hsmsvc.types import Algorithm

if TYPE_CHECKING:
    from hsmsvc.hsm.commands.core import CommandBackend

__all__ = ["GenerateIssuerScript", "GeneratePinChangeScript", "ScriptData"]


@dataclass(frozen=True, kw_only=True)
class ScriptData:
    """One issuer script command for one card and transaction.

    ``command`` is CLA INS P1 P2 (4 bytes; Lc is computed). ``method`` derives the session keys
    (EMV_CSK from ``arqc``; VISA from ``atc``). ``mac_over_transaction``: the MAC covers ATC || ARQC
    before the data (Visa, Mastercard M/Chip), or not (CCD, Interac). ``encryption``: how data is
    enciphered (``None``: sent in clear). An SM4 IMK takes EMV_CSK and its own encipherment.
    """

    pan: str
    psn: str
    option: emv.MasterKeyOption
    method: emv.ScriptKeyMethod
    atc: bytes
    arqc: bytes
    command: bytes
    data: bytes = b""
    encryption: emv.ScriptEncryption | None = None
    mac_over_transaction: bool = True
    mac_length: int = 8


def _session(imk: LoadedKey, d: ScriptData) -> bytes:
    mk = card_key(imk, pan=d.pan, psn=d.psn, option=d.option)
    if imk.algorithm is Algorithm.SM4:
        if d.method is not emv.ScriptKeyMethod.EMV_CSK:
            raise InvalidInput("method", "EMV_CSK under an SM4 IMK")
        return emvsm4.derive_script_session_key(mk, arqc=d.arqc)
    if d.method is emv.ScriptKeyMethod.EMV_CSK:
        return emv.derive_script_session_key(mk, method=d.method, arqc=d.arqc)
    return emv.derive_script_session_key(mk, method=d.method, atc=d.atc)


def _check(d: ScriptData, smi: LoadedKey, smc: LoadedKey | None) -> None:
    """Every refusal of the script's own fields, made before anything is deciphered."""
    if not isinstance(d, ScriptData) or not isinstance(d.method, emv.ScriptKeyMethod):
        raise InvalidInput("script", "a ScriptData")
    _validate.length(d.command, "command", (4,))
    _validate.length(d.atc, "atc", (2,))
    arqc = _validate.length(d.arqc, "arqc", (emv.AC_LENGTH,))
    emv.script_mac_length(d.mac_length)
    if d.method is emv.ScriptKeyMethod.EMV_CSK and arqc[3] == 0:
        raise InvalidInput("arqc", "not of the form of an application cryptogram's session key input "
                                   "(its fourth byte is zero): the script waits for the next transaction")
    if smc is not None and smc.algorithm is not smi.algorithm:
        raise KeyUsageViolation("smc_key", "of the integrity IMK's algorithm")


def _command(smi: LoadedKey, d: ScriptData, data: bytes) -> bytes:
    """CLA INS P1 P2 Lc || data || MAC, the MAC over the header (with Lc), [ATC || ARQC] and the data."""
    n = emv.script_mac_length(d.mac_length)
    if len(data) + n > 255:
        raise InvalidInput("data", "the command's data and MAC in 255 bytes")
    header = bytes(d.command) + bytes([len(data) + n])
    atc, arqc = (d.atc, d.arqc) if d.mac_over_transaction else (None, None)
    sk = _session(smi, d)
    if smi.algorithm is Algorithm.SM4:
        tag = emvsm4.generate_script_mac(sk, header=header, data=data, atc=atc, arqc=arqc, length=n)
    else:
        tag = emv.generate_script_mac(sk, header=header, data=data, atc=atc, arqc=arqc, length=n)
    return header + data + tag


@dataclass(frozen=True, kw_only=True, repr=False)
class GenerateIssuerScript(HsmCommand[bytes]):
    """An issuer script command: ``script.data`` in clear, MACed under the card's integrity key from
    ``smi``. Nothing here enciphers: the confidentiality key is the PIN change's alone."""

    smi: KeyCryptogram
    script: ScriptData

    def run(self, b: CommandBackend) -> bytes:
        b._capabilities.require(Command.CARD)
        d = self.script
        if d.encryption is not None:
            raise InvalidInput("encryption", "none: script data is sent in clear; only a PIN change is enciphered")
        with b._guard():
            smi = b._use(self.smi, Operation.SCRIPT_MAC)
            _check(d, smi, None)
            return _command(smi, d, bytes(d.data))


def _pin_change(smc: LoadedKey, ac: LoadedKey | None, d: ScriptData) -> Callable[[str, str | None], bytes]:
    """How the new PIN (and the current one) become the command's data: every key derived, and every
    refusal made, before a PIN block is deciphered."""
    sk = _session(smc, d)
    if ac is not None:
        mk_ac = card_key(ac, pan=d.pan, psn=d.psn, option=d.option)
        return lambda pin, current: emv.encrypt_visa_pin_change(sk, icc_master_key_ac=mk_ac, pin=pin,
                                                                current_pin=current)
    if smc.algorithm is Algorithm.SM4:
        return lambda pin, _: emvsm4.encrypt_pin_change(sk, pin=pin)
    encryption = d.encryption
    if encryption is None:
        raise InvalidInput("encryption", "EMV, MASTERCARD or VISA under a TDES IMK")
    return lambda pin, _: emv.encrypt_pin_change(sk, pin=pin, encryption=encryption)


@dataclass(frozen=True, kw_only=True, repr=False)
class GeneratePinChangeScript(HsmCommand[bytes]):
    """The offline PIN change command (Book 3 PIN CHANGE/UNBLOCK) for ``pin``, the customer's new PIN
    block under ``key``: the card's PIN block enciphered under its confidentiality key and MACed.

    Under a TDES IMK with ``script.encryption`` VISA and ``ac`` (an E0 IMK) given, the VIS block:
    masked by the card's AC key and, with ``current``, by the current PIN (CVN 10 and 18). Otherwise
    the format 2 block of the new PIN, enciphered as the scheme does (Mastercard, CCD, Visa CVN 22,
    PBOC with SM4).
    """

    pin: PinBlock
    key: PinKey
    smi: KeyCryptogram
    smc: KeyCryptogram
    script: ScriptData
    ac: KeyCryptogram | None = None
    current: PinBlock | None = None

    def run(self, b: CommandBackend) -> bytes:
        b._capabilities.require(Command.CARD)
        d = self.script
        if d.data:
            raise InvalidInput("data", "none: the command's data is the PIN")
        with b._guard():
            smi = b._use(self.smi, Operation.SCRIPT_MAC)
            smc = b._use(self.smc, Operation.SCRIPT_ENCRYPT)
            _check(d, smi, smc)
            ac = None if self.ac is None else b._use(self.ac, Operation.VISA_PIN_CHANGE_MASK)
            if ac is not None and ac.algorithm is not Algorithm.TDES_2KEY:
                raise KeyUsageViolation("ac_key", "a two-key TDES IMK: the VIS block is masked by a TDES card key")
            b._check_translation(self.pin.format, self.pin.format)
            if not self.pin.format.pan_bound:
                raise InvalidInput("format", "a PAN-bound format: a PIN changes only on its own card")
            if not self.pin.pan or self.pin.pan != d.pan or (self.current is not None and (
                    self.current.pan != d.pan or self.current.format is not self.pin.format)):
                raise InvalidInput("pan", "the script's card's PAN: a PIN changes only on its own card")
            if (ac is not None or self.current is not None) and (
                    smc.algorithm is Algorithm.SM4 or d.encryption is not emv.ScriptEncryption.VISA):
                raise InvalidInput("ac_key", "only for a Visa PIN change (VISA encryption) under a TDES IMK")
            if self.current is not None and ac is None:
                raise InvalidInput("ac_key", "required with the current PIN (the VIS block)")
            make = _pin_change(smc, ac, d)
            # The PIN blocks last, so that every refusal above names its field before anything is
            # deciphered; from here every fault is the one InvalidPinBlock.
            pin = b._pin(self.pin, self.key)
            data = make(pin, None if self.current is None else b._pin(self.current, self.key))
            return _command(smi, d, data)
