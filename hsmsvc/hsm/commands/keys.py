"""Key commands: generation, forming from components (dual control), import and export under a
ZMK/TMK (ANSI X9.24-1, TR-31), KCVs, key-change MACs and KTK public halves."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from hsmsvc.crypto import compare, cmac, components, kcv
from hsmsvc.errors import InvalidInput, KeyUsageViolation, VerificationFailed
from hsmsvc.hsm import policy
from hsmsvc.hsm.commands.base import STRENGTH, HsmCommand, LoadedKey, check_data
from hsmsvc.hsm.domains import KEY_SYNC_LABEL
from hsmsvc.hsm.model import BlockTemplate, Command, KeyCryptogram, KeySpec, LegacyForm
from hsmsvc.hsm.policy import Operation
from hsmsvc.types import Algorithm, KcvMethod, KeyType, KeyUsage, MacAlgorithm, Padding

if TYPE_CHECKING:
    from hsmsvc.hsm.commands.core import CommandBackend

__all__ = [
    "derived_kek",
    "export_derived",
    "CheckComponent",
    "ExportKey",
    "FormKey",
    "FormKeyWrapped",
    "GenerateKey",
    "ImportKey",
    "Kcv",
    "KeySyncMac",
    "PublicKey",
    "SameValue",
]


@dataclass(frozen=True, kw_only=True, repr=False)
class GenerateKey(HsmCommand[KeyCryptogram]):
    """A fresh random key (a key pair for RSA/SM2) under the LMK, bound to ``spec``."""

    spec: KeySpec

    def run(self, b: CommandBackend) -> KeyCryptogram:
        b._capabilities.require(Command.GENERATE_KEY, self.spec.algorithm)
        with b._guard():
            return b._new_key(self.spec)


@dataclass(frozen=True, kw_only=True, repr=False)
class FormKey(HsmCommand[tuple[KeyCryptogram, list[bytes]]]):
    """XOR clear components (dual control) into a key; returns it and each component's KCV."""

    spec: KeySpec
    components: Sequence[bytes | bytearray]

    def run(self, b: CommandBackend) -> tuple[KeyCryptogram, list[bytes]]:
        spec, parts = self.spec, self.components
        b._capabilities.require(Command.FORM_KEY, spec.algorithm)
        clear = components.combine(spec.algorithm, parts)
        with b._guard():
            return b._seal_clear(spec, clear), components.component_kcvs(spec.algorithm, parts)


def _component(b: CommandBackend, *, ctk: LoadedKey, algorithm: Algorithm, wrapped: bytes, check: bytes,
               field: str) -> bytes:
    """One custodian's clear component, unwrapped under the CTK and matched to its KCV.

    Every fault (OAEP or SM2 decoding, length, KCV) is the same refusal, so
    the unwrap answers no more than "this is not the component you named".
    """
    if not isinstance(wrapped, (bytes, bytearray)) or not 1 <= len(wrapped) <= 1024:
        raise InvalidInput(f"{field}.wrapped_component", "1 to 1024 bytes")
    if not isinstance(check, (bytes, bytearray)) or not 2 <= len(check) <= 8:
        raise InvalidInput(f"{field}.kcv", "2 to 8 bytes")
    try:
        clear = b._transport_decrypt(ctk, bytes(wrapped))
        ok = len(clear) == algorithm.key_length and compare.bytes_eq(
            components.component_kcvs(algorithm, [clear])[0][: len(check)], bytes(check)
        )
    except InvalidInput:
        ok = False
    if not ok:
        raise VerificationFailed(f"{field}.kcv", "the component under the CTK does not have this KCV")
    return clear


def _ctk(b: CommandBackend, ctk: KeyCryptogram, algorithm: Algorithm) -> LoadedKey:
    b._capabilities.require(Command.FORM_KEY_WRAPPED, algorithm)
    if algorithm.is_asymmetric:
        raise InvalidInput("algorithm", "a key pair is generated, never formed from components")
    k = b._use(ctk, Operation.COMPONENT_DECRYPT)
    if STRENGTH[algorithm] > STRENGTH[k.algorithm]:
        raise KeyUsageViolation("transport_key", f"weaker than the {algorithm.value} key it would carry (X9.24-1)")
    return k


