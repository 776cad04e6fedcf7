"""The PKCS#11 backend (python-pkcs11), tested against SoftHSM2.

* The LMK is a token object (AES-256, CKA_EXTRACTABLE false, CKA_SENSITIVE
  true) created once from the custodians' components by :func:`provision_lmk`.
  Its backup is the set of components, not the token.
* A stored key is ``len || attributes || C_WrapKey(LMK, AES-KWP, key) || tag``
  where ``tag`` is the LMK's CMAC (computed in the token) over a domain label and
  everything before it. The attributes are those of :class:`KeySpec` plus the
  KCV, so type, usage, algorithm, id, version, zone and KCV are all bound.
* Loaded keys are session objects unwrapped with only the CKA_ENCRYPT /
  CKA_DECRYPT / CKA_SIGN / CKA_VERIFY their usage and mode of use need, so the
  token refuses other uses a second time. They are cached by key id and version
  (bounded LRU), checked against the cryptogram on every hit, and destroyed by
  :meth:`forget` on rotation or revocation.

Where clear values exist in host memory (a generic token has no payment
commands): a PIN translation or verification deciphers the PIN block in the
token and parses it here, so the clear PIN block is in this process's memory
for the duration of the call; importing a key in the ECB form deciphers it in
the token and creates the object from host memory; forming a key from
components XORs them here. A payment HSM does all of this inside its boundary.

SoftHSM is not thread-safe under python-pkcs11 (``platform-notes.md``): one
session per process, every call under the backend's one lock; scale with more
processes (the pool spawns them).
"""

from __future__ import annotations

import itertools
import secrets
from collections import OrderedDict
from typing import Any, Final

import pkcs11
from pkcs11 import Attribute, Mechanism, ObjectClass
from pkcs11 import KeyType as P11KeyType
from pkcs11 import exceptions as p11e

from hsmsvc.crypto import compare, components, kcv
from hsmsvc.errors import (
    BackendUnavailable,
    HsmsvcError,
    InvalidInput,
    InvalidKeyBlock,
    KeyUsageViolation,
    Unsupported,
)
from hsmsvc.hsm.model import BlockTemplate, Capabilities, Command, KeyCryptogram, KeySpec
from hsmsvc.hsm.commands.base import LoadedKey
from hsmsvc.hsm.commands.core import CommandBackend
from hsmsvc.hsm.pkcs11.running import RunningOps
from hsmsvc.types import (
    Algorithm,
    KeyType,
    KeyUsage,
    MacAlgorithm,
    ModeOfUse,
    PinBlockFormat,
)
from hsmsvc.hsm.pkcs11.tokenkey import TokenKey

__all__ = ["PKCS11_CAPABILITIES", "Pkcs11Backend", "provision_lmk"]

LMK_LABEL: Final = "hsmsvc-lmk"
ANCHOR_LABEL: Final = "hsmsvc-audit-anchor"
_KEY_DOMAIN: Final = b"hsmsvc/p11-key/v1\x00"

