"""The base of the soft and PKCS#11 backends: key loading and primitives in, commands out.

A backend supplies how a cryptogram is verified and loaded (:meth:`_load`), how
a clear or fresh key is put under the LMK, how keys cross a ZMK/TMK, and the
LMK's own CMAC. The command families (:mod:`hsmsvc.hsm.commands`) hold
everything else (usage policy, PIN block handling, MAC lengths, stored PINs),
so every backend behaves the same. Commands run under one lock per backend:
OpenSSL contexts and PKCS#11 sessions are not shared across threads (see
``docs/platform-notes.md``).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, TypeVar

from cryptography.hazmat.primitives.asymmetric import ec

from hsmsvc.crypto import components, pinblock, sm2ka
from hsmsvc.errors import HsmsvcError, InvalidInput, InvalidPinBlock, KeyUsageViolation, Unsupported
from hsmsvc.hsm import policy
from hsmsvc.hsm.commands import dukpt
from hsmsvc.hsm.commands.base import DEBUG, STRENGTH, HsmCommand, LoadedKey, TimingHook, debugging, observe
from hsmsvc.hsm.commands.pin import Translator
from hsmsvc.hsm.commands.storedpins import StoredVerifier
from hsmsvc.hsm.model import (
    BlockTemplate,
    Capabilities,
    Command,
    DukptKey,
    KeyCryptogram,
    KeySpec,
    LegacyForm,
    OneTimeKey,
    PinBlock,
    PinKey,
    PinTranslator,
    PinVerifier,
)
from hsmsvc.hsm.policy import Operation
from hsmsvc.loopguard import may_block
from hsmsvc.types import Algorithm, KcvMethod, PinBlockFormat

if TYPE_CHECKING:
    from hsmsvc.hsm.commands.agree import Sm2Exchange
    from hsmsvc.hsm.commands.sign import SignedData

__all__ = ["CommandBackend"]

T = TypeVar("T")


def _check_block(block: bytes, fmt: PinBlockFormat) -> None:
    if not isinstance(fmt, PinBlockFormat):
        raise InvalidInput("pin_block_format", "a PinBlockFormat")
    if not isinstance(block, (bytes, bytearray)) or len(block) != fmt.block_size:
        raise InvalidInput("pin_block", f"{fmt.block_size} bytes for {fmt.value}")


class _Guard:
    """``CommandBackend._guard``: a class, not a generator, as it is on every call's path."""

    __slots__ = ("_backend", "_lock")

    def __init__(self, backend: CommandBackend) -> None:
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


