"""The hsm layer's value objects: what crosses the backend interface.

Keys under the LMK (:class:`KeyCryptogram`) with the attributes they are bound
to (:class:`KeySpec`), one-time keys under a KTK, PIN blocks, PINs at rest and
field parameters: never a clear key or a clear PIN. The commands that take
them are in :mod:`hsmsvc.hsm.commands`; the interface is :mod:`hsmsvc.hsm.backend`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import unique
from typing import Final, Protocol

from hsmsvc.errors import HsmsvcError, InvalidInput, Unsupported
from hsmsvc.hsm import policy
from hsmsvc.types import (
    Algorithm,
    CipherMode,
    DataPadding,
    Exportability,
    KeyType,
    KeyUsage,
    MacAlgorithm,
    ModeOfUse,
    PinBlockFormat,
    Vocabulary,
)

__all__ = [
    "BlockTemplate",
    "Capabilities",
    "Command",
    "FieldParams",
    "KeyCryptogram",
    "KeyForm",
    "KeySpec",
    "LegacyForm",
    "MAX_RANDOM",
    "DukptKey",
    "OneTimeKey",
    "PinBatch",
    "PinBlock",
    "PinKey",
    "PinTranslator",
    "PinVerifier",
    "StoredPin",
    "StoredPinMethod",
]

MAX_RANDOM: Final = 4096
"""The most bytes one :class:`~hsmsvc.hsm.commands.data.Random` gives."""
_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_ZONE: Final = re.compile(r"[A-Za-z0-9._:-]{0,64}")


@unique
class Command(Vocabulary):
    """The backend's commands, for capability declarations and refusals."""

    GENERATE_KEY = "GENERATE_KEY"
    FORM_KEY = "FORM_KEY"
    IMPORT_KEY = "IMPORT_KEY"
    EXPORT_KEY = "EXPORT_KEY"
    KCV = "KCV"
    TRANSLATE_PIN = "TRANSLATE_PIN"
    VERIFY_PIN_STORED = "VERIFY_PIN_STORED"
    VERIFY_PIN_IBM3624 = "VERIFY_PIN_IBM3624"
    VERIFY_PIN_PVV = "VERIFY_PIN_PVV"
    GENERATE_PIN_OFFSET = "GENERATE_PIN_OFFSET"
    GENERATE_PVV = "GENERATE_PVV"
    ENCRYPT_PIN_FOR_STORAGE = "ENCRYPT_PIN_FOR_STORAGE"
    REENCRYPT_STORED_PIN = "REENCRYPT_STORED_PIN"
    GENERATE_MAC = "GENERATE_MAC"
    VERIFY_MAC = "VERIFY_MAC"
    ENCRYPT_DATA = "ENCRYPT_DATA"
    DECRYPT_DATA = "DECRYPT_DATA"
    REENCRYPT_DATA = "REENCRYPT_DATA"
    RANDOM = "RANDOM"
    AUDIT_MAC = "AUDIT_MAC"
    PAN_HASH = "PAN_HASH"
    PUBLIC_KEY = "PUBLIC_KEY"
    KEY_SYNC_MAC = "KEY_SYNC_MAC"
    ONE_TIME_PIN_KEY = "ONE_TIME_PIN_KEY"
    """Take a PIN block under a one-time key wrapped under a KTK (004 clause 5.2.4(2))."""
    FORM_KEY_WRAPPED = "FORM_KEY_WRAPPED"
    """Form a key from custodians' components, each wrapped under a CTK (dual control)."""
    LMK_BACKUP = "LMK_BACKUP"
    """Give the LMK out as fresh random components, one per custodian."""
    LMK_TRANSLATE = "LMK_TRANSLATE"
    """Move a stored key from the old LMK (key change storage) to the current one."""
    KEY_AGREE = "KEY_AGREE"
    """Derive a key from a KAK and a partner's public key (ECDH, SP 800-56C one-step KDF)."""
    SIGN = "SIGN"
    """Sign and verify with a SIG, make its PKCS#10 request, bind a partner's public key."""
    COSIGN = "COSIGN"
    """Two-party SM2: the server's share of key generation, signing and decryption (CSK)."""
    DUKPT = "DUKPT"
    """Derive a DUKPT transaction's keys from a BDK inside the backend (X9.24-1, X9.24-3)."""
    CARD = "CARD"
    """Card values and EMV cryptograms under a CVK or an IMK, computed inside the backend (issue 35)."""


