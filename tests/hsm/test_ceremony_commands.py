"""The backend's ceremony commands: components under a CTK, LMK backup, LMK translation.

Components are enciphered as the ceremony client does, but with pyca (RSA-OAEP
SHA-256) or the OpenSSL command line (SM2), and every KCV is recomputed with
pyca's ciphers.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hsmsvc.crypto import components, kcv
from hsmsvc.errors import InvalidInput, KeyUsageViolation, Unsupported, VerificationFailed
from hsmsvc.hsm.backend import Backend
from hsmsvc.hsm.commands import (
    CheckComponent,
    FormKeyWrapped,
    GenerateKey,
    Kcv,
    LmkComponents,
    PublicKey,
    TranslateLmk,
    TranslatePin,
)
from hsmsvc.hsm.model import Command, KeyCryptogram, KeySpec, OneTimeKey, PinBlock
from hsmsvc.hsm.soft.backend import SoftBackend
from hsmsvc.types import Algorithm, KeyType, KeyUsage, ModeOfUse, PinBlockFormat
from tests.hsm.helpers import clear_key, form, ktk, needs, terminal_wrap
from tests.reference import ecb, iso0, tdes_kcv

_ctks: dict[tuple[int, Algorithm], KeyCryptogram] = {}


def ctk(backend: Backend, alg: Algorithm) -> KeyCryptogram:
    needs(backend, Command.FORM_KEY_WRAPPED, alg)
    k = (id(backend), alg)
    if k not in _ctks:
        _ctks[k] = backend.execute(GenerateKey(spec=KeySpec(f"ctk-{secrets.token_hex(4)}", 1, KeyType.CTK, alg,
                                                KeyUsage.ASYMMETRIC_KEY_WRAPPING, ModeOfUse.DECRYPT_ONLY)))
    return _ctks[k]


@pytest.mark.parametrize("ctk_alg,alg", [(Algorithm.RSA_3072, Algorithm.AES_128),
                                         (Algorithm.RSA_2048, Algorithm.TDES_2KEY),
                                         (Algorithm.SM2, Algorithm.TDES_3KEY),
                                         (Algorithm.SM2, Algorithm.SM4)])
def test_form_from_wrapped_components_matches_independent_xor(
    backend: Backend, ctk_alg: Algorithm, alg: Algorithm, tmp_path: Path
) -> None:
    needs(backend, Command.FORM_KEY_WRAPPED, ctk_alg, alg)
    k = ctk(backend, ctk_alg)
    der = backend.execute(PublicKey(key=k))
    parts = [clear_key(alg) for _ in range(3)]
    wrapped = [(terminal_wrap(ctk_alg, der, p, tmp_path), kcv.kcv(alg, p)) for p in parts]
    for w, c in wrapped:
        backend.execute(CheckComponent(ctk=k, algorithm=alg, wrapped=w, kcv=c))
    spec = KeySpec(f"zmk-{secrets.token_hex(4)}", 1, KeyType.ZMK, alg, KeyUsage.KBPK if alg is not Algorithm.SM4
                   else KeyUsage.KEK, ModeOfUse.ENCRYPT_DECRYPT)
    formed, kcvs = backend.execute(FormKeyWrapped(spec=spec, ctk=k, parts=wrapped))
    clear = components.combine(alg, parts)
    expect = tdes_kcv(clear) if alg.is_tdes else kcv.kcv(alg, clear)
    assert formed.kcv == expect and kcvs == [c for _, c in wrapped]


def test_a_wrong_component_gets_one_refusal_whatever_is_wrong(backend: Backend, tmp_path: Path) -> None:
    k = ctk(backend, Algorithm.RSA_3072)
    der = backend.execute(PublicKey(key=k))
    part = clear_key(Algorithm.AES_128)
    good = terminal_wrap(Algorithm.RSA_3072, der, part, tmp_path)
    right = kcv.kcv(Algorithm.AES_128, part)
    cases = [
        (good, bytes(3)),                                        # the KCV of another component
        (good[:-1] + bytes([good[-1] ^ 1]), right),              # tampered in transit
        (terminal_wrap(Algorithm.RSA_3072, der, part[:8], tmp_path), right),  # too short
        (secrets.token_bytes(384), right),                       # noise
    ]
    messages = set()
    for w, c in cases:
        with pytest.raises(VerificationFailed) as e:
            backend.execute(CheckComponent(ctk=k, algorithm=Algorithm.AES_128, wrapped=w, kcv=c))
        messages.add(str(e.value))
    assert len(messages) == 1 and "KCV" in messages.pop()
    with pytest.raises(VerificationFailed):
        backend.execute(FormKeyWrapped(spec=KeySpec("zmk-bad", 1, KeyType.ZMK, Algorithm.AES_128, KeyUsage.KBPK,
                                         ModeOfUse.ENCRYPT_DECRYPT), ctk=k, parts=[(good, right), (good, bytes(3))]))


def test_ctk_and_ktk_keep_to_their_own_purpose(backend: Backend, tmp_path: Path) -> None:
    needs(backend, Command.ONE_TIME_PIN_KEY, Algorithm.RSA_2048)
    c, t = ctk(backend, Algorithm.RSA_2048), ktk(backend, Algorithm.RSA_2048)
    part = clear_key(Algorithm.TDES_2KEY)
    w = terminal_wrap(Algorithm.RSA_2048, backend.execute(PublicKey(key=t)), part, tmp_path)
    with pytest.raises(KeyUsageViolation):
        backend.execute(CheckComponent(ctk=t, algorithm=Algorithm.TDES_2KEY, wrapped=w,
                                       kcv=kcv.kcv(Algorithm.TDES_2KEY, part)))
    zpk, _ = form(backend, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    block = ecb(Algorithm.TDES_2KEY, part, iso0("1234", "4012345678909"))
    one_time = OneTimeKey(c, Algorithm.TDES_2KEY, terminal_wrap(Algorithm.RSA_2048, backend.execute(PublicKey(
        key=c)), part,
                                                                tmp_path))
    with pytest.raises(KeyUsageViolation):
        backend.execute(TranslatePin(pin=PinBlock(block, PinBlockFormat.ISO_0, "4012345678909"), src=one_time,
                                     dst=zpk, dst_format=PinBlockFormat.ISO_0))


def test_a_ctk_carries_no_key_stronger_than_itself(backend: Backend, tmp_path: Path) -> None:
    k = ctk(backend, Algorithm.RSA_2048)
    part = clear_key(Algorithm.AES_128)
    w = terminal_wrap(Algorithm.RSA_2048, backend.execute(PublicKey(key=k)), part, tmp_path)
    with pytest.raises(KeyUsageViolation, match="X9.24-1"):
        backend.execute(CheckComponent(ctk=k, algorithm=Algorithm.AES_128, wrapped=w,
                                       kcv=kcv.kcv(Algorithm.AES_128, part)))


def test_fewer_than_two_components_are_refused(backend: Backend, tmp_path: Path) -> None:
    k = ctk(backend, Algorithm.RSA_2048)
    part = clear_key(Algorithm.TDES_2KEY)
    w = terminal_wrap(Algorithm.RSA_2048, backend.execute(PublicKey(key=k)), part, tmp_path)
    with pytest.raises(InvalidInput, match="dual control"):
        backend.execute(FormKeyWrapped(spec=KeySpec("zmk-one", 1, KeyType.ZMK, Algorithm.TDES_2KEY, KeyUsage.KEK,
                                         ModeOfUse.ENCRYPT_DECRYPT), ctk=k,
                                        parts=[(w, kcv.kcv(Algorithm.TDES_2KEY, part))]))


def test_pkcs11_declares_what_it_cannot_do(backend: Backend) -> None:
    if Command.LMK_BACKUP in backend.capabilities.commands:
        pytest.skip("this backend can back up its LMK")
    with pytest.raises(Unsupported):
        backend.execute(LmkComponents(n=3))
    with pytest.raises(Unsupported):
        backend.execute(TranslateLmk(key=form(backend, KeyType.DEK, Algorithm.AES_128, KeyUsage.DATA)[0]))


# -- the soft backend's LMK -----------------------------------------------------------


def test_lmk_backup_components_recombine_to_the_lmk(tmp_path: Path) -> None:
    lmk = secrets.token_bytes(32)
    b = SoftBackend(lmk, anchor_path=tmp_path / "a")
    parts = b.execute(LmkComponents(n=3))
    assert len(parts) == 3 and len(set(parts)) == 3 and lmk not in parts
    assert components.combine(Algorithm.AES_256, parts) == lmk
    assert b.execute(LmkComponents(n=3)) != parts  # fresh each time
    for n in (1, 10):
        with pytest.raises(InvalidInput):
            b.execute(LmkComponents(n=n))


def test_translate_lmk_moves_a_key_and_nothing_else(tmp_path: Path) -> None:
    old_lmk, new_lmk = secrets.token_bytes(32), secrets.token_bytes(32)
    old = SoftBackend(old_lmk, anchor_path=tmp_path / "old")
    dek, clear = form(old, KeyType.DEK, Algorithm.AES_128, KeyUsage.DATA)
    ktk_old = ktk(old, Algorithm.SM2)
    with pytest.raises(Unsupported, match="old LMK"):
        SoftBackend(new_lmk, anchor_path=tmp_path / "n0").execute(TranslateLmk(key=dek))
    migrating = SoftBackend(new_lmk, anchor_path=tmp_path / "new", old_lmk=(Algorithm.AES_256, old_lmk))
    moved = migrating.execute(TranslateLmk(key=dek))
    assert moved.blob != dek.blob and moved.spec == dek.spec and moved.kcv == dek.kcv == kcv.kcv(Algorithm.AES_128,
                                                                                                 clear)
    fresh = SoftBackend(new_lmk, anchor_path=tmp_path / "fresh")
    assert fresh.execute(Kcv(key=moved)) == dek.kcv
    with pytest.raises(Exception):
        fresh.execute(Kcv(key=dek))  # the old cryptogram means nothing under the new LMK
    moved_ktk = migrating.execute(TranslateLmk(key=ktk_old))
    assert fresh.execute(PublicKey(key=moved_ktk)) == old.execute(PublicKey(key=ktk_old))
    with pytest.raises(InvalidInput):
        SoftBackend(new_lmk, old_lmk=(Algorithm.AES_256, new_lmk))


@given(n=st.integers(2, 9), alg=st.sampled_from([Algorithm.TDES_2KEY, Algorithm.TDES_3KEY, Algorithm.AES_256,
                                                  Algorithm.SM4]), data=st.data())
@settings(max_examples=60, deadline=None)
def test_split_then_combine_round_trips(n: int, alg: Algorithm, data: st.DataObject) -> None:
    key = clear_key(alg)
    randoms = [data.draw(st.binary(min_size=alg.key_length, max_size=alg.key_length)) for _ in range(n - 1)]
    parts = components.split(alg, key, randoms)
    assert len(parts) == n and components.combine(alg, parts) == key
    if alg.is_tdes:
        assert all(components.has_odd_parity(p) for p in parts)


@given(n=st.sampled_from([0, 9, 10]))
def test_split_refuses_bad_counts(n: int) -> None:
    with pytest.raises(InvalidInput):
        components.split(Algorithm.AES_128, bytes(16), [bytes(16)] * n)