PKCS11_CAPABILITIES: Final = Capabilities(
    # No EXPORT_KEY: producing the ECB or TR-31 form would need the clear key
    # outside the token, and SoftHSM has no CKM_DES3_ECB key wrap.
    # No KTKs: SoftHSM 2.6 does RSA-OAEP with SHA-1 only (SHA-256 parameters
    # give CKR_ARGUMENTS_BAD, measured here), and hsmsvc's scheme is OAEP-SHA-256.
    # No IMPORT_KEY: TR-31 needs the KBPK's derived keys outside the token, and the
    # legacy form's variants need XOR derivation (no CKM_XOR_BASE_AND_DATA).
    # No FORM_KEY_WRAPPED: components travel under a CTK, which is RSA-OAEP-SHA-256, SM2 or P-521 ECIES.
    # No LMK_BACKUP: the token LMK is non-extractable; its backup is its creation components.
    # No DUKPT: the IPEK's right half is the BDK XOR a variant, and each derivation step DES
    # under a key half XOR data: no standard mechanism (CKM_XOR_BASE_AND_DATA) in SoftHSM.
    # No CARD: the CVV method DES-enciphers under the CVK's left half alone, and the EMV card key
    # derivation and session keys make keys from ciphertext (CKM_DES3_ECB_ENCRYPT_DATA, absent in SoftHSM).
    commands=frozenset(Command)
    - {Command.EXPORT_KEY, Command.IMPORT_KEY, Command.KEY_SYNC_MAC, Command.PUBLIC_KEY, Command.ONE_TIME_PIN_KEY,
       Command.FORM_KEY_WRAPPED, Command.LMK_BACKUP, Command.LMK_TRANSLATE, Command.KEY_AGREE, Command.DUKPT,
       Command.CARD},
    # SoftHSM2 has no SM2, SM3 or SM4 mechanisms (so no HMAC_SM3_256 key either).
    # No KAKs: key agreement would need CKM_ECDH1_DERIVE and the SP 800-56C KDF in the token.
    # No signature keys yet (SIG, CSK): the soft backend signs (docs/architecture.md).
    algorithms=frozenset(Algorithm) - {Algorithm.SM4, Algorithm.RSA_2048, Algorithm.RSA_3072, Algorithm.SM2,
                                       Algorithm.ECC_P521, Algorithm.ECC_P256, Algorithm.ECC_P384,
                                       Algorithm.HMAC_SM3_256},
    # No DES3_MAC in SoftHSM (so no retail MAC), no SM3 HMAC.
    mac_algorithms=frozenset(
        {MacAlgorithm.ISO9797_ALG1, MacAlgorithm.CMAC, MacAlgorithm.HMAC_SHA256}
    ),
    pin_formats=frozenset(PinBlockFormat) - {PinBlockFormat.SM4_0},
)

_TYPE: Final = {
    Algorithm.TDES_2KEY: P11KeyType.DES2,
    Algorithm.TDES_3KEY: P11KeyType.DES3,
    Algorithm.AES_128: P11KeyType.AES,
    Algorithm.AES_192: P11KeyType.AES,
    Algorithm.AES_256: P11KeyType.AES,
}

_UNAVAILABLE: Final = (
    p11e.DeviceError,
    p11e.DeviceRemoved,
    p11e.DeviceMemory,
    p11e.SessionHandleInvalid,
    p11e.SessionClosed,
    p11e.TokenNotPresent,
    p11e.TokenNotRecognised,
    p11e.GeneralError,
    p11e.FunctionFailed,
    p11e.HostMemory,
    p11e.UserNotLoggedIn,
)
_USAGE: Final = (p11e.KeyTypeInconsistent, p11e.FunctionNotSupported, p11e.MechanismInvalid)
_INPUT: Final = (
    p11e.DataLenRange,
    p11e.DataInvalid,
    p11e.EncryptedDataInvalid,
    p11e.EncryptedDataLenRange,
    p11e.WrappedKeyInvalid,
    p11e.WrappedKeyLenRange,
)


def _capabilities(spec: KeySpec) -> dict[Attribute, bool]:
    """The token-enforced uses of an unwrapped key, from its usage and mode of use."""
    m, u = spec.mode_of_use, spec.usage
    enc = m in (ModeOfUse.ENCRYPT_DECRYPT, ModeOfUse.ENCRYPT_ONLY, ModeOfUse.NO_RESTRICTIONS)
    dec = m in (ModeOfUse.ENCRYPT_DECRYPT, ModeOfUse.DECRYPT_ONLY, ModeOfUse.NO_RESTRICTIONS)
    if u in (KeyUsage.MAC_CMAC, KeyUsage.MAC_HMAC):
        return {Attribute.SIGN: True, Attribute.ENCRYPT: False, Attribute.DECRYPT: False}
    if u is KeyUsage.MAC_ISO9797_ALG1:  # CBC-MAC is a CBC encipherment in the token
        return {Attribute.ENCRYPT: True, Attribute.DECRYPT: False, Attribute.SIGN: False}
    if u in (KeyUsage.PIN_VERIFICATION_IBM3624, KeyUsage.PIN_VERIFICATION_VISA_PVV):
        return {Attribute.ENCRYPT: True, Attribute.DECRYPT: False, Attribute.SIGN: False}
    if u is KeyUsage.PIN_ENCRYPTION and spec.key_type is KeyType.PSK:
        return {Attribute.ENCRYPT: True, Attribute.DECRYPT: True, Attribute.SIGN: False}
    return {Attribute.ENCRYPT: enc, Attribute.DECRYPT: dec, Attribute.SIGN: False}