@unique
class KeyForm(Vocabulary):
    """How a key travels under a ZMK or TMK; decided by the KEK's usage."""

    ECB = "ECB"
    """Legacy: the key enciphered in ECB under a K0 KEK (ANSI X9.17 style)."""
    TR31 = "TR31"
    """A TR-31 key block under a K1 KEK (version B for TDES, D for AES)."""


@unique
class LegacyForm(Vocabulary):
    """The legacy (ECB) form a K0 ZMK or TMK exchanges keys in: chosen per KEK, opt-in.

    ``hsmsvc.crypto.legacy`` describes each; docs/architecture.md says why there are three.
    """

    NONE = "NONE"
    """TR-31 only: a K1 KEK, or a K0 KEK no form has been chosen for (it carries nothing)."""
    X917_ECB = "X917_ECB"
    """ANSI X9.17: the key ECB-enciphered under the KEK, no variant; the KCV is the check."""
    PAYSHIELD_VARIANT = "PAYSHIELD_VARIANT"
    """payShield key scheme U (double length) or T (triple length) under a double-length KEK."""
    HSMSVC_VARIANT = "HSMSVC_VARIANT"
    """hsmsvc's own key-type variant table (policy.ECB_VARIANTS): no partner uses it; ZMKs of old."""


@unique
class StoredPinMethod(Vocabulary):
    ENCRYPTED = "ENCRYPTED"
    """ISO 9564-1 format 4 (AES/SM4 PSK) or format 0 (TDES PSK) under the PSK."""
    DIGEST = "DIGEST"
    """HMAC of (label, account, PIN) under the PSK: one-way."""


@dataclass(frozen=True)
class KeySpec:
    """Everything a stored key is bound to. All of it is authenticated in the cryptogram."""

    key_id: str
    version: int
    key_type: KeyType
    algorithm: Algorithm
    usage: KeyUsage
    mode_of_use: ModeOfUse = ModeOfUse.NO_RESTRICTIONS
    exportability: Exportability = Exportability.NON_EXPORTABLE
    zone: str = ""
    decimalization_table: str = ""
    """IBM 3624 PVKs only: bound to the key, never taken from a request."""

    def __post_init__(self) -> None:
        if not isinstance(self.key_id, str) or not _ID.fullmatch(self.key_id):
            raise InvalidInput("key_id", "1-64 of A-Z a-z 0-9 . _ : -")
        if not isinstance(self.version, int) or not 1 <= self.version <= 99_999:
            raise InvalidInput("version", "1 to 99999")
        if not isinstance(self.zone, str) or not _ZONE.fullmatch(self.zone):
            raise InvalidInput("zone", "0-64 of A-Z a-z 0-9 . _ : -")
        for name, cls in (
            ("key_type", KeyType),
            ("algorithm", Algorithm),
            ("usage", KeyUsage),
            ("mode_of_use", ModeOfUse),
            ("exportability", Exportability),
        ):
            if not isinstance(getattr(self, name), cls):
                raise InvalidInput(name, f"a {cls.__name__}")
        policy.check_binding(self.key_type, self.usage, self.algorithm, self.mode_of_use)
        policy.check_decimalization_table(self.usage, self.decimalization_table)

    def attributes(self) -> str:
        """The canonical text of the binding, as authenticated in a cryptogram."""
        return (
            f"id={self.key_id};v={self.version};type={self.key_type.value};"
            f"alg={self.algorithm.value};use={self.usage.value};mode={self.mode_of_use.value};"
            f"exp={self.exportability.value};zone={self.zone}"
            + (f";dec={self.decimalization_table}" if self.decimalization_table else "")
        )

    @classmethod
    def parse(cls, text: str) -> KeySpec:
        """Inverse of :meth:`attributes`; ``ValueError`` if malformed."""
        fields = dict(part.split("=", 1) for part in text.split(";"))
        names = ["id", "v", "type", "alg", "use", "mode", "exp", "zone"]
        if list(fields) not in (names, names + ["dec"]):
            raise ValueError("attribute list")
        return cls(
            fields["id"],
            int(fields["v"]),
            KeyType(fields["type"]),
            Algorithm(fields["alg"]),
            KeyUsage(fields["use"]),
            ModeOfUse(fields["mode"]),
            Exportability(fields["exp"]),
            fields["zone"],
            fields.get("dec", ""),
        )


