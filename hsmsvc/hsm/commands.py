"""The payment commands, written once over a backend's loaded keys.

A backend supplies how a cryptogram is verified and loaded (:meth:`_load`), how
a clear or fresh key is put under the LMK, how keys cross a ZMK/TMK, and the
LMK's own CMAC. Everything else (usage policy, PIN block handling, MAC lengths,
stored PINs) is here, so every backend behaves the same. Commands run under one
lock per backend: OpenSSL contexts and PKCS#11 sessions are not shared across
threads (see ``platform-notes.md``).
"""

from __future__ import annotations

import struct
import threading
from abc import ABC, abstractmethod
from typing import Any, Callable, Final, Protocol, Sequence

from hsmsvc.crypto import _compare, cmac, components, pindigest, pinblock
from hsmsvc.crypto import ibm3624, pvv as _pvv
from hsmsvc.crypto import _validate, fields
from hsmsvc.crypto._cipher import xor
from hsmsvc.errors import (
    HsmsvcError,
    InvalidInput,
    InvalidPinBlock,
    KeyUsageViolation,
    PermissionDenied,
    Unsupported,
    VerificationFailed,
)
from hsmsvc.hsm import policy
from hsmsvc.hsm.domains import (
    ANCHOR_DOMAIN,
    STORE_ANCHOR_DOMAIN,
    AUDIT_DOMAIN,
    HMAC_FOR,
    KEY_SYNC_LABEL,
    PAN_DOMAIN,
)
from hsmsvc.hsm.model import (
    MAX_RANDOM,
    Capabilities,
    Command,
    FieldParams,
    KeyCryptogram,
    PinBatch,
    KeySpec,
    OneTimeKey,
    PinKey,
    PinTranslator,
    StoredPin,
    StoredPinMethod,
)
from hsmsvc.hsm.policy import Operation
from hsmsvc.loopguard import may_block
from hsmsvc.types import (
    Algorithm,
    CipherMode,
    DataPadding,
    KeyUsage,
    MacAlgorithm,
    Padding,
    PinBlockFormat,
)

__all__ = ["CommandBackend", "LoadedKey", "STRENGTH"]

# Security strength in bits (NIST SP 800-57 part 1 rev. 5, table 2; SM4 as AES-128).
STRENGTH: Final = {
    Algorithm.TDES_2KEY: 80,
    Algorithm.TDES_3KEY: 112,
    Algorithm.AES_128: 128,
    Algorithm.AES_192: 192,
    Algorithm.AES_256: 256,
    Algorithm.SM4: 128,
    Algorithm.RSA_2048: 112,
    Algorithm.RSA_3072: 128,
    Algorithm.SM2: 128,
}
# Rows per reencrypt_stored_pins call: a chunk of a batch job, bounded in memory.
_MAX_BATCH_PINS: Final = 100_000
_PAN_HASH_LENGTHS: Final = frozenset(range(11, 20))  # 11: the digits a PVV uses

_MAC_LENGTHS: Final = {
    MacAlgorithm.HMAC_SHA256: (16, 32),
    MacAlgorithm.HMAC_SM3: (16, 32),
    MacAlgorithm.UNIONPAY_POS: (8, 8),
}


class LoadedKey(Protocol):
    """A key the backend has verified and can use; holds or references clear material."""

    @property
    def spec(self) -> KeySpec: ...

    @property
    def algorithm(self) -> Algorithm: ...

    def encrypt(self, data: bytes) -> bytes:
        """ECB encipherment of whole blocks."""
        ...

    def decrypt(self, data: bytes) -> bytes: ...

    def field_encrypt(self, mode: CipherMode, iv: bytes, data: bytes, aad: bytes) -> bytes:
        """Encipher a padded field (GCM: tag appended)."""
        ...

    def field_decrypt(self, mode: CipherMode, iv: bytes, data: bytes, aad: bytes) -> bytes: ...

    def mac(self, algorithm: MacAlgorithm, padding: Padding, data: bytes) -> bytes:
        """The full-length tag."""
        ...


def _check_block(block: bytes, fmt: PinBlockFormat) -> None:
    if not isinstance(fmt, PinBlockFormat):
        raise InvalidInput("pin_block_format", "a PinBlockFormat")
    if not isinstance(block, (bytes, bytearray)) or len(block) != fmt.block_size:
        raise InvalidInput("pin_block", f"{fmt.block_size} bytes for {fmt.value}")


def _storage_format(psk: LoadedKey) -> PinBlockFormat:
    return PinBlockFormat.ISO_4 if psk.algorithm.block_size == 16 else PinBlockFormat.ISO_0


def _check_mac(k: LoadedKey, algorithm: MacAlgorithm, mac: bytes) -> None:
    """A tag to verify is as long as the algorithm allows (truncation no shorter than 4 bytes)."""
    lo, hi = _MAC_LENGTHS.get(algorithm, (4, k.algorithm.block_size))
    if not isinstance(mac, (bytes, bytearray)) or not lo <= len(mac) <= hi:
        raise InvalidInput("mac", f"{lo} to {hi} bytes")


class _Guard:
    """``CommandBackend._guard``: a class, not a generator, as it is on every call's path."""

    __slots__ = ("_backend", "_lock")

    def __init__(self, backend: "CommandBackend") -> None:
        self._backend = backend
        self._lock = backend._lock

    def __enter__(self) -> None:
        if not self._lock.acquire(False):
            # Held by a command on another thread, which may run long (a key pair, a batch):
            # on the event loop, run this call off it rather than wait (loopguard).
            may_block()
            self._lock.acquire()

    def __exit__(self, kind: type[BaseException] | None, e: BaseException | None, tb: Any) -> None:
        self._lock.release()
        if e is None or isinstance(e, HsmsvcError) or not isinstance(e, Exception):
            return
        mapped = self._backend._translate(e)
        if mapped is not None:
            raise mapped from None


def _iso0_blocks(s: LoadedKey, d: LoadedKey, blocks: bytes,
                 pans: Sequence[str]) -> tuple[bytes, list[bool]] | None:
    """Format 0 blocks deciphered under ``s``, checked, re-enciphered under ``d``
    (``CommandBackend._run``); ``None`` for a malformed PAN anywhere."""
    plain = s.decrypt(blocks)
    try:
        good = pinblock.check_iso0_blocks(plain, pans)
    except (InvalidInput, TypeError):
        return None
    return d.encrypt(plain), good


def _iso4_blocks(s: LoadedKey, d: LoadedKey, blocks: bytes,
                 pans: Sequence[str]) -> tuple[bytes, list[bool]] | None:
    """Format 4 blocks deciphered under ``s``, checked, enciphered again under ``d`` with a fresh
    random half (ISO 9564-1 clause 9.3.6.4, P = D(K, D(K, C) XOR A), for a run); ``None`` for a
    malformed PAN anywhere."""
    try:
        a = pinblock.iso4_pan_fields(pans)
    except (InvalidInput, TypeError):
        return None
    plain = s.decrypt(xor(s.decrypt(blocks), a))
    good = pinblock.check_iso4_pin_fields(plain)
    return d.encrypt(xor(d.encrypt(pinblock.renew_iso4_pin_fields(plain)), a)), good