@dataclass(frozen=True, kw_only=True, repr=False)
class CheckComponent(HsmCommand[None]):
    """Refuse a component (under a CTK's public half) that does not match its KCV."""

    ctk: KeyCryptogram
    algorithm: Algorithm
    wrapped: bytes
    kcv: bytes

    def run(self, b: CommandBackend) -> None:
        with b._guard():
            _component(b, ctk=_ctk(b, self.ctk, self.algorithm), algorithm=self.algorithm, wrapped=self.wrapped,
                       check=self.kcv, field="component")


@dataclass(frozen=True, kw_only=True, repr=False)
class FormKeyWrapped(HsmCommand[tuple[KeyCryptogram, list[bytes]]]):
    """Form a key from (component under the CTK, its KCV) pairs; returns it and the KCVs."""

    spec: KeySpec
    ctk: KeyCryptogram
    parts: Sequence[tuple[bytes, bytes]]

    def run(self, b: CommandBackend) -> tuple[KeyCryptogram, list[bytes]]:
        spec, parts = self.spec, self.parts
        if not 2 <= len(parts) <= 9:
            raise InvalidInput("components", "2 to 9 (dual control)")
        with b._guard():
            k = _ctk(b, self.ctk, spec.algorithm)
            clear = [_component(b, ctk=k, algorithm=spec.algorithm, wrapped=w, check=c,
                                field=f"components[{i}]") for i, (w, c) in enumerate(parts)]
            kcvs = components.component_kcvs(spec.algorithm, clear)
            return b._seal_clear(spec, components.combine(spec.algorithm, clear)), kcvs


def _check_carry(kek: KeySpec, key: KeySpec | BlockTemplate) -> None:
    """X9.24-1: the KEK may carry this type, and is no weaker (once the key's algorithm is known)."""
    if key.key_type not in policy.EXPORTABLE_UNDER[kek.key_type]:
        raise KeyUsageViolation("kek", f"a {kek.key_type.value} may not carry a {key.key_type.value}")
    if isinstance(key, KeySpec) and STRENGTH[key.algorithm] > STRENGTH[kek.algorithm]:
        raise KeyUsageViolation("kek", "weaker than the key it would carry (X9.24-1)")


def _kcv_mismatch(algorithm: Algorithm, method: KcvMethod) -> VerificationFailed:
    """A stated KCV the verified key does not have; for AES, naming the method it was held to.

    The method is the caller's own choice (or the default) and the algorithm is in the authentic
    header or the template: naming them tells nothing about the key, and saves a partner who
    states the legacy ECB form a blind retry.
    """
    if not algorithm.is_aes:
        return VerificationFailed("kcv", "does not match the imported key")
    if method is KcvMethod.CMAC:
        return VerificationFailed("kcv", "does not match the imported key (CMAC method; set kcv_method for the "
                                         "ECB form)")
    return VerificationFailed("kcv", "does not match the imported key (ECB method; leave kcv_method unset for "
                                     "the CMAC form of X9.24-1:2017)")


def _kcv_as(b: CommandBackend, key: KeyCryptogram, method: KcvMethod | None) -> bytes:
    """``key``'s KCV by ``method`` (3 bytes; never more of the zero block's encipherment). Under the guard."""
    alg = key.spec.algorithm
    if alg.is_asymmetric:
        if method is not None:
            raise InvalidInput("kcv_method", "a key pair's check value is its fingerprint")
        return key.kcv
    m = kcv.check_method(alg, method)
    if m is kcv.default_method(alg):
        return key.kcv
    loaded, zeros = b._load(key), bytes(alg.block_size)
    if m is KcvMethod.CMAC:  # an SM4 key's KCV in the CMAC form, for a partner that states it so
        return loaded.mac(MacAlgorithm.CMAC, Padding.METHOD_1, zeros)[:3]
    return loaded.encrypt(zeros)[:3]


def _check_form(kek: KeySpec, form: LegacyForm) -> None:
    """A K0 KEK works in the legacy form chosen for it; a K1 KEK (TR-31) in none."""
    if not isinstance(form, LegacyForm):
        raise InvalidInput("legacy_form", "a LegacyForm")
    if kek.usage is KeyUsage.KEK and form is LegacyForm.NONE:
        raise KeyUsageViolation("kek", "no legacy form has been chosen for this K0 KEK")
    if kek.usage is not KeyUsage.KEK and form is not LegacyForm.NONE:
        raise KeyUsageViolation("kek", "a legacy form is for K0 KEKs only; this one takes TR-31 key blocks")