@dataclass(frozen=True, kw_only=True)
class BlockTemplate:
    """A :class:`KeySpec` but for the algorithm, which a TR-31 block's header gives (ImportKey with
    the template's algorithm unset, TR-31:2018 clause 5.1 table 1: the algorithm byte, with the
    verified key's length telling TDES_2KEY from TDES_3KEY and the AES sizes apart).

    Authorization needs only the key id and zone, which the block cannot change; the binding
    (:func:`policy.check_binding`) is checked on :meth:`with_algorithm`'s full spec, once the
    block's MAC has verified.
    """

    key_id: str
    version: int
    key_type: KeyType
    usage: KeyUsage
    mode_of_use: ModeOfUse
    exportability: Exportability
    zone: str = ""
    decimalization_table: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.key_id, str) or not _ID.fullmatch(self.key_id):
            raise InvalidInput("key_id", "1-64 of A-Z a-z 0-9 . _ : -")
        if not isinstance(self.zone, str) or not _ZONE.fullmatch(self.zone):
            raise InvalidInput("zone", "0-64 of A-Z a-z 0-9 . _ : -")
        for name, cls in (("key_type", KeyType), ("usage", KeyUsage), ("mode_of_use", ModeOfUse),
                          ("exportability", Exportability)):
            if not isinstance(getattr(self, name), cls):
                raise InvalidInput(name, f"a {cls.__name__}")
        if self.usage is KeyUsage.MAC_HMAC:
            # TR-31's H names no key size, so the header cannot give the algorithm.
            raise InvalidInput("template.algorithm", "required for an HMAC key (header algorithm H gives no size)")

    def with_algorithm(self, algorithm: Algorithm) -> KeySpec:
        return KeySpec(self.key_id, self.version, self.key_type, algorithm, self.usage, self.mode_of_use,
                       self.exportability, self.zone, self.decimalization_table)


@dataclass(frozen=True)
class KeyCryptogram:
    """A key under the LMK with the attributes it claims, and its KCV.

    ``blob`` is the backend's own form (a TR-31 key block for the soft backend,
    a token-wrapped key with an authenticated header for PKCS#11). A backend
    refuses a cryptogram whose authenticated attributes differ from ``spec``.
    """

    spec: KeySpec
    blob: bytes
    kcv: bytes

    def __repr__(self) -> str:
        s = self.spec
        return f"KeyCryptogram({s.key_id} v{s.version} {s.key_type.value} kcv={self.kcv.hex().upper()})"


@dataclass(frozen=True)
class OneTimeKey:
    """A terminal's one-time PIN key, wrapped under a KTK's public half.

    The bank design's terminals without an HSM (004 clause 5.2.4(2)) encipher
    the PIN block under a fresh key and send that key under the core's public
    key; the backend unwraps it and uses it for that one PIN block, in the same
    command, so the one-time key never exists outside the backend.
    """

    ktk: KeyCryptogram
    algorithm: Algorithm
    wrapped: bytes

    def __repr__(self) -> str:
        return f"OneTimeKey({self.algorithm.value} under {self.ktk!r})"