_Run = Callable[[LoadedKey, LoadedKey, bytes, Sequence[str]], "tuple[bytes, list[bool]] | None"]


def _run_form(src_format: PinBlockFormat, dst_format: PinBlockFormat, src: object, dst: object) -> _Run | None:
    """The whole-run translation for this pair, if it has one: format 0 between TDES keys, or
    format 4 between 128-bit block cipher keys, the PAN unchanged."""
    if src_format is not dst_format or type(src) is not KeyCryptogram or type(dst) is not KeyCryptogram:
        return None
    a, b = src.spec.algorithm, dst.spec.algorithm
    if src_format is PinBlockFormat.ISO_0 and a.is_tdes and b.is_tdes:
        return _iso0_blocks
    if src_format is PinBlockFormat.ISO_4 and a.block_size == 16 and b.block_size == 16:
        return _iso4_blocks
    return None


class _Translator:
    """``CommandBackend.pin_translator``: a route's two loaded keys, kept while the backend keeps them.

    The keys' bindings are checked when they are loaded (:meth:`CommandBackend._use`),
    which happens again after the backend drops any loaded key (a PKCS#11 object
    may be destroyed and its handle reused). A pair with a whole-run form
    (:func:`_run_form`) runs here; anything else, or a block or PAN that is not
    plainly well formed, takes :meth:`CommandBackend.translate_pin`, which
    names the fault.
    """

    __slots__ = ("_backend", "_dst", "_dst_format", "_form", "_generation", "_keys", "_size", "_src",
                 "_src_format")

    def __init__(self, backend: "CommandBackend", src: PinKey, src_format: PinBlockFormat, dst: KeyCryptogram,
                 dst_format: PinBlockFormat) -> None:
        backend._check_translation(src_format, dst_format)
        self._backend = backend
        self._src, self._src_format, self._dst, self._dst_format = src, src_format, dst, dst_format
        self._form = _run_form(src_format, dst_format, src, dst)
        self._size = src_format.block_size
        self._keys: tuple[LoadedKey, LoadedKey] | None = None
        self._generation = -1

    def __call__(self, block: bytes, pan: str | None) -> bytes:
        b = self._backend
        form = self._form
        if form is not None and type(block) is bytes and len(block) == self._size and type(pan) is str:
            with b._guard_cm:
                keys = self._keys
                if keys is None or self._generation != b._generation:
                    before = b._generation
                    keys = (b._use(self._src, Operation.PIN_DECRYPT),  # type: ignore[arg-type]
                            b._use(self._dst, Operation.PIN_ENCRYPT))
                    # Kept only if loading them dropped nothing, not even one of the two.
                    self._keys, self._generation = keys, (before if b._generation == before else -1)
                run = form(keys[0], keys[1], block, (pan,))
            if run is not None:
                if not run[1][0]:
                    raise InvalidPinBlock()
                return run[0]
        return b.translate_pin(block, self._src, self._src_format, self._dst, self._dst_format, pan)