@dataclass(frozen=True, kw_only=True, repr=False)
class ImportKey(HsmCommand[KeyCryptogram]):
    """Take a key under a ZMK/TMK into the LMK: a TR-31 block under a K1 KEK, the KEK's ``form`` under a K0.

    In a legacy form every fault found after deciphering (length, parity-adjusted
    weak or equal parts, KCV) is the one :class:`InvalidKeyBlock`, as for TR-31.
    The X9.17 and payShield forms bind no key type, so they need the sender's KCV.
    A :class:`BlockTemplate` (TR-31 only) takes its algorithm from the verified
    header; the KEK's strength is then held to the key once that is known.
    ``kcv_method``: the form of the stated ``kcv`` (None: the key's default).
    """

    kek: KeyCryptogram
    wrapped: bytes
    spec: KeySpec | BlockTemplate
    kcv: bytes | None = None
    form: LegacyForm = LegacyForm.NONE
    kcv_method: KcvMethod | None = None

    def run(self, b: CommandBackend) -> KeyCryptogram:
        spec, wrapped, check, method = self.spec, self.wrapped, self.kcv, self.kcv_method
        known = isinstance(spec, KeySpec)
        stated = (spec.algorithm,) if isinstance(spec, KeySpec) else ()
        b._capabilities.require(Command.IMPORT_KEY, *stated, self.kek.spec.algorithm)
        if not isinstance(wrapped, (bytes, bytearray)) or not 8 <= len(wrapped) <= 9999:
            raise InvalidInput("wrapped_key", "8 to 9999 bytes")
        _check_form(self.kek.spec, self.form)
        if not known and self.form is not LegacyForm.NONE:
            raise InvalidInput("template.algorithm", "required under a K0 KEK: only a TR-31 header names it")
        if method is not None and not isinstance(method, KcvMethod):
            raise InvalidInput("kcv_method", "a KcvMethod")
        if isinstance(spec, KeySpec):
            kcv.check_method(spec.algorithm, method)
        # A stored KCV is 3 bytes (X9.24-1:2017); the sender may state its first 2.
        if check is not None and (not isinstance(check, (bytes, bytearray)) or not 2 <= len(check) <= 3):
            raise InvalidInput("kcv", "2 to 3 bytes")
        if check is None and self.form in (LegacyForm.X917_ECB, LegacyForm.PAYSHIELD_VARIANT):
            raise InvalidInput("kcv", f"required: the {self.form.value} form binds no key type, the KCV checks it")
        with b._guard():
            k = b._use(self.kek, Operation.KEY_IMPORT_UNDER)
            _check_carry(k.spec, spec)
            if self.form is not LegacyForm.NONE and isinstance(spec, KeySpec):
                return b._import_legacy(k, bytes(wrapped), spec, self.form, None if check is None else bytes(check),
                                        method)
            out = b._import(k, bytes(wrapped), spec)
            if not known:
                # The header has named the algorithm: the checks a stated one had before the unwrap.
                b._capabilities.require(Command.IMPORT_KEY, out.spec.algorithm)
                _check_carry(k.spec, out.spec)
            if check is None:
                return out
            alg = out.spec.algorithm
            computed = _kcv_as(b, out, method)
        if not compare.bytes_eq(computed[: len(check)], bytes(check)):
            raise _kcv_mismatch(alg, kcv.check_method(alg, method))
        return out


def derived_kek(b: CommandBackend, kek: KeyCryptogram, what: str, carried: KeyType) -> LoadedKey:
    """The KEK a key made inside a command (an IPEK, a user's key) leaves under: a K1 ZMK or TMK that
    may carry its type (``policy.EXPORTABLE_UNDER``), since an ECB form binds no usage and the key
    could be taken in again as a DEK."""
    k = b._use(kek, Operation.KEY_EXPORT_UNDER)
    if k.spec.usage is not KeyUsage.KBPK:
        raise KeyUsageViolation("kek", f"{what} leaves only in a TR-31 block: a K1 KEK")
    if carried not in policy.EXPORTABLE_UNDER.get(k.spec.key_type, frozenset()):
        raise KeyUsageViolation("kek", f"a {k.spec.key_type.value} does not carry a {carried.value}")
    return k


def export_derived(b: CommandBackend, kek: LoadedKey, spec: KeySpec, clear: bytes) -> tuple[bytes, bytes]:
    """``clear`` bound to ``spec`` as a TR-31 block under ``kek`` (:func:`derived_kek`), and its KCV;
    refused if ``kek`` is weaker than the key (X9.24-1)."""
    if STRENGTH[kek.algorithm] < STRENGTH[spec.algorithm]:
        raise KeyUsageViolation("kek", "no weaker than the key it carries (X9.24-1)")
    return b._export(kek, b._transient(spec.algorithm, clear, spec)), kcv.kcv(spec.algorithm, clear)