def _p11_type(spec: KeySpec) -> P11KeyType:
    if spec.usage is KeyUsage.MAC_HMAC:
        return P11KeyType.GENERIC_SECRET
    try:
        return _TYPE[spec.algorithm]
    except KeyError:
        raise Unsupported("algorithm", f"{spec.algorithm.value} is not supported by this backend") from None


def provision_lmk(module: str, token_label: str, pin: str, parts: list[bytes]) -> bytes:
    """Create the LMK in the token from the custodians' components; returns its KCV.

    Refuses if the token already holds an LMK: a second one is a ceremony, not
    a start-up step.
    """
    lmk = components.combine(Algorithm.AES_256, parts)
    try:
        token = pkcs11.lib(module).get_token(token_label=token_label)
        with token.open(user_pin=pin, rw=True) as s:
            if list(s.get_objects({Attribute.LABEL: LMK_LABEL, Attribute.CLASS: ObjectClass.SECRET_KEY})):
                raise InvalidInput("token", "already holds an hsmsvc LMK")
            s.create_object(
                {
                    Attribute.CLASS: ObjectClass.SECRET_KEY,
                    Attribute.KEY_TYPE: P11KeyType.AES,
                    Attribute.VALUE: lmk,
                    Attribute.TOKEN: True,
                    Attribute.PRIVATE: True,
                    Attribute.LABEL: LMK_LABEL,
                    Attribute.EXTRACTABLE: False,
                    Attribute.SENSITIVE: True,
                    Attribute.WRAP: True,
                    Attribute.UNWRAP: True,
                    Attribute.SIGN: True,
                    Attribute.VERIFY: True,
                    Attribute.ENCRYPT: False,
                    Attribute.DECRYPT: False,
                }
            )
    except p11e.PKCS11Error as e:
        raise BackendUnavailable("token", f"PKCS#11 error {type(e).__name__}") from None
    return kcv.kcv(Algorithm.AES_256, lmk)


def remove_lmk(module: str, token_label: str, pin: str, lmk_kcv: bytes) -> None:
    """Destroy the token's hsmsvc LMK, only if its KCV is ``lmk_kcv``: a ceremony that formed it and
    then failed (its mailers taken back) must not leave an LMK nobody holds components for."""
    try:
        token = pkcs11.lib(module).get_token(token_label=token_label)
        with token.open(user_pin=pin, rw=True) as s:
            found: list[Any] = list(s.get_objects({Attribute.LABEL: LMK_LABEL,
                                                   Attribute.CLASS: ObjectClass.SECRET_KEY}))
            for key in found:
                mine = bytes(key.sign(bytes(16), mechanism=Mechanism.AES_CMAC))[: len(lmk_kcv)]
                if compare.bytes_eq(mine, lmk_kcv):
                    key.destroy()
    except p11e.PKCS11Error as e:
        raise BackendUnavailable("token", f"PKCS#11 error {type(e).__name__}") from None


