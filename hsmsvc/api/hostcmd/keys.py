"""Key management commands: A0 (generate), A6 (import under a ZMK), A8 (export under a ZMK or TMK),
FA (a ZPK from ZMK to LMK), BU (check value), HC (a TPK under its terminal's TMK).

Every key a command makes is a stored hsmsvc key: the reply's key under the LMK is ``S`` and its
stored cryptogram, which later commands name it by (``fields.Fields.stored_key``). A key under a
ZMK or TMK travels in the KEK's own form: payShield's variant (schemes ``U``/``T``) or X9.17 ECB
(``X``/``Y``) for a K0 KEK that opts in to it, a TR-31 block (``R``) under a K1 KEK.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from hsmsvc.api.hostcmd import codes
from hsmsvc.api.hostcmd.codes import HostError
from hsmsvc.api.hostcmd.fields import Fields, Wrapped
from hsmsvc.api.hostcmd.registry import command, key_ref
from hsmsvc.api.runner import Lane
from hsmsvc.errors import HsmsvcError
from hsmsvc.hsm import claims
from hsmsvc.hsm.model import BlockTemplate, KeySpec, LegacyForm
from hsmsvc.hsm.policy import Operation
from hsmsvc.keys.model import KeyRef, StoredKey
from hsmsvc.service import keys as uc
from hsmsvc.service.context import Caller, Services
from hsmsvc.types import Algorithm, Exportability, KeyType, KeyUsage, ModeOfUse

__all__ = ["KEY_TYPES", "KeyClass"]


@dataclass(frozen=True)
class KeyClass:
    """What a payShield key type code (3H) makes in hsmsvc: a type, its usage and mode of use."""

    key_type: KeyType
    usage: KeyUsage
    mode: ModeOfUse
    exportability: Exportability = Exportability.EXPORTABLE


_B, _C, _X = ModeOfUse.ENCRYPT_DECRYPT, ModeOfUse.MAC_GENERATE_VERIFY, ModeOfUse.DERIVE
_N = Exportability.NON_EXPORTABLE
KEY_TYPES: Final = {
    b"000": KeyClass(KeyType.ZMK, KeyUsage.KEK, _B, _N),
    b"001": KeyClass(KeyType.ZPK, KeyUsage.PIN_ENCRYPTION, _B),
    # payShield's pair 14-15 serves TMKs, TPKs and PVKs alike; an hsmsvc key is bound to one type.
    b"002": KeyClass(KeyType.TPK, KeyUsage.PIN_ENCRYPTION, _B),
    b"003": KeyClass(KeyType.TAK, KeyUsage.MAC_ISO9797_ALG3, _C),
    b"008": KeyClass(KeyType.MAK, KeyUsage.MAC_ISO9797_ALG3, _C),
    b"00A": KeyClass(KeyType.DEK, KeyUsage.DATA, _B),
    b"00B": KeyClass(KeyType.DEK, KeyUsage.DATA, _B),
    b"009": KeyClass(KeyType.BDK, KeyUsage.BDK, _X, _N),
    b"109": KeyClass(KeyType.IMK, KeyUsage.EMV_AC, _X, _N),
    b"402": KeyClass(KeyType.CVK, KeyUsage.CVK, _C, _N),
}
# The hsmsvc types a key type code may name when a command only reads a key (A8, BU).
_READS: Final = {b"002": (KeyType.TPK, KeyType.TMK, KeyType.PVK)}
_BY_TYPE: Final = {c.key_type: c for c in KEY_TYPES.values()}
# payShield's key block algorithm codes (the '#' attributes) and key scheme letters.
_ALGORITHMS: Final = {b"T2": Algorithm.TDES_2KEY, b"T3": Algorithm.TDES_3KEY, b"A1": Algorithm.AES_128,
                      b"A2": Algorithm.AES_192, b"A3": Algorithm.AES_256}
_SCHEMES: Final = {b"U": Algorithm.TDES_2KEY, b"T": Algorithm.TDES_3KEY}
_EXPORT: Final = "KeyService.ExportKey"
_FORM_LETTERS: Final = {LegacyForm.PAYSHIELD_VARIANT: ("U", "T"), LegacyForm.X917_ECB: ("X", "Y")}


def _key_type(f: Fields) -> bytes:
    code = f.take(3, "key type", codes.KEY_TYPE).upper()
    if code != b"FFF" and code not in KEY_TYPES:
        raise HostError(codes.KEY_TYPE, "key type")
    return code


def _lmk_scheme(f: Fields) -> Algorithm | None:
    """The key scheme (LMK): ``U``/``T`` a TDES key of that length, ``S`` a key block (its
    algorithm from the ``#`` attributes)."""
    scheme = f.take(1, "key scheme (LMK)", codes.KEY_SCHEME)
    if scheme == b"S":
        return None
    if scheme not in _SCHEMES:
        raise HostError(codes.KEY_SCHEME, "key scheme (LMK)")
    return _SCHEMES[scheme]


@dataclass(frozen=True)
class _Options:
    full_check_value: bool = True
    """A 16H check value asked for (KCV type 0, payShield's default), not 6H (type 1)."""
    key_class: KeyClass | None = None
    algorithm: Algorithm | None = None
    kcv: bytes | None = None


def _options(f: Fields) -> _Options:
    """The optional tail, its parts in any order: ``;`` and three characters (key scheme ZMK, key
    scheme LMK, KCV type); ``%`` and an LMK identifier (hsmsvc has one LMK: any is taken); ``#``
    and key block attributes; and hsmsvc's own ``$`` and the key's check value (6H), which an
    import in a legacy ECB form needs (``docs/host-commands.md``, "Deviations")."""
    full, cls, alg, kcv = True, None, None, None
    while f.rest():
        if f.skip(b";"):
            f.take(2, "key schemes")
            full = f.take(1, "key check value type") != b"1"
        elif f.skip(b"%"):
            f.digits(2, "LMK identifier")
        elif f.skip(b"$"):
            kcv = f.hex(6, "key check value")
        elif f.skip(b"#"):
            cls, alg = _attributes(f)
        else:
            break
    f.end()
    return _Options(full, cls, alg, kcv)


def _attributes(f: Fields) -> tuple[KeyClass, Algorithm]:
    """Key block attributes: usage 2A, algorithm 2A, mode of use 1A, version 2N, exportability 1A,
    optional blocks 2N (none)."""
    usage, alg_code = f.take(2, "key usage"), f.take(2, "algorithm")
    mode, _, exp = f.take(1, "mode of use"), f.digits(2, "key version"), f.take(1, "exportability")
    if f.number(2, "optional blocks") != 0:
        raise HostError(codes.INVALID_INPUT, "optional blocks")
    try:
        k_usage, k_mode, k_exp = KeyUsage(usage.decode()), ModeOfUse(mode.decode()), Exportability(exp.decode())
    except (ValueError, UnicodeDecodeError):
        raise HostError(codes.INVALID_INPUT, "key block attributes") from None
    kt = next((c.key_type for c in KEY_TYPES.values() if c.usage is k_usage), None)
    if kt is None or alg_code not in _ALGORITHMS:
        raise HostError(codes.INVALID_INPUT, "key block attributes")
    return KeyClass(kt, k_usage, k_mode, k_exp), _ALGORITHMS[alg_code]


def _check_value(kcv: bytes, full: bool) -> bytes:
    """6H; where 16H is asked for, the same 6H then zeros: hsmsvc never releases more of the
    enciphered zero block than X9.24-1's six digits (a whole block is a known plaintext pair)."""
    h = kcv[:3].hex().upper().encode()
    return h + b"0" * 10 if full else h


def _token(key: StoredKey) -> bytes:
    return b"S" + claims.to_text(key.cryptogram.blob).encode("ascii")


def _wrapped_text(kek: StoredKey, wrapped: bytes, algorithm: Algorithm) -> bytes:
    if kek.legacy_form is LegacyForm.NONE:
        return b"R" + wrapped
    letters = _FORM_LETTERS.get(kek.legacy_form)
    if letters is None:
        raise HostError(codes.KEY_SCHEME, "key scheme (ZMK)")
    return (letters[1] if algorithm is Algorithm.TDES_3KEY else letters[0]).encode() + wrapped.hex().upper().encode()


def _kek(s: Services, c: Caller, f: Fields, op: Operation) -> tuple[KeyRef, StoredKey]:
    ref = key_ref(s, c, f.stored_key("ZMK/TMK"), "kek")
    return ref, s.key(c, ref, op, "kek")


def _scheme_fits(kek: StoredKey, scheme: str) -> None:
    """The key scheme names the KEK's own form: a KEK carries keys in one form only."""
    if scheme == "R" and kek.cryptogram.spec.usage is KeyUsage.KBPK:
        return
    if scheme in _FORM_LETTERS.get(kek.legacy_form, ()):
        return
    raise HostError(codes.KEY_SCHEME, "key scheme (ZMK)")


def _spec(cls: KeyClass, algorithm: Algorithm) -> KeySpec:
    return KeySpec(uc.new_key_id(), 1, cls.key_type, algorithm, cls.usage, cls.mode, cls.exportability)


@command("A0", "KeyService.GenerateKey", Lane.OTHER)
def generate(s: Services, c: Caller, f: Fields) -> bytes:
    """A0: mode (0 generate, 1 and export), key type, key scheme (LMK); for mode 1 the ZMK or TMK
    (after an optional ``;`` and ZMK/TMK flag) and its key scheme. Reply: the key under the LMK,
    [under the ZMK], and its check value."""
    mode = f.take(1, "mode")
    if mode not in (b"0", b"1"):
        raise HostError(codes.INVALID_INPUT, "mode")
    code, algorithm = _key_type(f), _lmk_scheme(f)
    kek_ref: KeyRef | None = None
    kek: StoredKey | None = None
    if mode == b"1":
        # Generating and exporting in one command needs both grants: a principal narrowed to
        # GenerateKey must not export through A0 what it may not export through A8.
        c.principal.require_call(_EXPORT)
        if f.skip(b";"):
            f.digits(1, "ZMK/TMK flag")
        kek_ref, kek = _kek(s, c, f, Operation.KEY_EXPORT_UNDER)
        _scheme_fits(kek, f.take(1, "key scheme (ZMK)").decode("ascii", "replace"))
    o = _options(f)
    cls = o.key_class or KEY_TYPES.get(code)
    algorithm = algorithm or o.algorithm
    if cls is None or algorithm is None:
        raise HostError(codes.INVALID_INPUT, "key block attributes")
    key = uc.generate_key(s, c, spec=_spec(cls, algorithm), alias=None, lifetime_s=0, max_uses=0)
    out = _token(key)
    if kek_ref is not None and kek is not None:
        out += _wrapped_text(kek, _export_new(s, c, kek_ref, key), algorithm)
    return out + _check_value(key.cryptogram.kcv, False)


def _export_new(s: Services, c: Caller, kek: KeyRef, key: StoredKey) -> bytes:
    """A key this command made, exported under ``kek``; revoked (and audited so) if the export is
    refused, so a command that failed leaves no usable key behind."""
    try:
        return uc.export_key(s, c, kek, KeyRef(key_id=key.key_id, version=key.version))[0]
    except HsmsvcError:
        s.manager(c).revoke(key.key_id, key.version, "its export in the same host command was refused")
        raise


def _import(s: Services, c: Caller, f: Fields, code: bytes, kek_ref: KeyRef, kek: StoredKey,
            wrapped: Wrapped) -> tuple[StoredKey, bool]:
    _scheme_fits(kek, wrapped.scheme)
    o = _options(f)
    cls = o.key_class or KEY_TYPES.get(code)
    if cls is None:
        raise HostError(codes.KEY_TYPE, "key type")
    spec: KeySpec | BlockTemplate
    if wrapped.form is LegacyForm.NONE:
        spec = BlockTemplate(key_id=uc.new_key_id(), version=1, key_type=cls.key_type, usage=cls.usage,
                             mode_of_use=cls.mode, exportability=cls.exportability)
    else:
        spec = _spec(cls, Algorithm.TDES_3KEY if len(wrapped.data) == 24 else Algorithm.TDES_2KEY)
    key = uc.import_key(s, c, kek=kek_ref, wrapped=wrapped.data, kcv=o.kcv, spec=spec, alias=None)
    return key, o.full_check_value


@command("A6", "KeyService.ImportKey", Lane.OTHER)
def import_key(s: Services, c: Caller, f: Fields) -> bytes:
    """A6: key type, ZMK, the key under the ZMK, key scheme (LMK). Reply: the key under the LMK and
    its check value (6H)."""
    code = _key_type(f)
    kek_ref, kek = _kek(s, c, f, Operation.KEY_IMPORT_UNDER)
    wrapped = f.wrapped_key("key under ZMK")
    _lmk_scheme(f)
    key, _ = _import(s, c, f, code, kek_ref, kek, wrapped)
    return _token(key) + _check_value(key.cryptogram.kcv, False)


@command("FA", "KeyService.ImportKey", Lane.OTHER)
def translate_zpk_to_lmk(s: Services, c: Caller, f: Fields) -> bytes:
    """FA: ZMK, a ZPK under it. Reply: the ZPK under the LMK and its check value (16H, or 6H with
    KCV type 1)."""
    kek_ref, kek = _kek(s, c, f, Operation.KEY_IMPORT_UNDER)
    wrapped = f.wrapped_key("ZPK under ZMK")
    key, full = _import(s, c, f, b"001", kek_ref, kek, wrapped)
    return _token(key) + _check_value(key.cryptogram.kcv, full)


def _key_of_type(s: Services, c: Caller, f: Fields, code: bytes, op: Operation, field: str) -> KeyRef:
    ref = key_ref(s, c, f.stored_key(field, codes.DESTINATION_KEY), field)
    key = s.key(c, ref, op, field)
    if code != b"FFF":
        allowed = _READS.get(code) or (KEY_TYPES[code].key_type,)
        if key.cryptogram.spec.key_type not in allowed:
            raise HostError(codes.KEY_TYPE, "key type")
    return ref


@command("A8", _EXPORT, Lane.OTHER, destinations=("key",))
def export_key(s: Services, c: Caller, f: Fields) -> bytes:
    """A8: key type, ZMK or TMK, the key under the LMK, key scheme (ZMK). Reply: the key under the
    ZMK or TMK and its check value (6H)."""
    code = _key_type(f)
    if f.skip(b";"):
        f.digits(1, "ZMK/TMK flag")
    kek_ref, kek = _kek(s, c, f, Operation.KEY_EXPORT_UNDER)
    ref = _key_of_type(s, c, f, code, Operation.KEY_EXPORT, "key")
    scheme = f.take(1, "key scheme (ZMK)").decode("ascii", "replace")
    _scheme_fits(kek, scheme)
    if f.skip(b"&"):
        f.take(1, "exportability")
    _options(f)
    wrapped, kcv = uc.export_key(s, c, kek_ref, ref)
    algorithm = s.keys.lookup(ref).cryptogram.spec.algorithm
    return _wrapped_text(kek, wrapped, algorithm) + _check_value(kcv, False)


@command("BU", "KeyService.GetKeyCheckValue", Lane.OTHER)
def check_value(s: Services, c: Caller, f: Fields) -> bytes:
    """BU: key type code (2, ``FF``: the 3H type after ``;``), key length flag, key. Reply: its
    check value (16H, or 6H with KCV type 1)."""
    code = f.take(2, "key type code", codes.KEY_TYPE)
    if f.take(1, "key length flag", codes.KEY_LENGTH_FLAG) not in (b"0", b"1", b"2", b"F"):
        raise HostError(codes.KEY_LENGTH_FLAG, "key length flag")
    ref = key_ref(s, c, f.stored_key("key"), "key")
    if code.upper() == b"FF":  # the key type follows the key
        if not f.skip(b";"):
            raise HostError(codes.KEY_TYPE, "key type")
        f.take(3, "key type", codes.KEY_TYPE)
    o = _options(f)
    kcv, _ = uc.key_check_value(s, c, ref)
    return _check_value(kcv, o.full_check_value)


@command("HC", "KeyService.GenerateKey", Lane.OTHER)
def terminal_key(s: Services, c: Caller, f: Fields) -> bytes:
    """HC: the terminal's current TMK. Reply: a new TPK under that TMK and under the LMK.

    payShield's HC makes a key of the current key's own pair; an hsmsvc TMK only carries keys, so
    the new key is the terminal's TPK."""
    c.principal.require_call(_EXPORT)  # as A0 mode 1: a key made and exported
    kek_ref, kek = _kek(s, c, f, Operation.KEY_EXPORT_UNDER)
    if kek.cryptogram.spec.key_type is not KeyType.TMK:
        raise HostError(codes.SOURCE_KEY, "current key")
    _options(f)
    algorithm = kek.cryptogram.spec.algorithm if kek.cryptogram.spec.algorithm.is_tdes else Algorithm.AES_128
    key = uc.generate_key(s, c, spec=_spec(_BY_TYPE[KeyType.TPK], algorithm), alias=None, lifetime_s=0, max_uses=0)
    return _wrapped_text(kek, _export_new(s, c, kek_ref, key), algorithm) + _token(key)