@dataclass(frozen=True, kw_only=True, repr=False)
class ExportKey(HsmCommand[bytes]):
    """Wrap ``key`` under a ZMK/TMK: a TR-31 block under a K1 KEK, the KEK's ``form`` under a K0."""

    kek: KeyCryptogram
    key: KeyCryptogram
    form: LegacyForm = LegacyForm.NONE

    def run(self, b: CommandBackend) -> bytes:
        b._capabilities.require(Command.EXPORT_KEY, self.key.spec.algorithm, self.kek.spec.algorithm)
        _check_form(self.kek.spec, self.form)
        with b._guard():
            k = b._use(self.kek, Operation.KEY_EXPORT_UNDER)
            x = b._use(self.key, Operation.KEY_EXPORT)
            _check_carry(k.spec, x.spec)
            if self.form is not LegacyForm.NONE:
                return b._export_legacy(k, x, self.form)
            return b._export(k, x)


@dataclass(frozen=True, kw_only=True, repr=False)
class KeySyncMac(HsmCommand[bytes]):
    """CMAC (NIST SP 800-38B) of a key-change message under a key derived from a ZMK/TMK.

    The MAC key is the KEK's ECB encipherment of counter || label blocks, the
    derivation ANSI X9.24-3 uses for AES DUKPT; both sites derive the same key
    from the same ZMK and the ZMK itself never MACs.
    """

    kek: KeyCryptogram
    data: bytes

    def run(self, b: CommandBackend) -> bytes:
        b._capabilities.require(Command.KEY_SYNC_MAC)
        check_data(self.data)
        with b._guard():
            k = b._use(self.kek, Operation.KEY_SYNC_MAC)
            alg, bs = k.algorithm, k.algorithm.block_size
            n = -(-alg.key_length // bs)
            blocks = b"".join((bytes([i + 1]) + KEY_SYNC_LABEL).ljust(bs, b"\x00")[:bs] for i in range(n))
            derived = k.encrypt(blocks)[: alg.key_length]
            if alg.is_tdes:
                derived = components.adjust_odd_parity(derived)
            return cmac.generate_cmac(alg, derived, bytes(self.data))


@dataclass(frozen=True, kw_only=True, repr=False)
class PublicKey(HsmCommand[bytes]):
    """A KTK's public half as SubjectPublicKeyInfo DER."""

    key: KeyCryptogram

    def run(self, b: CommandBackend) -> bytes:
        b._capabilities.require(Command.PUBLIC_KEY)
        with b._guard():
            return b._public_key(b._use(self.key, Operation.PUBLIC_KEY))


@dataclass(frozen=True, kw_only=True, repr=False)
class SameValue(HsmCommand[bool]):
    """Whether two keys hold one value: each enciphers the same fresh random block inside the
    backend, compared in constant time; nothing of either leaves. For refusing one value stored as
    two key types (an ECB import binds none: ``keys/hierarchy.py``)."""

    a: KeyCryptogram
    b: KeyCryptogram

    def run(self, b: CommandBackend) -> bool:
        b._capabilities.require(Command.KCV)
        alg = self.a.spec.algorithm
        if alg is not self.b.spec.algorithm or alg.is_asymmetric:
            return False
        with b._guard():
            probe = os.urandom(alg.block_size)  # a fixed block would make the answer a known pair
            return compare.bytes_eq(b._load(self.a).encrypt(probe), b._load(self.b).encrypt(probe))


@dataclass(frozen=True, kw_only=True, repr=False)
class Kcv(HsmCommand[bytes]):
    """The key's check value, once its cryptogram verifies against it.

    ``method`` None: the stored KCV (CMAC for AES, X9.24-1:2017; ECB for TDES and SM4). ECB for an
    AES key: the legacy zero-block encipherment, 3 bytes, for partners that state KCVs so.
    """

    key: KeyCryptogram
    method: KcvMethod | None = None

    def run(self, b: CommandBackend) -> bytes:
        b._capabilities.require(Command.KCV)
        if self.method is not None and not isinstance(self.method, KcvMethod):
            raise InvalidInput("kcv_method", "a KcvMethod")
        with b._guard():
            b._load(self.key)  # refuses a cryptogram whose KCV does not match
            return _kcv_as(b, self.key, self.method)
