"""EMV issuer script commands inside the backend (issue 35): script MACs, enciphered script data
and the offline PIN change (EMV 4.3 Book 2 section 9, Book 3 PIN CHANGE/UNBLOCK).

The card's integrity and confidentiality keys are derived from IMKs of usage E2 and E1 and the
card's PAN and PSN (annex A1.4), then their session keys by the scheme's method (A1.3.1 with the
ARQC as R, or Visa's ATC method), in one command. The command answers the whole script command:
CLA INS P1 P2, an Lc it computes, the (enciphered) data and the MAC.

A PIN change deciphers the customer's new PIN block under its PIN key inside the command and
enciphers the card's PIN block under the card's confidentiality key. Any fault after the decryption
is the one ``InvalidPinBlock``, and every refusal that names a field is made before it.

The same confidentiality key enciphers a script's data, which the caller chooses: enciphered, a
format 2 block of every PIN would be a codebook for the PIN changes that key makes (an adversarial
review recovered PINs so). So no block the cipher takes from a script's data may be a well-formed
format 2 PIN block (after CBC chaining, and in the first half of an SM4 block), and a PIN change is
bound to its card: the PIN block's PAN is the script's. A session key R of the EMV common
derivation is refused when it has the form of an application cryptogram key's (ATC || 00 00 ..., or
the Mastercard SKD's ATC || 00 00 || UN): with an E2 or E1 IMK of an E0 IMK's value, a script MAC
would otherwise be an ARQC.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from hsmsvc.crypto import _cipher, _validate, emv, emvsm4, pinblock
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


def _not_a_pin_block(block: bytes) -> None:
    """Refuse a cipher input block whose first 8 bytes are a well-formed format 2 PIN block."""
    try:
        pinblock.decode_iso2(block[:8])
    except InvalidInput:
        return
    raise InvalidInput("data", "holds a block of the form of a format 2 PIN block, which scripts never encipher")


def _check_plain(smc: LoadedKey, d: ScriptData, data: bytes) -> None:
    """The blocks the confidentiality key will encipher for ``data``, each checked: CBC (zero IV)
    chains each block's input with the previous ciphertext, so the check follows the cipher."""
    if smc.algorithm is Algorithm.SM4:
        padded = mac_pad(data, 16)
        blocks = _cbc_inputs(smc, d, padded, 16)
    elif d.encryption is emv.ScriptEncryption.VISA:
        padded = mac_pad(bytes([len(data)]) + data, 8)
        blocks = [padded[i:i + 8] for i in range(0, len(padded), 8)]
    else:
        whole = d.encryption is emv.ScriptEncryption.MASTERCARD and len(data) % 8 == 0
        padded = data if whole else mac_pad(data, 8)
        blocks = _cbc_inputs(smc, d, padded, 8)
    for block in blocks:
        _not_a_pin_block(block)


def mac_pad(data: bytes, size: int) -> bytes:
    """ISO/IEC 9797-1 padding method 2."""
    return data + b"\x80" + bytes(-(len(data) + 1) % size)


def _cbc_inputs(smc: LoadedKey, d: ScriptData, padded: bytes, size: int) -> list[bytes]:
    sk = _session(smc, d)
    alg = Algorithm.SM4 if smc.algorithm is Algorithm.SM4 else Algorithm.TDES_2KEY
    out, prev = [], bytes(size)
    cipher = _cipher.cbc_encrypt(alg, sk, bytes(size), padded)
    for i in range(0, len(padded), size):
        out.append(_cipher.xor(padded[i:i + size], prev))
        prev = cipher[i:i + size]
    return out


def _session(imk: LoadedKey, d: ScriptData) -> bytes:
    mk = card_key(imk, pan=d.pan, psn=d.psn, option=d.option)
    if imk.algorithm is Algorithm.SM4:
        if d.method is not emv.ScriptKeyMethod.EMV_CSK:
            raise InvalidInput("method", "EMV_CSK under an SM4 IMK")
        return emvsm4.derive_script_session_key(mk, arqc=d.arqc)
    if d.method is emv.ScriptKeyMethod.EMV_CSK:
        return emv.derive_script_session_key(mk, method=d.method, arqc=d.arqc)
    return emv.derive_script_session_key(mk, method=d.method, atc=d.atc)


def _encipher(smc: LoadedKey, d: ScriptData, data: bytes) -> bytes:
    sk = _session(smc, d)
    if smc.algorithm is Algorithm.SM4:
        return emvsm4.encrypt_script_data(sk, data=data)
    if d.encryption is None:
        raise InvalidInput("encryption", "EMV, MASTERCARD or VISA under a TDES IMK")
    return emv.encrypt_script_data(sk, data=data, encryption=d.encryption)


def _check(d: ScriptData, smi: LoadedKey, smc: LoadedKey | None) -> None:
    """Every refusal of the script's own fields, made before anything is deciphered."""
    if not isinstance(d, ScriptData) or not isinstance(d.method, emv.ScriptKeyMethod):
        raise InvalidInput("script", "a ScriptData")
    _validate.length(d.command, "command", (4,))
    _validate.length(d.atc, "atc", (2,))
    arqc = _validate.length(d.arqc, "arqc", (emv.AC_LENGTH,))
    emv.script_mac_length(d.mac_length)
    if d.method is emv.ScriptKeyMethod.EMV_CSK and arqc[2:4] == bytes(2):
        raise InvalidInput("arqc", "not of the form of an application cryptogram's session key input")
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
    """An issuer script command: ``script.data`` enciphered under the card's confidentiality key
    from ``smc`` when given (else sent in clear), MACed under its integrity key from ``smi``."""

    smi: KeyCryptogram
    smc: KeyCryptogram | None
    script: ScriptData

    def run(self, b: CommandBackend) -> bytes:
        b._capabilities.require(Command.CARD)
        d = self.script
        with b._guard():
            smi = b._use(self.smi, Operation.SCRIPT_MAC)
            smc = None if self.smc is None else b._use(self.smc, Operation.SCRIPT_ENCRYPT)
            _check(d, smi, smc)
            data = bytes(d.data)
            if smc is not None:
                if smc.algorithm is not Algorithm.SM4 and d.encryption is None:
                    raise InvalidInput("encryption", "EMV, MASTERCARD or VISA under a TDES IMK")
                _check_plain(smc, d, data)
                data = _encipher(smc, d, data)
            elif d.encryption is not None:
                raise InvalidInput("smc_key", f"required to encipher ({d.encryption.value})")
            return _command(smi, d, data)


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
            if not self.pin.pan or self.pin.pan != d.pan or (self.current is not None and (
                    self.current.pan != d.pan or self.current.format is not self.pin.format)):
                raise InvalidInput("pan", "the script's card's PAN: a PIN changes only on its own card")
            if (ac is not None or self.current is not None) and (
                    smc.algorithm is Algorithm.SM4 or d.encryption is not emv.ScriptEncryption.VISA):
                raise InvalidInput("ac_key", "only for a Visa PIN change (VISA encryption) under a TDES IMK")
            if self.current is not None and ac is None:
                raise InvalidInput("ac_key", "required with the current PIN (the VIS block)")
            emv.script_mac_length(d.mac_length)
            make = _pin_change(smc, ac, d)
            # The PIN blocks last, so that every refusal above names its field before anything is
            # deciphered; from here every fault is the one InvalidPinBlock.
            pin = b._pin(self.pin, self.key)
            data = make(pin, None if self.current is None else b._pin(self.current, self.key))
            return _command(smi, d, data)
