"""The embedded software backend: the LMK in process memory, keys as TR-31 key blocks.

Stored keys are TR-31:2018 version D key blocks under the AES-256 LMK. The
header binds usage, mode of use and exportability; the optional block ``10``
(a numeric, proprietary block id) binds the rest of :class:`KeySpec`: key id,
version, key type, exact algorithm and zone. The block's CMAC covers header and
optional blocks, so none of them can change without the key becoming unusable.

Unwrapping a version D block runs the TR-31 KDF and CMAC, so verified keys are
cached (least recently used, bounded) by cryptogram; a hit must also match the
caller's spec, so a swapped cryptogram never reuses another key's entry.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.asymmetric import ec

from hsmsvc.crypto import cmac, components, kcv, keytransport, legacy, signature, sm2ka, sm2point, tr31
from hsmsvc.errors import InvalidInput, InvalidKeyBlock, KeyUsageViolation, Unsupported, unreadable
from hsmsvc.hsm.model import BlockTemplate, Capabilities, Command, KeyCryptogram, KeySpec, LegacyForm
from hsmsvc.hsm.commands.agree import Sm2Exchange
from hsmsvc.hsm.commands.sign import SignedData
from hsmsvc.hsm.commands.base import LoadedKey
from hsmsvc.hsm.commands.core import CommandBackend
from hsmsvc.hsm.keyblocks import block_algorithm, check_header, header_spec
from hsmsvc.hsm.policy import ECB_VARIANTS
from hsmsvc.hsm.soft import sealed, shares, sharesealed
from hsmsvc.hsm.soft.sealed import LMK_ALGORITHMS
from hsmsvc.hsm.soft.softkey import SoftKey, load_pair
from hsmsvc.types import (
    Algorithm,
    KcvMethod,
    CipherMode,
    Exportability,
    KeyType,
    KeyUsage,
    MacAlgorithm,
    ModeOfUse,
    PinBlockFormat,
)

__all__ = ["SOFT_CAPABILITIES", "SoftBackend"]

SOFT_CAPABILITIES: Final = Capabilities(
    commands=frozenset(Command),
    algorithms=frozenset(Algorithm),
    mac_algorithms=frozenset(MacAlgorithm),
    pin_formats=frozenset(PinBlockFormat),
    data_modes=frozenset(CipherMode),
)
ATTRIBUTE_BLOCK: Final = "10"
_MISMATCH: Final = "stored attributes do not match the key block"


class SoftBackend(CommandBackend):
    """All commands and algorithms, in process. The embedded default."""

    def __init__(
        self,
        lmk: bytes,
        algorithm: Algorithm = Algorithm.AES_256,
        anchor_path: Path | None = None,
        cache_size: int = 4096,
        old_lmk: tuple[Algorithm, bytes] | None = None,
    ) -> None:
        if algorithm not in LMK_ALGORITHMS:
            raise Unsupported("lmk", "an AES_256 or SM4 LMK")
        super().__init__(replace(SOFT_CAPABILITIES, lmk=algorithm))
        # The soft backend does SM2: only on libcrypto's constant-time ladder, never the fallback.
        sm2point.require_libcrypto()
        if len(lmk) != algorithm.key_length:
            raise InvalidInput("lmk", f"{algorithm.key_length} bytes for an {algorithm.value} LMK")
        # Key blocks under an SM4 LMK are TR-31 version D with SM4 for AES (crypto/tr31.py).
        self._lmk_alg = algorithm
        self._lmk = bytes(lmk)
        self._lmk_kcv_value = kcv.kcv(algorithm, self._lmk)
        # Keyed once: every VerifyPin hashes its PAN under the LMK (used under the lock).
        self._lmk_mac = cmac.Cmac(algorithm, self._lmk)
        # payShield's "key change storage": the LMK being retired, loaded only
        # while `ceremony lmk migrate` moves stored keys off it (AES_256 to SM4 too).
        if old_lmk is not None and (old_lmk[0] not in LMK_ALGORITHMS or len(old_lmk[1]) != old_lmk[0].key_length
                                    or old_lmk[1] == self._lmk):
            raise InvalidInput("old_lmk", "an AES_256 or SM4 LMK, not the current one")
        self._old_lmk = (old_lmk[0], bytes(old_lmk[1])) if old_lmk is not None else None
        self._anchor_path = anchor_path
        self._anchor_mem: dict[str, bytes] = {}
        self._cache: OrderedDict[bytes, SoftKey] = OrderedDict()
        self._cache_size = cache_size

    @classmethod
    def from_sealed(cls, path: Path, passphrase: bytes, old: tuple[Path, bytes] | None = None) -> SoftBackend:
        """Open a sealed LMK file written by ``hsmsvc lmk init``; the anchor lives beside it.

        ``old`` (a sealed file and its passphrase) loads the LMK being retired, for a migration.
        """
        algorithm, lmk = _unseal(Path(path), passphrase)
        old_lmk = _unseal(*old) if old is not None else None
        return cls(lmk, algorithm, anchor_path=Path(str(path) + ".anchor"), old_lmk=old_lmk)

    @classmethod
    def from_shares(cls, path: Path, given: Sequence[shares.Share], blob: bytes | None = None) -> SoftBackend:
        """Open a share-sealed LMK file (``hsm/soft/sharesealed.py``) with k custodians' shares; the anchor
        lives beside it. ``blob``: the file's bytes as read when its header was shown, if they were."""
        if blob is None:
            try:
                blob = Path(path).read_bytes()
            except OSError as e:
                raise unreadable("sealed_lmk", path, e) from None
        algorithm, lmk, _ = sharesealed.unseal(blob, given)
        return cls(lmk, algorithm, anchor_path=Path(str(path) + ".anchor"))

    def __repr__(self) -> str:
        return f"SoftBackend(lmk_kcv={self._lmk_kcv_value.hex().upper()})"

    # -- LMK ---------------------------------------------------------------------

    def _lmk_kcv(self) -> bytes:
        return self._lmk_kcv_value

    def _lmk_cmac(self, data: bytes) -> bytes:
        return self._lmk_mac.generate(data)

    def _random(self, length: int) -> bytes:
        return secrets.token_bytes(length)

    def _lmk_split(self, n: int) -> list[bytes]:
        randoms = [secrets.token_bytes(self._lmk_alg.key_length) for _ in range(n - 1)]
        return components.split(self._lmk_alg, self._lmk, randoms)

    def _translate_lmk(self, key: KeyCryptogram) -> KeyCryptogram:
        loaded = self._load_old(key)
        return self._seal_clear(loaded.spec, loaded.raw())

    def _load_old(self, key: KeyCryptogram) -> SoftKey:
        if self._old_lmk is None:
            raise Unsupported("old_lmk", "no old LMK is loaded (open the backend with the LMK being retired)")
        return self._unwrap(key, self._old_lmk)

    # -- key blocks under the LMK -------------------------------------------------

    def _seal_clear(self, spec: KeySpec, clear: bytes) -> KeyCryptogram:
        if spec.algorithm.is_asymmetric:
            check, pad_to = load_pair(spec, clear).fingerprint, None
        else:
            components.check_key(spec.algorithm, clear)
            # Pad every key to 32 bytes so a block does not reveal the key's length.
            check, pad_to = kcv.kcv(spec.algorithm, clear), 32
        header = tr31.Header(
            tr31.KeyBlockVersion.D,
            spec.usage,
            block_algorithm(spec),
            spec.mode_of_use,
            "00",
            spec.exportability,
            ((ATTRIBUTE_BLOCK, spec.attributes()),),
        )
        blob = tr31.wrap(self._lmk, header, clear, pad_to=pad_to, kbpk_algorithm=self._lmk_alg).encode("ascii")
        return KeyCryptogram(spec, blob, check)

    def _new_key(self, spec: KeySpec) -> KeyCryptogram:
        if spec.key_type is KeyType.CSK:
            raise InvalidInput("template.key_type", "a CSK is made with the client's share (CoSigningService)")
        if spec.key_type is KeyType.SIG:
            if spec.mode_of_use is not ModeOfUse.SIGN_ONLY:
                raise InvalidInput("template.mode_of_use", "a generated SIG signs (S); import a public key to verify")
            return self._seal_clear(spec, signature.generate_private_key(spec.algorithm))
        if spec.algorithm.is_asymmetric:  # a P-521 or SM2 KAK's d is encoded as a KTK's is
            return self._seal_clear(spec, keytransport.generate_private_key(spec.algorithm))
        while True:
            clear = secrets.token_bytes(spec.algorithm.key_length)
            if spec.algorithm.is_tdes:
                clear = components.adjust_odd_parity(clear)
            try:
                return self._seal_clear(spec, clear)
            except InvalidInput:
                continue  # a weak TDES part: draw again

    def _load(self, key: KeyCryptogram) -> SoftKey:
        hit = self._cache.get(key.blob)
        if hit is not None and (hit.spec is key.spec or hit.spec == key.spec):
            self._cache.move_to_end(key.blob)
            if hit.kcv != key.kcv:
                raise KeyUsageViolation("key", _MISMATCH)
            # Equal: keep the caller's object, so its next use is an identity check.
            hit.spec = key.spec
            return hit
        loaded = self._unwrap(key)
        self._cache[key.blob] = loaded
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
            self._dropped()
        return loaded

    def _unwrap(self, key: KeyCryptogram, lmk: tuple[Algorithm, bytes] | None = None) -> SoftKey:
        try:
            text = key.blob.decode("ascii")
        except (UnicodeDecodeError, AttributeError):
            raise InvalidKeyBlock() from None
        algorithm, kbpk = lmk or (self._lmk_alg, self._lmk)
        header, clear = tr31.unwrap(kbpk, text, kbpk_algorithm=algorithm)
        blocks = dict(header.optional_blocks)
        try:
            bound = KeySpec.parse(blocks[ATTRIBUTE_BLOCK])
        except (KeyError, ValueError, InvalidInput):
            raise InvalidKeyBlock() from None
        if (
            bound != key.spec
            or header.usage is not bound.usage
            or header.mode_of_use is not bound.mode_of_use
            or header.exportability is not bound.exportability
            or header.algorithm is not block_algorithm(bound)
        ):
            raise KeyUsageViolation("key", _MISMATCH)
        if bound.algorithm.is_asymmetric:
            loaded = SoftKey(bound, clear, key.kcv)
            if loaded.pair().fingerprint != key.kcv:
                raise KeyUsageViolation("key", _MISMATCH)
            return loaded
        if len(clear) != bound.algorithm.key_length or kcv.kcv(bound.algorithm, clear) != key.kcv:
            raise KeyUsageViolation("key", _MISMATCH)
        return SoftKey(bound, clear, key.kcv)

    def _forget(self, key_id: str) -> None:
        with self._guard():
            for blob in [b for b, k in self._cache.items() if k.spec.key_id == key_id]:
                del self._cache[blob]
            self._dropped()

    # -- keys across a ZMK/TMK ----------------------------------------------------

    def _import(self, kek: LoadedKey, wrapped: bytes, template: KeySpec | BlockTemplate) -> KeyCryptogram:
        k = _soft(kek)
        if k.spec.usage is KeyUsage.KBPK:
            try:
                text = wrapped.decode("ascii")
            except UnicodeDecodeError:
                raise InvalidKeyBlock() from None
            header, clear = tr31.unwrap(k.raw(), text, kbpk_algorithm=k.algorithm)
            spec = header_spec(header, template, len(clear))
            check_header(header, spec, len(clear))
        else:
            raise InvalidInput("kek", "a K0 KEK takes keys in its legacy form")
        if len(clear) != spec.algorithm.key_length:
            raise InvalidKeyBlock()
        return self._seal_clear(spec, clear)

    def _export(self, kek: LoadedKey, key: LoadedKey) -> bytes:
        k, x = _soft(kek), _soft(key)
        if k.spec.usage is KeyUsage.KBPK:
            version = tr31.KeyBlockVersion.B if k.algorithm.is_tdes else tr31.KeyBlockVersion.D
            header = tr31.Header(
                version, x.spec.usage, block_algorithm(x.spec), x.spec.mode_of_use,
                "00", Exportability.NON_EXPORTABLE,
            )
            return tr31.wrap(k.raw(), header, x.raw(), kbpk_algorithm=k.algorithm).encode("ascii")
        raise InvalidInput("kek", "a K0 KEK gives keys in its legacy form")

    def _import_legacy(self, kek: LoadedKey, wrapped: bytes, spec: KeySpec, form: LegacyForm,
                       check: bytes | None, method: KcvMethod | None = None) -> KeyCryptogram:
        k = _soft(kek)
        if len(wrapped) != spec.algorithm.key_length:
            raise InvalidInput("wrapped_key", f"{spec.algorithm.key_length} bytes for {spec.algorithm.value}")
        if form is LegacyForm.PAYSHIELD_VARIANT:
            clear = legacy.payshield_decipher(k.raw(), wrapped)
        elif form is LegacyForm.X917_ECB:
            clear = legacy.x917_decipher(k.algorithm, k.raw(), wrapped)
        else:
            clear = legacy.x917_decipher(k.algorithm, _variant_key(k, spec.key_type), wrapped)
        return self._seal_clear(spec, legacy.accept(spec.algorithm, clear, check, method))

    def _export_legacy(self, kek: LoadedKey, key: LoadedKey, form: LegacyForm) -> bytes:
        k, x = _soft(kek), _soft(key)
        if form is LegacyForm.PAYSHIELD_VARIANT:
            return legacy.payshield_encipher(k.raw(), x.raw())
        if form is LegacyForm.X917_ECB:
            return legacy.x917_encipher(k.algorithm, k.raw(), x.raw())
        return legacy.x917_encipher(k.algorithm, _variant_key(k, x.spec.key_type), x.raw())

    # -- key transport (KTKs) ------------------------------------------------------

    def _transport_decrypt(self, ktk: LoadedKey, wrapped: bytes) -> bytes:
        return _soft(ktk).transport().decrypt(wrapped)

    def _public_key(self, ktk: LoadedKey) -> bytes:
        return _soft(ktk).pair().public_der

    def _agree(self, kak: LoadedKey, peer: ec.EllipticCurvePublicKey, *, length: int, info: bytes) -> bytes:
        return _soft(kak).agreement().derive(peer, length=length, info=info)

    def _agree_sm2(self, kak: LoadedKey, ephemeral: LoadedKey, exchange: Sm2Exchange, *,
                   length: int) -> sm2ka.Agreement:
        return _soft(kak).sm2_agreement().exchange(
            _soft(ephemeral).sm2_agreement(), role=exchange.role, peer_static=exchange.peer_public_key,
            peer_ephemeral=exchange.peer_ephemeral_public_key, own_id=exchange.own_id, peer_id=exchange.peer_id,
            key_length=length)

    def _transport_sign(self, pair: LoadedKey, data: bytes) -> bytes:
        return _soft(pair).transport().sign(data)

    def _sign(self, pair: LoadedKey, data: SignedData) -> bytes:
        return _soft(pair).signer().sign(message=data.message, digest=data.digest, user_id=data.user_id)

    def _verify_signature(self, key: LoadedKey, data: SignedData, signature: bytes) -> None:
        _soft(key).verifier().verify(message=data.message, digest=data.digest, signature=signature,
                                     user_id=data.user_id)

    def _share_point(self, share: LoadedKey) -> bytes:
        return _soft(share).share().server_point

    def _cosign(self, share: LoadedKey, *, digest: bytes, client_point: bytes) -> bytes:
        return _soft(share).share().cosign(digest=digest, client_point=client_point)

    def _codecrypt(self, share: LoadedKey, client_point: bytes) -> bytes:
        return _soft(share).share().codecrypt(client_point)

    def _clear_for_transport(self, key: LoadedKey) -> bytes:
        return _soft(key).raw()

    def _clear(self, key: LoadedKey) -> bytes:
        return _soft(key).raw()

    def _transient(self, algorithm: Algorithm, clear: bytes, spec: KeySpec | None = None) -> LoadedKey:
        spec = spec or KeySpec("one-time", 1, KeyType.TPK, algorithm, KeyUsage.PIN_ENCRYPTION, ModeOfUse.DECRYPT_ONLY)
        return SoftKey(spec, clear, b"")

    # -- audit anchor ---------------------------------------------------------------

    def _anchor_file(self, store: str) -> Path | None:
        """``LMK.anchor`` (legacy, no store id) or ``LMK.anchor.<store id>``: one file per store."""
        if self._anchor_path is None or not store:
            return self._anchor_path
        return self._anchor_path.with_name(f"{self._anchor_path.name}.{store}")

    def _anchor_store(self, data: bytes, store: str) -> None:
        path = self._anchor_file(store)
        if path is None:
            self._anchor_mem[store] = data
            return
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        with open(str(path) + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            tmp.write_bytes(data)
            os.replace(tmp, path)

    def _anchor_load(self, store: str) -> bytes | None:
        path = self._anchor_file(store)
        if path is None:
            return self._anchor_mem.get(store)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None

    def close(self) -> None:
        with self._guard():
            self._cache.clear()
            self._dropped()


def _unseal(path: Path, passphrase: bytes) -> tuple[Algorithm, bytes]:
    try:
        blob = Path(path).read_bytes()
    except OSError as e:
        raise unreadable("sealed_lmk", path, e) from None
    algorithm, lmk, _ = sealed.unseal(blob, passphrase)
    return algorithm, lmk


def _variant_key(kek: SoftKey, key_type: KeyType) -> bytes:
    """The HSMSVC_VARIANT form's KEK for one key type (``policy.ECB_VARIANTS``)."""
    return components.variant(kek.raw(), ECB_VARIANTS[key_type])


def _soft(key: LoadedKey) -> SoftKey:
    if not isinstance(key, SoftKey):
        raise InvalidInput("key", "a key loaded by this backend")
    return key
