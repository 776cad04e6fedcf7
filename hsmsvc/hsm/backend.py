"""The backend interface: payment-HSM commands on key cryptograms.

Inputs and outputs are keys under the LMK (:class:`KeyCryptogram`), keys under
a ZMK or TMK, PIN blocks under keys, MACs and ciphertexts: never a clear key or
a clear PIN. Clear key material exists only below this interface, inside a
backend. Every backend raises only :mod:`hsmsvc.errors` exceptions.
"""

from __future__ import annotations

from typing import Protocol, Sequence

from hsmsvc.errors import HsmsvcError, InvalidInput
from hsmsvc.hsm.model import (
    Capabilities,
    FieldParams,
    KeyCryptogram,
    KeySpec,
    PinBatch,
    PinKey,
    PinTranslator,
    StoredPin,
)
from hsmsvc.types import Algorithm, MacAlgorithm, Padding, PinBlockFormat

__all__ = ["Backend"]


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