class CommandBackend(ABC):
    """Base of the soft and PKCS#11 backends."""

    def __init__(self, capabilities: Capabilities) -> None:
        self._capabilities = capabilities
        self._lock = threading.RLock()
        self._guard_cm = _Guard(self)
        self._anchor_lock = threading.Lock()
        self._generation = 0
        """Moves whenever a loaded key is dropped (:meth:`_dropped`), for what holds loaded keys."""
        # Format pairs already found allowed: capabilities are fixed for a backend's life.
        self._translations: set[tuple[PinBlockFormat, PinBlockFormat]] = set()

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    # -- what a backend provides -------------------------------------------------

    @abstractmethod
    def _load(self, key: KeyCryptogram) -> LoadedKey:
        """Verify ``key``'s cryptogram against its spec and KCV, and load it (cached)."""

    @abstractmethod
    def _new_key(self, spec: KeySpec) -> KeyCryptogram: ...

    @abstractmethod
    def _seal_clear(self, spec: KeySpec, clear: bytes) -> KeyCryptogram: ...

    @abstractmethod
    def _import(self, kek: LoadedKey, wrapped: bytes, spec: KeySpec) -> KeyCryptogram: ...

    @abstractmethod
    def _export(self, kek: LoadedKey, key: LoadedKey) -> bytes: ...

    @abstractmethod
    def _lmk_cmac(self, data: bytes) -> bytes: ...

    def _transport_decrypt(self, ktk: LoadedKey, wrapped: bytes) -> bytes:
        """Unwrap bytes sent under a KTK's public half; one error for every fault."""
        raise Unsupported("command", f"{Command.ONE_TIME_PIN_KEY.value} is not supported by this backend")

    def _public_key(self, ktk: LoadedKey) -> bytes:
        raise Unsupported("command", f"{Command.PUBLIC_KEY.value} is not supported by this backend")

    def _transient(self, algorithm: Algorithm, clear: bytes) -> LoadedKey:
        """A key for one command only (a one-time PIN key), never stored or cached."""
        raise Unsupported("command", f"{Command.ONE_TIME_PIN_KEY.value} is not supported by this backend")

    def _lmk_split(self, n: int) -> list[bytes]:
        """The LMK as ``n`` fresh random components; only where the LMK may leave."""
        raise Unsupported("command", f"{Command.LMK_BACKUP.value} is not supported by this backend")

    def _translate_lmk(self, key: KeyCryptogram) -> KeyCryptogram:
        """Verify ``key`` under the old LMK and put it under the current one."""
        raise Unsupported("command", f"{Command.LMK_TRANSLATE.value} is not supported by this backend")

    def _load_old(self, key: KeyCryptogram) -> LoadedKey:
        """Verify ``key`` under the old LMK (key change storage) and load it, uncached."""
        raise Unsupported("command", f"{Command.LMK_TRANSLATE.value} is not supported by this backend")

    @abstractmethod
    def _random(self, length: int) -> bytes: ...

    @abstractmethod
    def _lmk_kcv(self) -> bytes: ...

    @abstractmethod
    def forget(self, key_id: str) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    # -- helpers -----------------------------------------------------------------

    def _dropped(self) -> None:
        """A subclass calls this, holding the lock, whenever it drops or destroys a loaded key."""
        self._generation += 1

    def _guard(self) -> "_Guard":
        """Hold the backend's lock; turn a library's exception into ours at this edge."""
        return self._guard_cm

    def _translate(self, error: Exception) -> HsmsvcError | None:
        """A backend maps its library's exceptions here; ``None`` lets one through (a bug)."""
        return None

    def _use(self, key: KeyCryptogram, op: Operation, *algs: Algorithm, old_lmk: bool = False) -> LoadedKey:
        if not isinstance(key, KeyCryptogram):
            raise InvalidInput("key", "a KeyCryptogram")
        s = key.spec
        # Refuse on the claimed attributes first, then again on the authenticated ones.
        policy.require(s.key_type, s.usage, s.mode_of_use, op, s.exportability)
        loaded = self._load_old(key) if old_lmk else self._load(key)
        ls = loaded.spec
        policy.require(ls.key_type, ls.usage, ls.mode_of_use, op, ls.exportability)
        return loaded

    def _pin(self, block: bytes, key: PinKey, fmt: PinBlockFormat, pan: str | None) -> str:
        _check_block(block, fmt)
        if isinstance(key, OneTimeKey):
            k = self._one_time(key)
        else:
            k = self._use(key, Operation.PIN_DECRYPT)
        return pinblock.decipher(fmt, k, bytes(block), pan)

    def _one_time(self, key: OneTimeKey) -> LoadedKey:
        """Unwrap a terminal's one-time PIN key (004 clause 5.2.4(2)).

        Whatever goes wrong after the KTK is accepted (OAEP or SM2 decoding, the
        key's length or TDES parts) is the same ``InvalidPinBlock`` a bad PIN
        block gives, so the unwrap is no oracle either (Manger, 2001).
        """
        self._capabilities.require(Command.ONE_TIME_PIN_KEY)
        alg = key.algorithm
        if not isinstance(alg, Algorithm) or alg.is_asymmetric or alg not in self._capabilities.algorithms:
            raise InvalidInput("one_time_key.algorithm", "a block cipher this backend supports")
        if not isinstance(key.wrapped, (bytes, bytearray)):
            raise InvalidInput("one_time_key.wrapped_key", "bytes")
        ktk = self._use(key.ktk, Operation.KEY_TRANSPORT_DECRYPT)
        if STRENGTH[alg] > STRENGTH[ktk.algorithm]:
            raise KeyUsageViolation("one_time_key", f"{alg.value} is stronger than the KTK that carries it (X9.24-1)")
        try:
            clear = self._transport_decrypt(ktk, bytes(key.wrapped))
            if alg.is_tdes:
                clear = components.adjust_odd_parity(clear)  # DES ignores parity; terminals rarely set it
            components.check_key(alg, clear)
        except InvalidInput:
            raise InvalidPinBlock() from None
        return self._transient(alg, clear)

    # -- commands ----------------------------------------------------------------

    def lmk_kcv(self) -> bytes:
        with self._guard():
            return self._lmk_kcv()

    def generate_key(self, spec: KeySpec) -> KeyCryptogram:
        self._capabilities.require(Command.GENERATE_KEY, spec.algorithm)
        with self._guard():
            return self._new_key(spec)

    def form_key(
        self, spec: KeySpec, parts: Sequence[bytes]
    ) -> tuple[KeyCryptogram, list[bytes]]:
        self._capabilities.require(Command.FORM_KEY, spec.algorithm)
        clear = components.combine(spec.algorithm, parts)
        with self._guard():
            return self._seal_clear(spec, clear), components.component_kcvs(spec.algorithm, parts)

    def _component(self, ctk: LoadedKey, algorithm: Algorithm, wrapped: bytes, check: bytes, field: str) -> bytes:
        """One custodian's clear component, unwrapped under the CTK and matched to its KCV.

        Every fault (OAEP or SM2 decoding, length, KCV) is the same refusal, so
        the unwrap answers no more than "this is not the component you named".
        """
        if not isinstance(wrapped, (bytes, bytearray)) or not 1 <= len(wrapped) <= 1024:
            raise InvalidInput(f"{field}.wrapped_component", "1 to 1024 bytes")
        if not isinstance(check, (bytes, bytearray)) or not 2 <= len(check) <= 8:
            raise InvalidInput(f"{field}.kcv", "2 to 8 bytes")
        try:
            clear = self._transport_decrypt(ctk, bytes(wrapped))
            ok = len(clear) == algorithm.key_length and _compare.bytes_eq(
                components.component_kcvs(algorithm, [clear])[0][: len(check)], bytes(check)
            )
        except InvalidInput:
            ok = False
        if not ok:
            raise VerificationFailed(f"{field}.kcv", "the component under the CTK does not have this KCV")
        return clear

    def _ctk(self, ctk: KeyCryptogram, algorithm: Algorithm) -> LoadedKey:
        self._capabilities.require(Command.FORM_KEY_WRAPPED, algorithm)
        if algorithm.is_asymmetric:
            raise InvalidInput("algorithm", "a key pair is generated, never formed from components")
        k = self._use(ctk, Operation.COMPONENT_DECRYPT)
        if STRENGTH[algorithm] > STRENGTH[k.algorithm]:
            raise KeyUsageViolation("transport_key", f"weaker than the {algorithm.value} key it would carry (X9.24-1)")
        return k

    def check_component(self, ctk: KeyCryptogram, algorithm: Algorithm, wrapped: bytes, kcv: bytes) -> None:
        with self._guard():
            self._component(self._ctk(ctk, algorithm), algorithm, wrapped, kcv, "component")

    def form_key_wrapped(
        self, spec: KeySpec, ctk: KeyCryptogram, parts: Sequence[tuple[bytes, bytes]]
    ) -> tuple[KeyCryptogram, list[bytes]]:
        if not 2 <= len(parts) <= 9:
            raise InvalidInput("components", "2 to 9 (dual control)")
        with self._guard():
            k = self._ctk(ctk, spec.algorithm)
            clear = [self._component(k, spec.algorithm, w, c, f"components[{i}]") for i, (w, c) in enumerate(parts)]
            kcvs = components.component_kcvs(spec.algorithm, clear)
            return self._seal_clear(spec, components.combine(spec.algorithm, clear)), kcvs

    def lmk_components(self, n: int) -> list[bytes]:
        self._capabilities.require(Command.LMK_BACKUP)
        if not isinstance(n, int) or not 2 <= n <= 9:
            raise InvalidInput("custodians", "2 to 9")
        with self._guard():
            return self._lmk_split(n)

    def translate_lmk(self, key: KeyCryptogram) -> KeyCryptogram:
        self._capabilities.require(Command.LMK_TRANSLATE)
        if not isinstance(key, KeyCryptogram):
            raise InvalidInput("key", "a KeyCryptogram")
        with self._guard():
            out = self._translate_lmk(key)
        if out.spec != key.spec or not _compare.bytes_eq(out.kcv, key.kcv):
            raise KeyUsageViolation("key", "changed in translation")
        return out

    def import_key(
        self, kek: KeyCryptogram, wrapped: bytes, spec: KeySpec, kcv: bytes | None = None
    ) -> KeyCryptogram:
        self._capabilities.require(Command.IMPORT_KEY, spec.algorithm, kek.spec.algorithm)
        if not isinstance(wrapped, (bytes, bytearray)) or not 8 <= len(wrapped) <= 9999:
            raise InvalidInput("wrapped_key", "8 to 9999 bytes")
        with self._guard():
            k = self._use(kek, Operation.KEY_IMPORT_UNDER)
            self._check_carry(k.spec, spec)
            out = self._import(k, bytes(wrapped), spec)
        if kcv is not None:
            if not isinstance(kcv, (bytes, bytearray)) or not 2 <= len(kcv) <= len(out.kcv):
                raise InvalidInput("kcv", f"2 to {len(out.kcv)} bytes")
            if not _compare.bytes_eq(out.kcv[: len(kcv)], bytes(kcv)):
                raise VerificationFailed("kcv", "does not match the imported key")
        return out

    def export_key(self, kek: KeyCryptogram, key: KeyCryptogram) -> bytes:
        self._capabilities.require(Command.EXPORT_KEY, key.spec.algorithm, kek.spec.algorithm)
        with self._guard():
            k = self._use(kek, Operation.KEY_EXPORT_UNDER)
            x = self._use(key, Operation.KEY_EXPORT)
            self._check_carry(k.spec, x.spec)
            return self._export(k, x)

    @staticmethod
    def _check_carry(kek: KeySpec, key: KeySpec) -> None:
        if key.key_type not in policy.EXPORTABLE_UNDER[kek.key_type]:
            raise KeyUsageViolation("kek", f"a {kek.key_type.value} may not carry a {key.key_type.value}")
        if STRENGTH[key.algorithm] > STRENGTH[kek.algorithm]:
            raise KeyUsageViolation("kek", "weaker than the key it would carry (X9.24-1)")

    def key_sync_mac(self, kek: KeyCryptogram, data: bytes) -> bytes:
        """CMAC (NIST SP 800-38B) under a key derived from a ZMK/TMK.

        The MAC key is the KEK's ECB encipherment of counter || label blocks, the
        derivation ANSI X9.24-3 uses for AES DUKPT; both sites derive the same key
        from the same ZMK and the ZMK itself never MACs.
        """
        self._capabilities.require(Command.KEY_SYNC_MAC)
        _check_data(data)
        with self._guard():
            k = self._use(kek, Operation.KEY_SYNC_MAC)
            alg, bs = k.algorithm, k.algorithm.block_size
            n = -(-alg.key_length // bs)
            blocks = b"".join((bytes([i + 1]) + KEY_SYNC_LABEL).ljust(bs, b"\x00")[:bs] for i in range(n))
            derived = k.encrypt(blocks)[: alg.key_length]
            if alg.is_tdes:
                derived = components.adjust_odd_parity(derived)
            return cmac.generate_cmac(alg, derived, bytes(data))

    def public_key(self, key: KeyCryptogram) -> bytes:
        self._capabilities.require(Command.PUBLIC_KEY)
        with self._guard():
            return self._public_key(self._use(key, Operation.PUBLIC_KEY))

    def kcv(self, key: KeyCryptogram) -> bytes:
        self._capabilities.require(Command.KCV)
        with self._guard():
            self._load(key)  # refuses a cryptogram whose KCV does not match
        return key.kcv

    def translate_pin(
        self,
        block: bytes,
        src: PinKey,
        src_format: PinBlockFormat,
        dst: KeyCryptogram,
        dst_format: PinBlockFormat,
        pan: str | None,
    ) -> bytes:
        """Decipher under ``src``, check, re-encipher under ``dst`` (ISO 9564-1 clause 9.3)."""
        form = _run_form(src_format, dst_format, src, dst)
        if form is not None and type(block) is bytes and len(block) == src_format.block_size and type(pan) is str:
            run = self._run(form, src_format, block, src, dst, (pan,))  # type: ignore[arg-type]
            if run is not None:
                if not run[1][0]:
                    raise InvalidPinBlock()
                return run[0]
        return self._translate_one(block, src, src_format, dst, dst_format, pan)

    def _translate_one(
        self, block: bytes, src: PinKey, src_format: PinBlockFormat, dst: KeyCryptogram,
        dst_format: PinBlockFormat, pan: str | None,
    ) -> bytes:
        self._check_translation(src_format, dst_format)
        with self._guard():
            pin = self._pin(block, src, src_format, pan)
            d = self._use(dst, Operation.PIN_ENCRYPT)
            return pinblock.encipher(dst_format, d, pin, pan)

    def _run(
        self, form: _Run, fmt: PinBlockFormat, blocks: bytes, src: KeyCryptogram, dst: KeyCryptogram,
        pans: Sequence[str],
    ) -> tuple[bytes, list[bool]] | None:
        """A run of blocks of one format, one per PAN, translated whole (:func:`_run_form`).

        With the PAN unchanged the PIN field is unchanged, so the run is a few
        ECB passes and one check of every field. Returns the enciphered run and
        whether each block passed; a malformed PAN anywhere gives ``None``, and
        the caller goes block by block to name it.
        """
        self._check_translation(fmt, fmt)
        with self._guard():
            return form(self._use(src, Operation.PIN_DECRYPT), self._use(dst, Operation.PIN_ENCRYPT), blocks, pans)

    def pin_translator(
        self, src: PinKey, src_format: PinBlockFormat, dst: KeyCryptogram, dst_format: PinBlockFormat,
    ) -> PinTranslator:
        """:meth:`translate_pin` bound to a key pair and format pair (ISO 9564-1 clause 9.3 each call)."""
        return _Translator(self, src, src_format, dst, dst_format)

    def _check_translation(self, src_format: PinBlockFormat, dst_format: PinBlockFormat) -> None:
        if (src_format, dst_format) in self._translations:
            return
        self._capabilities.require(Command.TRANSLATE_PIN)
        for f, name in ((src_format, "source_format"), (dst_format, "destination_format")):
            if f not in self._capabilities.pin_formats:
                raise Unsupported(name, f"{f.value} is not supported by this backend")
            if f is PinBlockFormat.ISO_2:
                raise InvalidInput(name, "format 2 is for offline IC card use only")
        if src_format.pan_bound and not dst_format.pan_bound:
            raise InvalidInput("destination_format", "a PAN-bound PIN block may not lose its PAN binding")
        self._translations.add((src_format, dst_format))

    def translate_pins(
        self,
        blocks: bytes,
        src: KeyCryptogram,
        src_format: PinBlockFormat,
        dst: KeyCryptogram,
        dst_format: PinBlockFormat,
        pans: Sequence[str | None],
    ) -> PinBatch:
        """Many blocks under one key pair (ISO 9564-1 clause 9.3 each).

        Format 0 to format 0 between TDES keys, and format 4 to format 4
        between AES (or SM4) keys, take the whole run at once (:meth:`_run`).
        Every other case, or a run with a malformed PAN, goes block by block.
        A block that fails any check is ``InvalidPinBlock``, as for one block.
        """
        size, n = src_format.block_size, len(pans)
        if not isinstance(blocks, bytes) or len(blocks) != size * n:
            raise InvalidInput("pin_blocks", f"one {size}-byte block per PAN")
        out_size = dst_format.block_size
        form = _run_form(src_format, dst_format, src, dst) if n and None not in pans else None
        if form is not None:
            run = self._run(form, src_format, blocks, src, dst, pans)  # type: ignore[arg-type]
            if run is not None:
                out, good = run
                if all(good):
                    return PinBatch(out)
                bad = [i for i, g in enumerate(good) if not g]
                packed = bytearray(out)
                for i in bad:
                    packed[i * out_size:(i + 1) * out_size] = bytes(out_size)
                return PinBatch(bytes(packed), tuple((i, InvalidPinBlock()) for i in bad))
        parts: list[bytes] = []
        errors: list[tuple[int, HsmsvcError]] = []
        for i, pan in enumerate(pans):
            try:
                parts.append(self._translate_one(blocks[i * size:(i + 1) * size], src, src_format, dst,
                                                 dst_format, pan))
            except (InvalidPinBlock, InvalidInput) as e:
                parts.append(bytes(out_size))
                errors.append((i, e))
        return PinBatch(b"".join(parts), tuple(errors))

    def _store(self, psk: LoadedKey, pin: str, account: str) -> StoredPin:
        if psk.spec.usage is KeyUsage.PIN_ENCRYPTION:
            fmt = _storage_format(psk)
            return StoredPin(StoredPinMethod.ENCRYPTED, pinblock.encipher(fmt, psk, pin, account))
        return StoredPin(StoredPinMethod.DIGEST, _digest(psk, account, pin))

    def _use_psk(self, psk: KeyCryptogram, old_lmk: bool = False) -> LoadedKey:
        op = (
            Operation.PIN_STORE_ENCRYPT
            if psk.spec.usage is KeyUsage.PIN_ENCRYPTION
            else Operation.PIN_STORE_DIGEST
        )
        return self._use(psk, op, old_lmk=old_lmk)

    def encrypt_pin_for_storage(
        self,
        block: bytes,
        key: PinKey,
        fmt: PinBlockFormat,
        pan: str | None,
        psk: KeyCryptogram,
        account: str,
    ) -> StoredPin:
        self._capabilities.require(Command.ENCRYPT_PIN_FOR_STORAGE)
        _validate.digits(account, "account", 12, 19)
        with self._guard():
            pin = self._pin(block, key, fmt, pan)
            return self._store(self._use_psk(psk), pin, account)

    def verify_pin_stored(
        self,
        block: bytes,
        key: PinKey,
        fmt: PinBlockFormat,
        pan: str | None,
        psk: KeyCryptogram,
        account: str,
        stored: StoredPin,
    ) -> None:
        self._capabilities.require(Command.VERIFY_PIN_STORED)
        _validate.digits(account, "account", 12, 19)
        with self._guard():
            pin = self._pin(block, key, fmt, pan)
            p = self._use_psk(psk)
            self._check_stored(p, stored)
            # A stored block that does not decode is reported as a mismatch:
            # no second error to tell the two apart.
            if not self._holds(p, stored.value, account, pin):
                raise VerificationFailed("pin", "does not verify")

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
        """:meth:`verify_pin_stored` for blocks packed back to back, one per (PAN, account, stored PIN).

        Per item: ``True`` (verified), ``False`` (does not verify) or the error a
        single check gives (``InvalidPinBlock``, ``InvalidInput``); a key error
        refuses the whole batch. Format 0 under a TDES key against PINs stored in
        format 0 under a TDES PSK is vectorised: one ECB decipherment of each run,
        one check of each, and the PIN fields compared in constant time.
        """
        self._capabilities.require(Command.VERIFY_PIN_STORED)
        size, n = fmt.block_size, len(pans)
        if n > _MAX_BATCH_PINS:
            raise InvalidInput("pans", f"at most {_MAX_BATCH_PINS} per call")
        if not isinstance(blocks, bytes) or len(blocks) != size * n or not len(accounts) == len(stored) == n:
            raise InvalidInput("pin_blocks", f"one {size}-byte block per PAN, account and stored PIN")
        with self._guard():
            run = self._verify_iso0_run(blocks, key, fmt, pans, psk, accounts, stored) if n else None
            if run is not None:
                return run
            out: list[bool | HsmsvcError] = []
            for i in range(n):
                try:
                    self.verify_pin_stored(blocks[i * size:(i + 1) * size], key, fmt, pans[i], psk, accounts[i],
                                           stored[i])
                except VerificationFailed:
                    out.append(False)
                except (InvalidPinBlock, InvalidInput) as e:
                    out.append(e)
                else:
                    out.append(True)
            return out

    def _verify_iso0_run(
        self, blocks: bytes, key: KeyCryptogram, fmt: PinBlockFormat, pans: Sequence[str | None],
        psk: KeyCryptogram, accounts: Sequence[str], stored: Sequence[StoredPin],
    ) -> list[bool | HsmsvcError] | None:
        """:meth:`verify_pins_stored`'s vectorised case, or ``None`` where the run does not qualify
        (another format or algorithm, a digest PSK, a malformed item): the caller then goes item by item."""
        if fmt is not PinBlockFormat.ISO_0 or not isinstance(key, KeyCryptogram) or None in pans:
            return None
        k = self._use(key, Operation.PIN_DECRYPT)
        p = self._use_psk(psk)
        if not (k.algorithm.is_tdes and p.spec.usage is KeyUsage.PIN_ENCRYPTION
                and _storage_format(p) is PinBlockFormat.ISO_0):
            return None
        if set(map(type, stored)) != {StoredPin} or {x.method for x in stored} != {StoredPinMethod.ENCRYPTED}:
            return None
        values = [x.value for x in stored]
        if not all(_shaped(values, accounts, 8, 13)):
            return None
        try:
            fields, good = pinblock.iso0_pin_fields(k.decrypt(blocks), pans)  # type: ignore[arg-type]
        except (InvalidInput, TypeError):
            return None  # a malformed PAN: the item-by-item path names it
        kept, kept_good = pinblock.iso0_pin_fields(p.decrypt(b"".join(values)), accounts)
        if all(good) and all(kept_good) and _compare.bytes_eq(fields, kept):
            return [True] * len(values)
        # A stored block that does not decode is a mismatch, as for one PIN: no second error.
        return [
            (kept_good[i] and _compare.bytes_eq(fields[8 * i:8 * i + 8], kept[8 * i:8 * i + 8])) if good[i]
            else InvalidPinBlock()
            for i in range(len(values))
        ]

    @staticmethod
    def _check_stored(psk: LoadedKey, stored: StoredPin) -> None:
        if not isinstance(stored, StoredPin) or not isinstance(stored.value, bytes):
            raise InvalidInput("stored_pin", "a StoredPin")
        want = (
            StoredPinMethod.ENCRYPTED
            if psk.spec.usage is KeyUsage.PIN_ENCRYPTION
            else StoredPinMethod.DIGEST
        )
        if stored.method is not want:
            raise KeyUsageViolation("psk", f"bound to {want.value} stored PINs")
        size = psk.algorithm.block_size if want is StoredPinMethod.ENCRYPTED else 32
        if len(stored.value) != size:
            raise InvalidInput("stored_pin", f"{size} bytes for this PSK")

    def reencrypt_stored_pin(
        self, stored: StoredPin, old_psk: KeyCryptogram, new_psk: KeyCryptogram, account: str
    ) -> StoredPin:
        self._capabilities.require(Command.REENCRYPT_STORED_PIN)
        _validate.digits(account, "account", 12, 19)
        with self._guard():
            old = self._use_psk(old_psk)
            new = self._use_psk(new_psk)
            self._check_stored(old, stored)
            if stored.method is StoredPinMethod.DIGEST:
                raise KeyUsageViolation("stored_pin", "a keyed digest is one-way and cannot move to a new key")
            pin = pinblock.decipher(_storage_format(old), old, stored.value, account)
            return self._store(new, pin, account)

    def reencrypt_stored_pins(
        self,
        old_psk: KeyCryptogram,
        new_psk: KeyCryptogram,
        rows: Sequence[tuple[bytes, str]],
        old_lmk: bool = False,
    ) -> list[bytes | None]:
        """Stored PINs (enciphered, each with its account) moved from one PSK to another, as a batch.

        ``new_psk`` may be a digest PSK: the PINs then become keyed one-way
        digests (bank design 004 clause 6.2.4). ``old_lmk`` takes ``old_psk``
        as a cryptogram under the LMK being retired (payShield BG's half of an
        LMK change). ``None`` where a row is not a well-formed stored PIN under
        ``old_psk`` for its account: one answer for every fault, as for a
        single PIN. Two TDES PSKs (format 0 storage) take the vectorised path:
        one ECB decipherment of the whole run, one check, one encipherment,
        since the plain block does not change when the account does not.
        """
        self._capabilities.require(Command.REENCRYPT_STORED_PIN)
        values, accounts = _columns(rows, 2)
        with self._guard():
            old, new, shaped = self._pin_move(old_psk, new_psk, values, accounts, old_lmk)
            fmt_old = _storage_format(old)
            if new.spec.usage is KeyUsage.PIN_ENCRYPTION and fmt_old is _storage_format(new) is PinBlockFormat.ISO_0:
                return self._reencrypt_iso0(old, new, values, accounts, shaped)
            out: list[bytes | None] = []
            for value, account, ok in zip(values, accounts, shaped):
                pin = self._stored_pin(old, value, account) if ok else None
                out.append(None if pin is None else self._store(new, pin, account).value)
            return out

    def compare_stored_pins(
        self,
        old_psk: KeyCryptogram,
        new_psk: KeyCryptogram,
        rows: Sequence[tuple[bytes, bytes, str]],
        old_lmk: bool = False,
    ) -> list[bool]:
        """Per (old value, new value, account): whether both hold the same PIN.

        A batch job's sample check after :meth:`reencrypt_stored_pins`; the
        PINs themselves never leave the backend.
        """
        self._capabilities.require(Command.REENCRYPT_STORED_PIN)
        values, kept_values, accounts = _columns(rows, 3)
        with self._guard():
            old, new, shaped = self._pin_move(old_psk, new_psk, values, accounts, old_lmk)
            out = []
            for value, kept, account, ok in zip(values, kept_values, accounts, shaped):
                pin = self._stored_pin(old, value, account) if ok else None
                out.append(pin is not None and self._holds(new, kept, account, pin))
            return out

    def _pin_move(
        self, old_psk: KeyCryptogram, new_psk: KeyCryptogram, values: Sequence[object], accounts: Sequence[object],
        old_lmk: bool,
    ) -> tuple[LoadedKey, LoadedKey, list[bool]]:
        if old_lmk:
            self._capabilities.require(Command.LMK_TRANSLATE)
        old = self._use_psk(old_psk, old_lmk)
        new = self._use_psk(new_psk)
        if old.spec.usage is not KeyUsage.PIN_ENCRYPTION:
            raise KeyUsageViolation("old_psk", "a keyed digest is one-way; only enciphered PINs move")
        formats = {_storage_format(old)}
        if new.spec.usage is KeyUsage.PIN_ENCRYPTION:
            formats.add(_storage_format(new))
        # Format 0 binds a PAN (13 to 19 digits); format 4 and digests take any account of 12 or more.
        return old, new, _shaped(values, accounts, old.algorithm.block_size,
                                 13 if PinBlockFormat.ISO_0 in formats else 12)

    @staticmethod
    def _stored_pin(psk: LoadedKey, value: bytes, account: str) -> str | None:
        """The PIN in one enciphered stored value, or ``None``: no reason given."""
        if not isinstance(value, bytes) or len(value) != psk.algorithm.block_size:
            return None
        try:
            return pinblock.decipher(_storage_format(psk), psk, value, account)
        except InvalidInput:
            return None

    def _holds(self, psk: LoadedKey, value: bytes, account: str, pin: str) -> bool:
        """Whether a stored value (enciphered or digest) holds ``pin``, compared in constant time."""
        if psk.spec.usage is KeyUsage.PIN_ENCRYPTION:
            kept = self._stored_pin(psk, value, account)
            return kept is not None and _compare.bytes_eq(kept.encode(), pin.encode())
        return isinstance(value, bytes) and _compare.bytes_eq(_digest(psk, account, pin), value)

    @staticmethod
    def _reencrypt_iso0(
        old: LoadedKey, new: LoadedKey, values: Sequence[bytes], accounts: Sequence[str], shaped: list[bool]
    ) -> list[bytes | None]:
        if all(shaped):
            blocks = old.decrypt(b"".join(values))
            good = pinblock.check_iso0_blocks(blocks, accounts)
        else:
            filler = bytes(8)
            blocks = old.decrypt(b"".join([v if ok else filler for v, ok in zip(values, shaped)]))
            pans = [a if ok else "0000000000000" for a, ok in zip(accounts, shaped)]
            good = [ok and g for ok, g in zip(shaped, pinblock.check_iso0_blocks(blocks, pans))]
        moved: list[bytes | None] = list(struct.unpack("8s" * len(values), new.encrypt(blocks)))
        if not all(good):
            moved = [m if g else None for m, g in zip(moved, good)]
        return moved

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
        """IBM 3624 offset verification with the table bound to the PVK."""
        self._capabilities.require(Command.VERIFY_PIN_IBM3624)
        with self._guard():
            pin = self._pin(block, key, fmt, pan)
            v = self._use(pvk, Operation.PIN_VERIFY_IBM3624)
            ibm3624.verify_offset(v, validation_data, _table(v), pin, offset)

    def generate_pin_offset(
        self,
        block: bytes,
        key: PinKey,
        fmt: PinBlockFormat,
        pan: str | None,
        pvk: KeyCryptogram,
        validation_data: str,
    ) -> str:
        """IBM 3624 offset for a customer-selected PIN, as long as the PIN."""
        self._capabilities.require(Command.GENERATE_PIN_OFFSET)
        with self._guard():
            pin = self._pin(block, key, fmt, pan)
            v = self._use(pvk, Operation.PIN_GENERATE_IBM3624)
            return ibm3624.generate_offset(v, validation_data, _table(v), pin)

    def generate_pvv(
        self,
        block: bytes,
        key: PinKey,
        fmt: PinBlockFormat,
        pan: str,
        pvk: KeyCryptogram,
        pvki: int,
    ) -> str:
        self._capabilities.require(Command.GENERATE_PVV)
        with self._guard():
            pin = self._pin(block, key, fmt, pan)
            v = self._use(pvk, Operation.PIN_GENERATE_PVV)
            return _pvv.generate_pvv(v, pan, pvki, pin)

    def verify_pin_pvv(
        self,
        block: bytes,
        key: PinKey,
        fmt: PinBlockFormat,
        pan: str,
        pvk: KeyCryptogram,
        pvki: int,
        pvv: str,
    ) -> None:
        self._capabilities.require(Command.VERIFY_PIN_PVV)
        with self._guard():
            pin = self._pin(block, key, fmt, pan)
            v = self._use(pvk, Operation.PIN_VERIFY_PVV)
            _pvv.verify_pvv(v, pan, pvki, pin, pvv)

    def _mac_key(self, key: KeyCryptogram, op: Operation, algorithm: MacAlgorithm) -> LoadedKey:
        if not isinstance(algorithm, MacAlgorithm):
            raise InvalidInput("mac_algorithm", "a MacAlgorithm")
        if algorithm not in self._capabilities.mac_algorithms:
            raise Unsupported("mac_algorithm", f"{algorithm.value} is not supported by this backend")
        k = self._use(key, op)
        if k.spec.usage is not policy.MAC_USAGE[algorithm]:
            raise KeyUsageViolation("key", f"its usage does not permit {algorithm.value}")
        if algorithm in (MacAlgorithm.HMAC_SHA256, MacAlgorithm.HMAC_SM3) and _hmac_for(k) is not algorithm:
            raise KeyUsageViolation("key", f"its algorithm does not permit {algorithm.value}")
        return k

    def generate_mac(
        self, key: KeyCryptogram, data: bytes, algorithm: MacAlgorithm, padding: Padding
    ) -> bytes:
        self._capabilities.require(Command.GENERATE_MAC)
        _check_data(data)
        with self._guard():
            return self._mac_key(key, Operation.MAC_GENERATE, algorithm).mac(algorithm, padding, bytes(data))

    def verify_mac(
        self, key: KeyCryptogram, data: bytes, mac: bytes, algorithm: MacAlgorithm, padding: Padding
    ) -> None:
        self._capabilities.require(Command.VERIFY_MAC)
        _check_data(data)
        with self._guard():
            k = self._mac_key(key, Operation.MAC_VERIFY, algorithm)
            _check_mac(k, algorithm, mac)
            computed = k.mac(algorithm, padding, bytes(data))
        _compare.require_eq(computed[: len(mac)], bytes(mac), "mac")

    def generate_macs(
        self, key: KeyCryptogram, messages: Sequence[bytes], algorithm: MacAlgorithm, padding: Padding
    ) -> list[bytes | InvalidInput]:
        self._capabilities.require(Command.GENERATE_MAC)
        out: list[bytes | InvalidInput] = []
        with self._guard():
            k = self._mac_key(key, Operation.MAC_GENERATE, algorithm)
            for data in messages:
                try:
                    _check_data(data)
                    out.append(k.mac(algorithm, padding, bytes(data)))
                except InvalidInput as e:
                    out.append(e)
        return out

    def verify_macs(
        self, key: KeyCryptogram, messages: Sequence[bytes], macs: Sequence[bytes], algorithm: MacAlgorithm,
        padding: Padding,
    ) -> list[bool | InvalidInput]:
        self._capabilities.require(Command.VERIFY_MAC)
        if len(messages) != len(macs):
            raise InvalidInput("macs", "one per message")
        out: list[bool | InvalidInput] = []
        with self._guard():
            k = self._mac_key(key, Operation.MAC_VERIFY, algorithm)
            for data, mac in zip(messages, macs):
                try:
                    _check_data(data)
                    _check_mac(k, algorithm, mac)
                    computed = k.mac(algorithm, padding, bytes(data))
                    out.append(_compare.bytes_eq(computed[: len(mac)], bytes(mac)))
                except InvalidInput as e:
                    out.append(e)
        return out

    def _field_key(self, key: KeyCryptogram, op: Operation, params: FieldParams) -> LoadedKey:
        if not isinstance(params, FieldParams):
            raise InvalidInput("params", "FieldParams")
        if params.mode not in self._capabilities.data_modes:
            raise Unsupported("mode", f"{params.mode.value} is not supported by this backend")
        k = self._use(key, op)
        if params.mode is CipherMode.GCM and k.algorithm.block_size != 16:
            raise InvalidInput("mode", "GCM needs a 16-byte block cipher (AES or SM4)")
        return k

    def encrypt_data(self, key: KeyCryptogram, params: FieldParams, data: bytes) -> bytes:
        self._capabilities.require(Command.ENCRYPT_DATA)
        _check_data(data)
        with self._guard():
            k = self._field_key(key, Operation.DATA_ENCRYPT, params)
            padded = fields.pad(params.padding, bytes(data), _unit(k, params))
            return k.field_encrypt(params.mode, params.iv, padded, params.aad)

    def encrypt_fields(
        self, key: KeyCryptogram, params: FieldParams, ivs: Sequence[bytes], plaintexts: Sequence[bytes]
    ) -> list[bytes | InvalidInput]:
        self._capabilities.require(Command.ENCRYPT_DATA)
        if len(ivs) != len(plaintexts):
            raise InvalidInput("ivs", "one per field")
        out: list[bytes | InvalidInput] = []
        with self._guard():
            k = self._field_key(key, Operation.DATA_ENCRYPT, params)
            unit = _unit(k, params)
            for iv, data in zip(ivs, plaintexts):
                try:
                    _check_data(data)
                    out.append(k.field_encrypt(params.mode, iv, fields.pad(params.padding, bytes(data), unit),
                                               params.aad))
                except InvalidInput as e:
                    out.append(e)
        return out

    def decrypt_data(self, key: KeyCryptogram, params: FieldParams, data: bytes) -> bytes:
        self._capabilities.require(Command.DECRYPT_DATA)
        _check_data(data)
        with self._guard():
            k = self._field_key(key, Operation.DATA_DECRYPT, params)
            clear = k.field_decrypt(params.mode, params.iv, bytes(data), params.aad)
            return fields.unpad(params.padding, clear, k.algorithm.block_size)

    def reencrypt_data(
        self,
        src: KeyCryptogram,
        src_params: FieldParams,
        dst: KeyCryptogram,
        dst_params: FieldParams,
        data: bytes,
    ) -> bytes:
        """Translate a field between keys without the clear field leaving the backend.

        The source must be authenticated (GCM) or unpadded: stripping CBC/ECB
        padding here and reporting a fault would be a padding oracle to a caller
        who may translate but not decrypt (Vaudenay, 2002).
        """
        self._capabilities.require(Command.REENCRYPT_DATA)
        _check_data(data)
        if src_params.mode is not CipherMode.GCM and src_params.padding is not DataPadding.NONE:
            raise InvalidInput("source_padding", "NONE unless the source is GCM (no padding oracle)")
        with self._guard():
            s = self._field_key(src, Operation.DATA_DECRYPT, src_params)
            d = self._field_key(dst, Operation.DATA_ENCRYPT, dst_params)
            clear = s.field_decrypt(src_params.mode, src_params.iv, bytes(data), src_params.aad)
            padded = fields.pad(dst_params.padding, clear, _unit(d, dst_params))
            return d.field_encrypt(dst_params.mode, dst_params.iv, padded, dst_params.aad)

    def random(self, length: int) -> bytes:
        self._capabilities.require(Command.RANDOM)
        if not isinstance(length, int) or not 1 <= length <= MAX_RANDOM:
            raise InvalidInput("length", f"1 to {MAX_RANDOM}")
        with self._guard():
            return self._random(length)

    def write_audit_anchor(self, seq: int, head: bytes, *, store: str = "") -> None:
        """Keep the audit chain head of ``store`` outside the database, MACed under the LMK.

        Each store has its own anchor (one LMK may serve several stores), and the
        MAC binds the store's id, so one store's anchor never stands for another's.
        The anchor's storage is read and written without the backend's lock (a
        file lock may wait on another process, and every command would wait
        with it); anchor writes in this process go one at a time.
        """
        _anchor_name(store)
        with self._anchor_lock:
            current = self._read_anchor(store)
            if current is not None and current[0] >= seq:
                return
            with self._guard():
                tag = self._lmk_cmac(_anchor_message(store, seq, head))
            self._anchor_store(f"{seq}:{head.hex()}:{tag.hex()}".encode(), store)

    def read_audit_anchor(self, *, store: str = "") -> tuple[int, bytes] | None:
        """The last anchored (sequence, head hash) of ``store``; ``PermissionDenied`` if it was altered."""
        _anchor_name(store)
        return self._read_anchor(store)

    # Positional forms: a pool member's pipe carries positional arguments only.
    def write_store_anchor(self, seq: int, head: bytes, store: str) -> None:
        self.write_audit_anchor(seq, head, store=store)

    def read_store_anchor(self, store: str) -> tuple[int, bytes] | None:
        return self.read_audit_anchor(store=store)

    def _read_anchor(self, store: str) -> tuple[int, bytes] | None:
        raw = self._anchor_load(store)
        if raw is None:
            return None
        try:
            seq_s, head_h, tag_h = raw.decode().split(":")
            seq, head, tag = int(seq_s), bytes.fromhex(head_h), bytes.fromhex(tag_h)
        except ValueError:
            raise PermissionDenied("audit_anchor", "malformed") from None
        with self._guard():
            want = self._lmk_cmac(_anchor_message(store, seq, head))
        if not _compare.bytes_eq(want, tag):
            raise PermissionDenied("audit_anchor", "MAC does not verify under this LMK for this store")
        return seq, head

    @abstractmethod
    def _anchor_store(self, data: bytes, store: str) -> None:
        """Write ``store``'s anchor; called without the backend's lock: take it if the storage needs it."""

    @abstractmethod
    def _anchor_load(self, store: str) -> bytes | None:
        """Read the anchor; called without the backend's lock, as :meth:`_anchor_store`."""

    def audit_mac(self, data: bytes) -> bytes:
        self._capabilities.require(Command.AUDIT_MAC)
        with self._guard():
            return self._lmk_cmac(AUDIT_DOMAIN + bytes(data))

    def pan_hash(self, pan: str) -> bytes:
        self._capabilities.require(Command.PAN_HASH)
        _validate.digits(pan, "pan", 11, 19)
        with self._guard():
            return self._lmk_cmac(PAN_DOMAIN + pan.encode("ascii"))

    def pan_hashes(self, pans: Sequence[str]) -> list[bytes]:
        self._capabilities.require(Command.PAN_HASH)
        if not isinstance(pans, Sequence) or len(pans) > _MAX_BATCH_PINS:
            raise InvalidInput("pans", f"at most {_MAX_BATCH_PINS} per call")
        # The whole run checked at once, as pan_hash checks one (bytes.isdigit: ASCII digits only).
        if not (set(map(type, pans)) <= {str} and set(map(len, pans)) <= _PAN_HASH_LENGTHS):
            raise InvalidInput("pan", "11 to 19 digits")
        joined = "".join(pans)
        if pans and not (joined.isascii() and joined.encode("ascii").isdigit()):
            raise InvalidInput("pan", "digits only")
        with self._guard():
            return [self._lmk_cmac(PAN_DOMAIN + p.encode("ascii")) for p in pans]


def _columns(rows: Sequence[tuple[object, ...]], width: int) -> list[Sequence[Any]]:
    """A batch's rows as ``width`` columns (one C-level transpose), or ``InvalidInput``."""
    if not isinstance(rows, Sequence) or len(rows) > _MAX_BATCH_PINS:
        raise InvalidInput("rows", f"at most {_MAX_BATCH_PINS} per call")
    if not rows:
        return [() for _ in range(width)]
    try:
        columns: list[Sequence[Any]] = list(zip(*rows, strict=True))
    except (TypeError, ValueError):
        columns = []
    if len(columns) != width:
        raise InvalidInput("rows", f"tuples of {width}")
    return columns


def _shaped(values: Sequence[object], accounts: Sequence[object], size: int, min_account: int) -> list[bool]:
    """Per row: a stored PIN of ``size`` bytes and an account of digits. The whole batch is checked at
    once first (C-level ``map``), and row by row only when it has a bad row."""
    lengths = range(min_account, 20)
    if (
        set(map(type, values)) <= {bytes} and set(map(type, accounts)) <= {str}
        and set(map(len, values)) <= {size} and set(map(len, accounts)) <= set(lengths)  # type: ignore[arg-type]
    ):
        joined = "".join(accounts)  # type: ignore[arg-type]
        # bytes.isdigit: ASCII digits only, and far quicker than str.isdigit on a long run.
        if joined.isascii() and joined.encode("ascii").isdigit():
            return [True] * len(values)
    return [
        isinstance(v, bytes) and len(v) == size and isinstance(a, str) and len(a) in lengths
        and a.isascii() and a.isdigit()
        for v, a in zip(values, accounts)
    ]


def _check_data(data: bytes) -> None:
    if not isinstance(data, (bytes, bytearray)) or len(data) > 1 << 20:
        raise InvalidInput("data", "bytes, at most 1 MiB")


def _unit(key: LoadedKey, params: FieldParams) -> int:
    # GCM is a stream mode: no padding, any length.
    return 1 if params.mode is CipherMode.GCM else key.algorithm.block_size


def _table(pvk: LoadedKey) -> str:
    if not pvk.spec.decimalization_table:
        raise KeyUsageViolation("pvk", "has no decimalization table bound")
    return pvk.spec.decimalization_table


def _digest(psk: LoadedKey, account: str, pin: str) -> bytes:
    """The keyed one-way digest a digest PSK stores for (account, PIN)."""
    return psk.mac(_hmac_for(psk), Padding.METHOD_1, pindigest.message(account, pin))


def _hmac_for(key: LoadedKey) -> MacAlgorithm:
    m = HMAC_FOR.get(key.algorithm)
    if m is None:
        raise KeyUsageViolation("key", "not an HMAC-sized key")
    return m



def _anchor_name(store: str) -> None:
    """A store id is 32 lowercase hex digits (it names a file or a token object), or "" (the legacy anchor)."""
    if store and not (len(store) == 32 and all(c in "0123456789abcdef" for c in store)):
        raise InvalidInput("store", "a store id of 32 lowercase hex digits")


def _anchor_message(store: str, seq: int, head: bytes) -> bytes:
    # The legacy anchor keeps its message, so an anchor written before store ids still verifies.
    if not store:
        return ANCHOR_DOMAIN + seq.to_bytes(8, "big") + head
    return STORE_ANCHOR_DOMAIN + bytes.fromhex(store) + seq.to_bytes(8, "big") + head