@dataclass(frozen=True)
class DukptKey:
    """A DUKPT transaction's working key (PIN, MAC or data): derived inside the backend from
    ``bdk`` and ``ksn``.

    X9.24-1:2009 annex A for a TDES BDK (``ksn`` of 10 bytes), X9.24-3:2017 clause 6
    for an AES BDK (12 bytes, and ``algorithm`` the working key's: the terminal's choice,
    no stronger than the BDK). The derived key is used for the one command and dropped.
    """

    bdk: KeyCryptogram
    ksn: bytes
    algorithm: Algorithm | None = None

    def __repr__(self) -> str:
        return f"DukptKey(under {self.bdk!r})"


PinKey = KeyCryptogram | OneTimeKey | DukptKey
"""What a PIN block arrives under: a stored TPK/ZPK, a one-time key, or a DUKPT transaction's key."""



@dataclass(frozen=True)
class PinBlock:
    """An enciphered PIN block (ISO 9564-1 clause 9.3) in ``format``, for the account ``pan``.

    ``pan`` is ``None`` for a format that binds no PAN (ISO 1). The block is checked where
    it is deciphered, inside a command, so a malformed one is refused like any other.
    """

    block: bytes
    format: PinBlockFormat
    pan: str | None

    def __repr__(self) -> str:
        return f"PinBlock({self.format.value})"  # neither the block nor the PAN


class PinTranslator(Protocol):
    """A prepared :class:`~hsmsvc.hsm.commands.pin.TranslatePin`, keys and formats bound:
    ``translator(block, pan)``."""

    def __call__(self, block: bytes, pan: str | None) -> bytes: ...


class PinVerifier(Protocol):
    """A prepared :class:`~hsmsvc.hsm.commands.storedpins.VerifyPinStored`, PIN key, format and PSK
    bound: ``verifier(block, pan, account, stored)``, ``VerificationFailed`` on a mismatch."""

    def __call__(self, block: bytes, pan: str | None, account: str, stored: StoredPin) -> None: ...


@dataclass(frozen=True)
class StoredPin:
    """A PIN at rest: enciphered or digested under a PSK, bound to one account."""

    method: StoredPinMethod
    value: bytes

    def __repr__(self) -> str:
        return f"StoredPin({self.method.value})"


@dataclass(frozen=True)
class PinBatch:
    """Translated PIN blocks back to back, zeros where an item failed, and each failure by index."""

    blocks: bytes
    errors: tuple[tuple[int, HsmsvcError], ...] = ()


@dataclass(frozen=True)
class FieldParams:
    """How one field is enciphered: mode, IV (empty for ECB), padding, GCM associated data."""

    mode: CipherMode
    iv: bytes
    padding: DataPadding
    aad: bytes = b""

    def __post_init__(self) -> None:
        if not isinstance(self.mode, CipherMode):
            raise InvalidInput("mode", "a CipherMode")
        if not isinstance(self.padding, DataPadding):
            raise InvalidInput("padding", "a DataPadding")
        if self.mode is CipherMode.GCM and self.padding is not DataPadding.NONE:
            raise InvalidInput("padding", "NONE with GCM")
        if not isinstance(self.iv, bytes) or not isinstance(self.aad, bytes) or len(self.aad) > 4096:
            raise InvalidInput("aad", "bytes, at most 4096")

    def __repr__(self) -> str:
        return f"FieldParams({self.mode.value}, {self.padding.value})"


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do; every pool member must declare the same."""

    commands: frozenset[Command]
    algorithms: frozenset[Algorithm]
    mac_algorithms: frozenset[MacAlgorithm]
    pin_formats: frozenset[PinBlockFormat]
    data_modes: frozenset[CipherMode] = frozenset({CipherMode.ECB, CipherMode.CBC})
    lmk: Algorithm = Algorithm.AES_256
    """The LMK's algorithm: the pool's members hold one LMK, so they agree on it too."""

    def require(self, command: Command, *algorithms: Algorithm) -> None:
        """Raise ``Unsupported`` naming the command or algorithm that is missing."""
        if command not in self.commands:
            raise Unsupported("command", f"{command.value} is not supported by this backend")
        for a in algorithms:
            if a not in self.algorithms:
                raise Unsupported("algorithm", f"{command.value} with {a.value} is not supported by this backend")
