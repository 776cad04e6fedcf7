"""The backend interface: payment-HSM commands on key cryptograms.

Inputs and outputs are keys under the LMK (:class:`KeyCryptogram`), keys under
a ZMK or TMK, PIN blocks under keys, MACs and ciphertexts: never a clear key or
a clear PIN. Clear key material exists only below this interface, inside a
backend. Every backend raises only :mod:`hsmsvc.errors` exceptions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import unique
from typing import Final, Mapping, Protocol, Sequence

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
    Padding,
    PinBlockFormat,
    Vocabulary,
)

__all__ = [
    "Backend",
    "Capabilities",
    "Command",
    "FieldParams",
    "KeyCryptogram",
    "KeyForm",
    "KeySpec",
    "MAX_RANDOM",
    "OneTimeKey",
    "PinKey",
    "PinTranslator",
    "StoredPin",
    "StoredPinMethod",
]

MAX_RANDOM: Final = 4096
"""The most bytes one :meth:`Backend.random` call gives."""
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


@unique
class KeyForm(Vocabulary):
    """How a key travels under a ZMK or TMK; decided by the KEK's usage."""

    ECB = "ECB"
    """Legacy: the key enciphered in ECB under a K0 KEK (ANSI X9.17 style)."""
    TR31 = "TR31"
    """A TR-31 key block under a K1 KEK (version B for TDES, D for AES)."""


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


PinKey = KeyCryptogram | OneTimeKey
"""What a PIN block arrives under: a stored TPK/ZPK, or a one-time key."""


class PinTranslator(Protocol):
    """:meth:`Backend.translate_pin` with its keys and formats bound: ``translator(block, pan)``."""

    def __call__(self, block: bytes, pan: str | None) -> bytes: ...


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

    def require(self, command: Command, *algorithms: Algorithm) -> None:
        """Raise ``Unsupported`` naming the command or algorithm that is missing."""
        if command not in self.commands:
            raise Unsupported("command", f"{command.value} is not supported by this backend")
        for a in algorithms:
            if a not in self.algorithms:
                raise Unsupported("algorithm", f"{command.value} with {a.value} is not supported by this backend")