class Pkcs11Backend(CommandBackend):
    """Payment commands over a PKCS#11 token holding the LMK."""

    def __init__(self, module: str, token_label: str, pin: str, cache_size: int = 1024,
                 running_ops: int = 64) -> None:
        super().__init__(PKCS11_CAPABILITIES)
        self._cache: OrderedDict[tuple[str, int], tuple[bytes, TokenKey]] = OrderedDict()
        self._cache_size = cache_size
        try:
            self._token = pkcs11.lib(module).get_token(token_label=token_label)
            # One logged-in session for the life of the process (a second login
            # raises UserAlreadyLoggedIn; see platform-notes.md).
            self._session = self._token.open(user_pin=pin, rw=True)
            found: list[Any] = list(
                self._session.get_objects(
                    {Attribute.LABEL: LMK_LABEL, Attribute.CLASS: ObjectClass.SECRET_KEY}
                )
            )
        except p11e.PKCS11Error as e:
            raise BackendUnavailable("token", f"cannot open: {type(e).__name__}") from None
        except (OSError, RuntimeError):
            raise BackendUnavailable("token", "PKCS#11 module or token not found") from None
        if len(found) != 1:
            self._session.close()
            raise BackendUnavailable("token", "holds no hsmsvc LMK (run `hsmsvc lmk init --pkcs11`)")
        self._lmk = found[0]
        # Each a session of its own; a token's session limit should allow for them.
        self._running = RunningOps(self._token, running_ops)
        # CKA_IDs for loaded keys, so a running operation's session can find them;
        # the prefix keeps two backends on one token from making the same ones.
        self._idents = itertools.count(1)
        self._ident_prefix = secrets.token_hex(8).encode("ascii")
        self._lmk_kcv_value = bytes(self._lmk.sign(bytes(16), mechanism=Mechanism.AES_CMAC))[:3]

    def __repr__(self) -> str:
        return f"Pkcs11Backend(lmk_kcv={self._lmk_kcv_value.hex().upper()})"

    def _translate(self, error: Exception) -> HsmsvcError | None:
        if isinstance(error, _UNAVAILABLE):
            return BackendUnavailable("hsm", f"token error {type(error).__name__}")
        # python-pkcs11 gives a key only the methods its CKA_* flags allow, so a
        # use the token forbids surfaces as a missing method.
        if isinstance(error, _USAGE) or (
            isinstance(error, AttributeError) and error.name in ("encrypt", "decrypt", "sign", "verify")
        ):
            return KeyUsageViolation("key", "the token refused this use of the key")
        if isinstance(error, _INPUT):
            return InvalidInput("data", "the token refused the data's length or form")
        if isinstance(error, p11e.PKCS11Error):
            return BackendUnavailable("hsm", f"token error {type(error).__name__}")
        return None

    # -- LMK ---------------------------------------------------------------------

    def _lmk_kcv(self) -> bytes:
        return self._lmk_kcv_value

    def _lmk_cmac(self, data: bytes) -> bytes:
        return bytes(self._lmk.sign(data, mechanism=Mechanism.AES_CMAC))

    def _random(self, length: int) -> bytes:
        return bytes(self._session.generate_random(8 * length))

    # -- wrapped keys ----------------------------------------------------------------

    def _blob(self, spec: KeySpec, key_kcv: bytes, wrapped: bytes) -> bytes:
        attrs = (spec.attributes() + ";kcv=" + key_kcv.hex().upper()).encode("ascii")
        body = len(attrs).to_bytes(2, "big") + attrs + wrapped
        return body + self._lmk_cmac(_KEY_DOMAIN + body)

    def _seal_object(self, spec: KeySpec, obj: Any, key_kcv: bytes) -> KeyCryptogram:
        try:
            wrapped = bytes(self._lmk.wrap_key(obj, mechanism=Mechanism.AES_KEY_WRAP_PAD))
        finally:
            obj.destroy()
        return KeyCryptogram(spec, self._blob(spec, key_kcv, wrapped), key_kcv)

    def _temp_object(self, spec: KeySpec, clear: bytes) -> Any:
        return self._session.create_object(
            {
                Attribute.CLASS: ObjectClass.SECRET_KEY,
                Attribute.KEY_TYPE: _p11_type(spec),
                Attribute.VALUE: clear,
                Attribute.TOKEN: False,
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: True,
            }
        )

    def _seal_clear(self, spec: KeySpec, clear: bytes) -> KeyCryptogram:
        components.check_key(spec.algorithm, clear)
        return self._seal_object(spec, self._temp_object(spec, clear), kcv.kcv(spec.algorithm, clear))

    def _new_key(self, spec: KeySpec) -> KeyCryptogram:
        _p11_type(spec)
        while True:
            # The token's RNG; the value passes host memory once, as for a formed key.
            clear = bytes(self._session.generate_random(8 * spec.algorithm.key_length))
            if spec.algorithm.is_tdes:
                clear = components.adjust_odd_parity(clear)
            try:
                return self._seal_clear(spec, clear)
            except InvalidInput:
                continue

    def _load(self, key: KeyCryptogram) -> TokenKey:
        ident = (key.spec.key_id, key.spec.version)
        hit = self._cache.get(ident)
        if hit is not None and hit[0] == key.blob and hit[1].spec == key.spec and hit[1].kcv == key.kcv:
            self._cache.move_to_end(ident)
            return hit[1]
        loaded = self._unwrap(key)
        old = self._cache.pop(ident, None)
        if old is not None:
            self._destroy(old[1])
        self._cache[ident] = (key.blob, loaded)
        if len(self._cache) > self._cache_size:
            _, (_, evicted) = self._cache.popitem(last=False)
            self._destroy(evicted)
        return loaded

    def _destroy(self, loaded: TokenKey) -> None:
        # Its running operations first: they would otherwise go on with the key.
        self._dropped()
        self._running.stop(loaded.ident)
        loaded.obj.destroy()

    def _unwrap(self, key: KeyCryptogram) -> TokenKey:
        blob = key.blob
        if not isinstance(blob, bytes) or len(blob) < 2 + 16 + 16:
            raise InvalidKeyBlock()
        body, tag = blob[:-16], blob[-16:]
        if not self._lmk.verify(_KEY_DOMAIN + body, tag, mechanism=Mechanism.AES_CMAC):
            raise InvalidKeyBlock()
        n = int.from_bytes(body[:2], "big")
        try:
            text = body[2 : 2 + n].decode("ascii")
            attrs, kcv_hex = text.rsplit(";kcv=", 1)
            bound, bound_kcv = KeySpec.parse(attrs), bytes.fromhex(kcv_hex)
        except (UnicodeDecodeError, ValueError, InvalidInput):
            raise InvalidKeyBlock() from None
        if bound != key.spec or bound_kcv != key.kcv:
            raise KeyUsageViolation("key", "stored attributes do not match the key block")
        tag = b"hsmsvc-%s-%d" % (self._ident_prefix, next(self._idents))
        template = {
            Attribute.TOKEN: False,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.WRAP: False,
            Attribute.UNWRAP: False,
            Attribute.VERIFY: False,
            Attribute.ID: tag,
            **_capabilities(bound),
        }
        obj = self._lmk.unwrap_key(
            ObjectClass.SECRET_KEY,
            _p11_type(bound),
            body[2 + n :],
            mechanism=Mechanism.AES_KEY_WRAP_PAD,
            template=template,
        )
        return TokenKey(bound, obj, bound_kcv, tag, self._running)

    def _forget(self, key_id: str) -> None:
        with self._guard():
            self._dropped()
            for ident in [i for i in self._cache if i[0] == key_id]:
                self._destroy(self._cache.pop(ident)[1])

    # -- keys across a ZMK/TMK ----------------------------------------------------

    def _import(self, kek: LoadedKey, wrapped: bytes, template: KeySpec | BlockTemplate) -> KeyCryptogram:
        if kek.spec.usage is KeyUsage.KBPK:
            raise Unsupported("kek", "TR-31 import needs the KBPK's derived keys outside the token")
        # Legacy forms come through _import_legacy, which this backend does not
        # provide: the variant forms need XOR derivation in the token (no
        # CKM_XOR_BASE_AND_DATA in SoftHSM) and X9.17 ECB a CKM_DES3_ECB unwrap.
        raise Unsupported("kek", "the legacy ECB forms are not supported by this backend")

    def _export(self, kek: LoadedKey, key: LoadedKey) -> bytes:
        raise Unsupported("command", "EXPORT_KEY is not supported by this backend")

    # -- audit anchor ---------------------------------------------------------------

    def _anchor_objects(self, store: str = "") -> list[Any]:
        """The token data object holding ``store``'s anchor (one per store: one token may serve several)."""
        label = f"{ANCHOR_LABEL}.{store}" if store else ANCHOR_LABEL
        return list(self._session.get_objects({Attribute.CLASS: ObjectClass.DATA, Attribute.LABEL: label}))

    def _anchor_store(self, data: bytes, store: str) -> None:
        with self._guard():  # the main session is the backend lock's
            self._anchor_replace(data, store)

    def _anchor_replace(self, data: bytes, store: str) -> None:
        for obj in self._anchor_objects(store):
            obj.destroy()
        self._session.create_object(
            {
                Attribute.CLASS: ObjectClass.DATA,
                Attribute.LABEL: f"{ANCHOR_LABEL}.{store}" if store else ANCHOR_LABEL,
                Attribute.APPLICATION: "hsmsvc",
                Attribute.VALUE: data,
                Attribute.TOKEN: True,
                Attribute.PRIVATE: True,
            }
        )

    def _anchor_load(self, store: str) -> bytes | None:
        with self._guard():
            found = self._anchor_objects(store)
            return bytes(found[0][Attribute.VALUE]) if found else None

    def close(self) -> None:
        with self._lock:
            self._dropped()
            self._running.close()
            for _, loaded in self._cache.values():
                try:
                    loaded.obj.destroy()
                except p11e.PKCS11Error:
                    pass
            self._cache.clear()
            try:
                self._session.close()
            except p11e.PKCS11Error:
                pass