class CommandBackend(ABC):
    """Base of the soft and PKCS#11 backends: :meth:`execute` runs any command over its primitives."""

    timing: TimingHook | None
    """Told of every command's duration (:func:`~hsmsvc.hsm.commands.base.observe`); None by default."""

    def __init__(self, capabilities: Capabilities) -> None:
        self._capabilities = capabilities
        self._lock = threading.RLock()
        self._guard_cm = _Guard(self)
        self._anchor_lock = threading.Lock()
        self._generation = 0
        """Moves whenever a loaded key is dropped (:meth:`_dropped`), for what holds loaded keys."""
        self.timing = None

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    def execute(self, command: HsmCommand[T]) -> T:
        """Run ``command``; the backend boundary every command crosses, logged and timed here."""
        if self.timing is None and not debugging(DEBUG):
            return command.run(self)
        return observe(command, lambda: command.run(self), self.timing)

    def pin_translator(
        self, *, src: PinKey, src_format: PinBlockFormat, dst: KeyCryptogram, dst_format: PinBlockFormat,
    ) -> PinTranslator:
        """:class:`~hsmsvc.hsm.commands.pin.TranslatePin` prepared for one key pair and format pair
        (ISO 9564-1 clause 9.3 each call), for a caller that translates along one route call after call."""
        return Translator(self, src, src_format, dst, dst_format)

    def pin_verifier(self, *, key: PinKey, fmt: PinBlockFormat, psk: KeyCryptogram) -> PinVerifier:
        """:class:`~hsmsvc.hsm.commands.storedpins.VerifyPinStored` prepared for one PIN key, format
        and PSK, for a caller that verifies against PINs stored under one PSK call after call."""
        return StoredVerifier(self, key, fmt, psk)

    def lmk_kcv(self) -> bytes:
        """The LMK's key check value, which every pool member must share."""
        with self._guard():
            return self._lmk_kcv()

    # -- what a backend provides -------------------------------------------------

    @abstractmethod
    def _load(self, key: KeyCryptogram) -> LoadedKey:
        """Verify ``key``'s cryptogram against its spec and KCV, and load it (cached)."""

    @abstractmethod
    def _new_key(self, spec: KeySpec) -> KeyCryptogram: ...

    @abstractmethod
    def _seal_clear(self, spec: KeySpec, clear: bytes) -> KeyCryptogram: ...

    @abstractmethod
    def _import(self, kek: LoadedKey, wrapped: bytes, template: KeySpec | BlockTemplate) -> KeyCryptogram:
        """A TR-31 block under a KBPK; a :class:`BlockTemplate` takes its algorithm from the verified header."""

    @abstractmethod
    def _export(self, kek: LoadedKey, key: LoadedKey) -> bytes: ...

    def _import_legacy(self, kek: LoadedKey, wrapped: bytes, spec: KeySpec, form: LegacyForm,
                       check: bytes | None, method: KcvMethod | None = None) -> KeyCryptogram:
        """A key in ``form`` under a K0 KEK; every fault after deciphering is ``InvalidKeyBlock``."""
        raise Unsupported("kek", f"the {form.value} legacy form is not supported by this backend")

    def _export_legacy(self, kek: LoadedKey, key: LoadedKey, form: LegacyForm) -> bytes:
        raise Unsupported("kek", f"the {form.value} legacy form is not supported by this backend")

    @abstractmethod
    def _lmk_cmac(self, data: bytes) -> bytes: ...

    def _transport_decrypt(self, ktk: LoadedKey, wrapped: bytes) -> bytes:
        """Unwrap bytes sent under a KTK's public half; one error for every fault."""
        raise Unsupported("command", f"{Command.ONE_TIME_PIN_KEY.value} is not supported by this backend")

    def _public_key(self, ktk: LoadedKey) -> bytes:
        raise Unsupported("command", f"{Command.PUBLIC_KEY.value} is not supported by this backend")

    def _agree(self, kak: LoadedKey, peer: ec.EllipticCurvePublicKey, *, length: int, info: bytes) -> bytes:
        """ECDH of a KAK with ``peer`` and the SP 800-56C one-step KDF: ``length`` bytes, inside the backend."""
        raise Unsupported("command", f"{Command.KEY_AGREE.value} is not supported by this backend")

    def _agree_sm2(self, kak: LoadedKey, ephemeral: LoadedKey, exchange: Sm2Exchange, *,
                   length: int) -> sm2ka.Agreement:
        """SM2 key exchange (GB/T 32918.3-2016 clause 6.1) of a KAK and an ephemeral pair, inside the backend."""
        raise Unsupported("command", f"{Command.KEY_AGREE.value} with SM2 is not supported by this backend")

    def _transport_sign(self, pair: LoadedKey, data: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017 clause 8.2) under a KDH key pair (TR-34)."""
        raise Unsupported("command", "TR-34 export is not supported by this backend")

    def _sign(self, pair: LoadedKey, data: SignedData) -> bytes:
        """A SIG's DER signature over ``data`` (:mod:`hsmsvc.crypto.signature`)."""
        raise Unsupported("command", f"{Command.SIGN.value} is not supported by this backend")

    def _verify_signature(self, key: LoadedKey, data: SignedData, signature: bytes) -> None:
        """Raise ``VerificationFailed`` unless ``signature`` is the SIG's over ``data``."""
        raise Unsupported("command", f"{Command.SIGN.value} is not supported by this backend")

    def _share_point(self, share: LoadedKey) -> bytes:
        """A CSK's public share P2 = d2^-1 G (:mod:`hsmsvc.crypto.sm2coop`)."""
        raise Unsupported("command", f"{Command.COSIGN.value} is not supported by this backend")

    def _cosign(self, share: LoadedKey, *, digest: bytes, client_point: bytes) -> bytes:
        """A CSK's partial signature r || s2 || s3."""
        raise Unsupported("command", f"{Command.COSIGN.value} is not supported by this backend")

    def _codecrypt(self, share: LoadedKey, client_point: bytes) -> bytes:
        """A CSK's part of a decryption, d2^-1 T1."""
        raise Unsupported("command", f"{Command.COSIGN.value} is not supported by this backend")

    def _clear_for_transport(self, key: LoadedKey) -> bytes:
        """A key's clear bytes, to be enciphered at once inside the backend (TR-34 export)."""
        raise Unsupported("command", "TR-34 export is not supported by this backend")

    def _transient(self, algorithm: Algorithm, clear: bytes, spec: KeySpec | None = None) -> LoadedKey:
        """A key for one command only (a one-time PIN key, a DUKPT working key), never stored or cached;
        ``spec`` its binding (a PIN-deciphering key's by default)."""
        raise Unsupported("command", f"{Command.ONE_TIME_PIN_KEY.value} is not supported by this backend")

    def _clear(self, key: LoadedKey) -> bytes:
        """``key``'s clear bytes, for a computation inside this backend (DUKPT, card values, EMV) that
        no mechanism of its offers; where it may. Commands check their capability first."""
        raise Unsupported("command", "not supported by this backend")

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
    def _forget(self, key_id: str) -> None:
        """Drop every cached unwrapped version of ``key_id`` (rotation, revocation)."""

    @abstractmethod
    def _anchor_store(self, data: bytes, store: str) -> None:
        """Write ``store``'s anchor; called without the backend's lock: take it if the storage needs it."""

    @abstractmethod
    def _anchor_load(self, store: str) -> bytes | None:
        """Read the anchor; called without the backend's lock, as :meth:`_anchor_store`."""

    @abstractmethod
    def close(self) -> None: ...

    # -- what the commands share -------------------------------------------------

    def _dropped(self) -> None:
        """A subclass calls this, holding the lock, whenever it drops or destroys a loaded key."""
        self._generation += 1

    def _guard(self) -> _Guard:
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

    def _pin(self, pin: PinBlock, key: PinKey) -> str:
        """The clear PIN of ``pin`` under ``key`` (ISO 9564-1 clause 9.3), checked; inside only."""
        block, fmt = pin.block, pin.format
        _check_block(block, fmt)
        if isinstance(key, OneTimeKey):
            k = self._one_time(key)
        elif isinstance(key, DukptKey):
            k = self._transient(*dukpt.pin_key(self, key))
        else:
            k = self._use(key, Operation.PIN_DECRYPT)
        return pinblock.decipher(fmt, k, bytes(block), pin.pan)

    def _one_time(self, key: OneTimeKey) -> LoadedKey:
        """Unwrap a terminal's one-time PIN key (004 clause 5.2.4(2)).

        Whatever goes wrong after the KTK is accepted (OAEP or SM2 decoding, the
        key's length or TDES parts) is the same ``InvalidPinBlock`` a bad PIN
        block gives, so the unwrap is no oracle either (Manger, 2001).
        """
        self._capabilities.require(Command.ONE_TIME_PIN_KEY)
        alg = key.algorithm
        if not isinstance(alg, Algorithm) or not alg.is_block_cipher or alg not in self._capabilities.algorithms:
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

    def _check_translation(self, src_format: PinBlockFormat, dst_format: PinBlockFormat) -> None:
        self._capabilities.require(Command.TRANSLATE_PIN)
        for f, name in ((src_format, "source_format"), (dst_format, "destination_format")):
            if f not in self._capabilities.pin_formats:
                raise Unsupported(name, f"{f.value} is not supported by this backend")
            if f is PinBlockFormat.ISO_2:
                raise InvalidInput(name, "format 2 is for offline IC card use only")
        if src_format.pan_bound and not dst_format.pan_bound:
            raise InvalidInput("destination_format", "a PAN-bound PIN block may not lose its PAN binding")
