"""Keys across a K0 ZMK in a partner's legacy form, on every backend that imports them.

Each wrapped key is made, or undone, by tests/reference.py from the clear keys the
test knows: X9.17 plain ECB (pinned to a published key sheet) and payShield's
schemes U/T (written from the documented method). PKCS#11 has no IMPORT_KEY and skips.
"""

from __future__ import annotations

import pytest

from hsmsvc.errors import InvalidInput, InvalidKeyBlock, KeyUsageViolation
from hsmsvc.hsm.backend import Backend
from hsmsvc.hsm.commands import ExportKey, ImportKey
from hsmsvc.hsm.model import Command, KeySpec, LegacyForm
from hsmsvc.types import Algorithm, Exportability, KeyType, KeyUsage
from tests.hsm.helpers import clear_key, form, needs
from tests.reference import odd_parity, payshield_variant_unwrap, payshield_variant_wrap, tdes_ecb, tdes_kcv

T2, T3 = Algorithm.TDES_2KEY, Algorithm.TDES_3KEY
X917, PAYSHIELD = LegacyForm.X917_ECB, LegacyForm.PAYSHIELD_VARIANT
GENERIC = "^key_block: key block invalid$"


def _zpk_spec(key_id: str, alg: Algorithm) -> KeySpec:
    return KeySpec(key_id, 1, KeyType.ZPK, alg, KeyUsage.PIN_ENCRYPTION)


def _wrap(form_: LegacyForm, zmk: bytes, key: bytes) -> bytes:
    return tdes_ecb(zmk, key) if form_ is X917 else payshield_variant_wrap(zmk, key)


# A triple-length key needs a triple-length ZMK: X9.24-1 forbids a weaker KEK.
@pytest.mark.parametrize(("form_", "alg"), [(X917, T2), (X917, T3), (PAYSHIELD, T2), (PAYSHIELD, T3)])
def test_partner_key_imports_with_its_kcv_and_exports_back(backend: Backend, form_: LegacyForm,
                                                           alg: Algorithm) -> None:
    needs(backend, Command.EXPORT_KEY, alg)
    zmk, zmk_clear = form(backend, KeyType.ZMK, alg, KeyUsage.KEK)
    zpk_clear = clear_key(alg)
    got = backend.execute(ImportKey(kek=zmk, wrapped=_wrap(form_, zmk_clear, zpk_clear),
                                    spec=_zpk_spec("in", alg), kcv=tdes_kcv(zpk_clear), form=form_))
    assert got.kcv == tdes_kcv(zpk_clear)
    out, out_clear = form(backend, KeyType.ZPK, alg, KeyUsage.PIN_ENCRYPTION, exportability=Exportability.EXPORTABLE)
    wrapped = backend.execute(ExportKey(kek=zmk, key=out, form=form_))
    undone = tdes_ecb(zmk_clear, wrapped, decrypt=True) if form_ is X917 else payshield_variant_unwrap(zmk_clear,
                                                                                                       wrapped)
    assert undone == out_clear


def test_a_partner_key_with_unadjusted_parity_is_taken(backend: Backend) -> None:
    needs(backend, Command.IMPORT_KEY, T2)
    zmk, zmk_clear = form(backend, KeyType.ZMK, T2, KeyUsage.KEK)
    zpk_clear = clear_key(T2)
    sent = bytes(b ^ 1 for b in zpk_clear)  # every parity bit wrong: even parity throughout
    got = backend.execute(ImportKey(kek=zmk, wrapped=tdes_ecb(zmk_clear, sent), spec=_zpk_spec("even", T2),
                                    kcv=tdes_kcv(sent), form=X917))
    assert got.kcv == tdes_kcv(odd_parity(sent)) == tdes_kcv(zpk_clear)


def test_every_fault_after_deciphering_is_the_one_generic_refusal(backend: Backend) -> None:
    needs(backend, Command.IMPORT_KEY, T2)
    zmk, zmk_clear = form(backend, KeyType.ZMK, T2, KeyUsage.KEK)
    zpk_clear = clear_key(T2)
    kcv = tdes_kcv(zpk_clear)
    spec = _zpk_spec("refused", T2)
    weak = bytes.fromhex("0101010101010101") + zpk_clear[8:]
    equal = zpk_clear[:8] * 2
    cases = [
        (X917, payshield_variant_wrap(zmk_clear, zpk_clear), kcv),  # the wrong form
        (PAYSHIELD, tdes_ecb(zmk_clear, zpk_clear), kcv),  # the wrong form, the other way
        (X917, tdes_ecb(zmk_clear, zpk_clear), bytes(3)),  # a KCV mismatch
        (X917, tdes_ecb(zmk_clear, weak), tdes_kcv(weak)),  # a weak DES part, its own KCV
        (X917, tdes_ecb(zmk_clear, equal), tdes_kcv(equal)),  # equal parts, their own KCV
    ]
    for form_, wrapped, check in cases:
        with pytest.raises(InvalidKeyBlock, match=GENERIC):
            backend.execute(ImportKey(kek=zmk, wrapped=wrapped, spec=spec, kcv=check, form=form_))


def test_plain_forms_need_the_senders_kcv_and_a_k0_kek(backend: Backend) -> None:
    needs(backend, Command.IMPORT_KEY, T2)
    zmk, zmk_clear = form(backend, KeyType.ZMK, T2, KeyUsage.KEK)
    wrapped = tdes_ecb(zmk_clear, clear_key(T2))
    with pytest.raises(InvalidInput, match="^kcv: required"):
        backend.execute(ImportKey(kek=zmk, wrapped=wrapped, spec=_zpk_spec("no-kcv", T2), form=X917))
    kbpk, _ = form(backend, KeyType.ZMK, Algorithm.AES_256, KeyUsage.KBPK)
    with pytest.raises(KeyUsageViolation, match="K0 KEKs only"):
        backend.execute(ImportKey(kek=kbpk, wrapped=wrapped, spec=_zpk_spec("k1", T2), kcv=bytes(3), form=X917))
    with pytest.raises(InvalidInput, match="^wrapped_key: 16 bytes for TDES_2KEY$"):  # before deciphering
        backend.execute(ImportKey(kek=zmk, wrapped=wrapped + bytes(8), spec=_zpk_spec("long", T2), kcv=bytes(3),
                                  form=PAYSHIELD))