class Backend(Protocol):
    """A payment-HSM command set. Implementations: soft, pkcs11, pool."""

    @property
    def capabilities(self) -> Capabilities: ...

    def lmk_kcv(self) -> bytes:
        """The LMK's key check value, which every pool member must share."""
        ...

    def generate_key(self, spec: KeySpec) -> KeyCryptogram: ...

    def form_key(
        self, spec: KeySpec, components: Sequence[bytes]
    ) -> tuple[KeyCryptogram, list[bytes]]:
        """XOR clear components (dual control) into a key; returns it and each component's KCV."""
        ...

    def check_component(self, ctk: KeyCryptogram, algorithm: Algorithm, wrapped: bytes, kcv: bytes) -> None:
        """Refuse a component (under a CTK's public half) that does not match its KCV."""
        ...

    def form_key_wrapped(
        self, spec: KeySpec, ctk: KeyCryptogram, parts: Sequence[tuple[bytes, bytes]]
    ) -> tuple[KeyCryptogram, list[bytes]]:
        """Form a key from (component under the CTK, its KCV) pairs; returns it and the KCVs."""
        ...

    def lmk_components(self, n: int) -> list[bytes]:
        """The LMK as ``n`` fresh random components (a backup ceremony)."""
        ...

    def translate_lmk(self, key: KeyCryptogram) -> KeyCryptogram:
        """``key`` moved from the old LMK (loaded for a migration) to the current one."""
        ...

    def import_key(
        self, kek: KeyCryptogram, wrapped: bytes, spec: KeySpec, kcv: bytes | None = None
    ) -> KeyCryptogram:
        """Take a key under a ZMK/TMK into the LMK; its form follows the KEK's usage."""
        ...

    def export_key(self, kek: KeyCryptogram, key: KeyCryptogram) -> bytes:
        """Wrap ``key`` under a ZMK/TMK in the form the KEK's usage names."""
        ...

    def kcv(self, key: KeyCryptogram) -> bytes: ...

    def key_sync_mac(self, kek: KeyCryptogram, data: bytes) -> bytes:
        """CMAC of a key-change message under a MAC key derived from a ZMK or TMK."""
        ...

    def public_key(self, key: KeyCryptogram) -> bytes:
        """A KTK's public half as SubjectPublicKeyInfo DER."""
        ...

    def translate_pin(
        self,
        block: bytes,
        src: PinKey,
        src_format: PinBlockFormat,
        dst: KeyCryptogram,
        dst_format: PinBlockFormat,
        pan: str | None,
    ) -> bytes: ...

    def translate_pins(
        self,
        blocks: bytes,
        src: KeyCryptogram,
        src_format: PinBlockFormat,
        dst: KeyCryptogram,
        dst_format: PinBlockFormat,
        pans: Sequence[str | None],
    ) -> PinBatch:
        """:meth:`translate_pin` for blocks packed back to back, one per PAN, under one key pair."""
        ...

    def pin_translator(
        self, src: PinKey, src_format: PinBlockFormat, dst: KeyCryptogram, dst_format: PinBlockFormat,
    ) -> PinTranslator:
        """:meth:`translate_pin` bound to one key pair and format pair, for a caller that
        translates along the same route call after call; each call gives what
        :meth:`translate_pin` would, error for error."""
        ...

    def encrypt_pin_for_storage(
        self,
        block: bytes,
        key: PinKey,
        fmt: PinBlockFormat,
        pan: str | None,
        psk: KeyCryptogram,
        account: str,
    ) -> StoredPin: ...

    def verify_pin_stored(
        self,
        block: bytes,
        key: PinKey,
        fmt: PinBlockFormat,
        pan: str | None,
        psk: KeyCryptogram,
        account: str,
        stored: StoredPin,
    ) -> None: ...

    def verify_pins_stored(
        self,
        blocks: bytes,
        key: KeyCryptogram,
        fmt: PinBlockFormat,
        pans: Sequence[str | None],
        psk: KeyCryptogram,
        accounts: Sequence[str],
        stored: Sequence[StoredPin],
    ) -> list[bool | HsmsvcError]:
        """:meth:`verify_pin_stored` for blocks packed back to back, one per PAN, account and stored PIN,
        under one key and PSK. Per item ``True``, ``False`` or the item's own error; a key error
        refuses the batch."""
        ...

    def reencrypt_stored_pin(
        self, stored: StoredPin, old_psk: KeyCryptogram, new_psk: KeyCryptogram, account: str
    ) -> StoredPin: ...

    def reencrypt_stored_pins(
        self,
        old_psk: KeyCryptogram,
        new_psk: KeyCryptogram,
        rows: Sequence[tuple[bytes, str]],
        old_lmk: bool = False,
    ) -> list[bytes | None]:
        """A batch of (enciphered stored PIN, account) moved to ``new_psk`` (enciphered, or a digest PSK);
        ``None`` for a bad row. ``old_lmk``: ``old_psk`` is under the LMK being retired."""
        ...

    def compare_stored_pins(
        self,
        old_psk: KeyCryptogram,
        new_psk: KeyCryptogram,
        rows: Sequence[tuple[bytes, bytes, str]],
        old_lmk: bool = False,
    ) -> list[bool]:
        """Per (value under ``old_psk``, value under ``new_psk``, account): whether both hold one PIN."""
        ...

    def verify_pin_ibm3624(
        self,
        block: bytes,
        key: PinKey,
        fmt: PinBlockFormat,
        pan: str | None,
        pvk: KeyCryptogram,
        validation_data: str,
        offset: str,
    ) -> None:
        """IBM 3624 offset check with the decimalization table bound to ``pvk``."""
        ...

    def generate_pin_offset(
        self,
        block: bytes,
        key: PinKey,
        fmt: PinBlockFormat,
        pan: str | None,
        pvk: KeyCryptogram,
        validation_data: str,
    ) -> str: ...

    def generate_pvv(
        self,
        block: bytes,
        key: PinKey,
        fmt: PinBlockFormat,
        pan: str,
        pvk: KeyCryptogram,
        pvki: int,
    ) -> str: ...

    def verify_pin_pvv(
        self,
        block: bytes,
        key: PinKey,
        fmt: PinBlockFormat,
        pan: str,
        pvk: KeyCryptogram,
        pvki: int,
        pvv: str,
    ) -> None: ...

    def generate_mac(
        self, key: KeyCryptogram, data: bytes, algorithm: MacAlgorithm, padding: Padding
    ) -> bytes: ...

    def verify_mac(
        self, key: KeyCryptogram, data: bytes, mac: bytes, algorithm: MacAlgorithm, padding: Padding
    ) -> None:
        """Raise ``VerificationFailed`` unless ``mac`` is right (constant-time compare)."""
        ...

    def generate_macs(
        self, key: KeyCryptogram, messages: Sequence[bytes], algorithm: MacAlgorithm, padding: Padding
    ) -> list[bytes | InvalidInput]:
        """:meth:`generate_mac` of each message under one key, checked and loaded once:
        a full tag each, or the message's own ``InvalidInput``."""
        ...

    def verify_macs(
        self, key: KeyCryptogram, messages: Sequence[bytes], macs: Sequence[bytes], algorithm: MacAlgorithm,
        padding: Padding,
    ) -> list[bool | InvalidInput]:
        """:meth:`verify_mac` of each message and tag under one key: whether it verifies
        (constant-time compare), or the pair's own ``InvalidInput``."""
        ...

    def encrypt_data(self, key: KeyCryptogram, params: FieldParams, data: bytes) -> bytes:
        """Encipher one field under a DEK (padding applied inside)."""
        ...

    def encrypt_fields(
        self, key: KeyCryptogram, params: FieldParams, ivs: Sequence[bytes], plaintexts: Sequence[bytes]
    ) -> list[bytes | InvalidInput]:
        """:meth:`encrypt_data` of each field under one key, checked and loaded once: the mode,
        padding and AAD of ``params``, each field with its own IV from ``ivs`` (``params.iv`` is
        not used). A ciphertext each, or the field's own ``InvalidInput``."""
        ...

    def decrypt_data(self, key: KeyCryptogram, params: FieldParams, data: bytes) -> bytes: ...

    def reencrypt_data(
        self,
        src: KeyCryptogram,
        src_params: FieldParams,
        dst: KeyCryptogram,
        dst_params: FieldParams,
        data: bytes,
    ) -> bytes:
        """Decipher under ``src`` and encipher under ``dst``; the clear field stays inside."""
        ...

    def pan_hash(self, pan: str) -> bytes:
        """A keyed one-way token of a PAN (CMAC under the LMK), for counters keyed by card."""
        ...

    def pan_hashes(self, pans: Sequence[str]) -> list[bytes]:
        """:meth:`pan_hash` of each PAN; ``InvalidInput`` if any is not 11 to 19 digits."""
        ...

    def random(self, length: int) -> bytes:
        """``length`` random bytes, 1 to :data:`MAX_RANDOM`."""
        ...

    def audit_mac(self, data: bytes) -> bytes:
        """CMAC under the LMK of a domain-separated audit message."""
        ...

    def write_audit_anchor(self, seq: int, head: bytes, *, store: str = "") -> None:
        """Record the audit chain head of the store with id ``store`` outside the database (never moves back)."""
        ...

    def read_audit_anchor(self, *, store: str = "") -> tuple[int, bytes] | None: ...

    def forget(self, key_id: str) -> None:
        """Drop every cached unwrapped version of ``key_id`` (rotation, revocation)."""
        ...

    def close(self) -> None: ...


# Domain separation for the LMK's own MACs (none of these can collide with the
# TR-31 KDF inputs, which begin with a counter byte 0x01-0x04, nor with a KCV's
# all-zero block).
AUDIT_DOMAIN: Final = b"hsmsvc/audit/v1\x00"
ANCHOR_DOMAIN: Final = b"hsmsvc/audit-anchor/v1\x00"
STORE_ANCHOR_DOMAIN: Final = b"hsmsvc/audit-anchor/v2\x00"
"""An anchor bound to one store's id (v1 named no store, so two stores on one LMK clashed)."""
PAN_DOMAIN: Final = b"hsmsvc/pan-hash/v1\x00"
KEY_SYNC_LABEL: Final = b"hsmsvc/ks-mac/v1"
"""Derivation data for the key-change MAC key (never an exported key: ECB exports use variants)."""
HMAC_FOR: Final[Mapping[Algorithm, MacAlgorithm]] = {
    Algorithm.AES_256: MacAlgorithm.HMAC_SHA256,
    Algorithm.SM4: MacAlgorithm.HMAC_SM3,
}
