"""Issue 30: partners' legacy key forms under a K0 ZMK, over a real ``hsmsvc serve`` (mTLS, PostgreSQL).

A ZPK sent as UnionPay and most partners send it (TDES-ECB under the ZMK itself, ANSI X9.17,
with its KCV) and as a payShield sends it (key scheme U for a double-length key, T for a
triple-length one) imports under a ZMK that opted in to that form; the same bytes under the
other form get the one generic refusal TR-31 gives; an export under each form is undone here
to the same key. Every wrapped key is made and undone by tests/reference.py (X9.17 pinned to a
published key sheet; schemes U/T written from the documented method, no published example found).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
import sqlalchemy as sa

from hsmsvc.hsm.model import KeySpec, LegacyForm
from hsmsvc.types import Algorithm, KeyType, KeyUsage, ModeOfUse
from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import types_pb2 as pb
from hsmsvc_client import Client, ClientTls
from tests import pg
from tests import reference as ref
from tests.api.conftest import ATTEMPTS, _form, code_of, forming, launch, seal_lmk, stop, template
from tools.bench.pki import ThrowawayCA

POLICY = """
[[principals]]
name = "key-manager"
roles = ["manager"]
keys = ["*"]
"""
E = ModeOfUse.ENCRYPT_DECRYPT
T2, T3 = Algorithm.TDES_2KEY, Algorithm.TDES_3KEY
GENERIC = (grpc.StatusCode.INVALID_ARGUMENT, "key_block: key block invalid")
# (ZMK id, its algorithm, its legacy form): a triple-length ZPK needs a triple-length ZMK (X9.24-1).
ZMKS = (
    ("zmk-x917-2", T2, LegacyForm.X917_ECB),
    ("zmk-x917-3", T3, LegacyForm.X917_ECB),
    ("zmk-ps-u", T2, LegacyForm.PAYSHIELD_VARIANT),
    ("zmk-ps-t", T3, LegacyForm.PAYSHIELD_VARIANT),
)


@dataclass
class Site:
    mgr: Client
    clear: dict[str, bytes]
    url: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    d = tmp_path_factory.mktemp("partner")
    ca = ThrowawayCA(d)
    ident = ca.issue("key-manager")
    cert = ca.issue("hsmsvc-server", server=True)
    sealed_file = seal_lmk(d)
    (d / "policy.toml").write_text(POLICY)
    with pg.throwaway_db() as url:
        with forming(url, sealed_file) as km:
            clear = {kid: _form(km, KeySpec(kid, 1, KeyType.ZMK, alg, KeyUsage.KEK, E), frozenset({KeyType.ZPK}),
                                form) for kid, alg, form in ZMKS}
            clear["zmk-k1"] = _form(km, KeySpec("zmk-k1", 1, KeyType.ZMK, Algorithm.AES_256, KeyUsage.KBPK, E))
        proc, info = launch(d, url, sealed_file, cert, ca, ATTEMPTS)
        mgr = Client(f"127.0.0.1:{info['port']}", ClientTls(ca.ca_file, ident.cert, ident.key, "localhost"),
                     deadline=30.0, retries=0)
        try:
            yield Site(mgr, clear, url)
        finally:
            mgr.close()
            stop(proc, d / "server.log")


def _zpk(key_id: str, alg: Algorithm, exportable: bool = False) -> key_pb.KeyTemplate:
    t = template(key_id, pb.KEY_TYPE_ZPK, pb.ALGORITHM_TDES_2KEY if alg is T2 else pb.ALGORITHM_TDES_3KEY,
                 pb.KEY_USAGE_PIN_ENCRYPTION, pb.MODE_OF_USE_ENCRYPT_DECRYPT)
    if exportable:
        t.exportability = pb.EXPORTABILITY_EXPORTABLE
    return t


def _wrap(form: LegacyForm, zmk: bytes, key: bytes) -> bytes:
    """As the partner's HSM sends ``key``: X9.17 plain ECB, or payShield scheme U/T."""
    return ref.tdes_ecb(zmk, key) if form is LegacyForm.X917_ECB else ref.payshield_variant_wrap(zmk, key)


def _unwrap(form: LegacyForm, zmk: bytes, wrapped: bytes) -> bytes:
    if form is LegacyForm.X917_ECB:
        return ref.tdes_ecb(zmk, wrapped, decrypt=True)
    return ref.payshield_variant_unwrap(zmk, wrapped)


def _other(form: LegacyForm) -> LegacyForm:
    return LegacyForm.PAYSHIELD_VARIANT if form is LegacyForm.X917_ECB else LegacyForm.X917_ECB


@pytest.mark.parametrize(("zmk_id", "alg", "form"), ZMKS)
def test_a_partner_zpk_imports_with_its_kcv_and_the_wrong_form_is_refused(site: Site, zmk_id: str,
                                                                          alg: Algorithm, form: LegacyForm) -> None:
    zmk, zpk = site.clear[zmk_id], ref.odd_parity(secrets.token_bytes(alg.key_length))
    kek = pb.KeyRef(key_id=zmk_id)
    got = site.mgr.keys.ImportKey(key_pb.ImportKeyRequest(kek=kek, wrapped_key=_wrap(form, zmk, zpk),
                                                          kcv=ref.tdes_kcv(zpk), template=_zpk(f"{zmk_id}.zpk", alg)))
    assert got.key.kcv == ref.tdes_kcv(zpk)
    # The same key under the other form: deciphered to another key, whose KCV fails, so the one refusal.
    assert code_of(site.mgr.keys.ImportKey, key_pb.ImportKeyRequest(
        kek=kek, wrapped_key=_wrap(_other(form), zmk, zpk), kcv=ref.tdes_kcv(zpk),
        template=_zpk(f"{zmk_id}.wrong", alg))) == GENERIC


@pytest.mark.parametrize(("zmk_id", "alg", "form"), ZMKS)
def test_an_export_in_each_form_is_undone_to_the_same_key(site: Site, zmk_id: str, alg: Algorithm,
                                                          form: LegacyForm) -> None:
    zmk = site.clear[zmk_id]
    made = site.mgr.keys.GenerateKey(key_pb.GenerateKeyRequest(template=_zpk(f"{zmk_id}.out", alg, True)))
    out = site.mgr.keys.ExportKey(key_pb.ExportKeyRequest(kek=pb.KeyRef(key_id=zmk_id),
                                                          key=pb.KeyRef(key_id=f"{zmk_id}.out")))
    clear = _unwrap(form, zmk, out.wrapped_key)
    assert ref.tdes_kcv(clear) == made.key.kcv == out.kcv


def test_every_fault_after_deciphering_answers_as_tr31_does(site: Site) -> None:
    zmk, zpk = site.clear["zmk-x917-2"], ref.odd_parity(secrets.token_bytes(16))
    weak, equal = bytes.fromhex("0101010101010101") + zpk[8:], zpk[:8] * 2
    kek = pb.KeyRef(key_id="zmk-x917-2")
    for i, (sent, kcv) in enumerate([
        (zpk, bytes(3)),  # a KCV mismatch
        (weak, ref.tdes_kcv(weak)),  # a weak DES part, with its own KCV
        (equal, ref.tdes_kcv(equal)),  # equal parts, with their own KCV
    ]):
        assert code_of(site.mgr.keys.ImportKey, key_pb.ImportKeyRequest(
            kek=kek, wrapped_key=ref.tdes_ecb(zmk, sent), kcv=kcv, template=_zpk(f"fault-{i}", T2))) == GENERIC
    # A parity-unadjusted key is the partner's key: taken, not refused (DES ignores those bits).
    even = bytes(b ^ 1 for b in zpk)
    got = site.mgr.keys.ImportKey(key_pb.ImportKeyRequest(kek=kek, wrapped_key=ref.tdes_ecb(zmk, even),
                                                          kcv=ref.tdes_kcv(even), template=_zpk("even", T2)))
    assert got.key.kcv == ref.tdes_kcv(zpk)
    # TR-31's own refusal, for comparison: a block under the K1 ZMK with its MAC broken.
    block = ref.tr31_wrap(site.clear["zmk-k1"], "D0000P0TB00N0000", zpk, secrets.token_bytes(14))
    broken = block[:-1] + ("0" if block[-1] != "0" else "1")
    assert code_of(site.mgr.keys.ImportKey, key_pb.ImportKeyRequest(
        kek=pb.KeyRef(key_id="zmk-k1"), wrapped_key=broken.encode(), template=_zpk("tr31", T2))) == GENERIC


def test_the_form_is_chosen_explicitly_shown_and_audited(site: Site) -> None:
    for zmk_id, _, form in ZMKS:
        info = site.mgr.keys.GetKey(key_pb.GetKeyRequest(key=pb.KeyRef(key_id=zmk_id))).key
        assert info.legacy_form == pb.LegacyForm.Value(f"LEGACY_FORM_{form.value}")
    # A K0 ZMK with key types but no form is refused precisely: none is assumed.
    t = template("zmk-no-form", pb.KEY_TYPE_ZMK, pb.ALGORITHM_TDES_2KEY, pb.KEY_USAGE_KEK,
                 pb.MODE_OF_USE_ENCRYPT_DECRYPT, legacy_key_types=[pb.KEY_TYPE_ZPK])
    code, msg = code_of(site.mgr.keys.GenerateKey, key_pb.GenerateKeyRequest(template=t))
    assert code is grpc.StatusCode.INVALID_ARGUMENT and msg.startswith("legacy_form: ")
    # The plain forms bind no key type: the sender's KCV is their only check, so it is required.
    code, msg = code_of(site.mgr.keys.ImportKey, key_pb.ImportKeyRequest(
        kek=pb.KeyRef(key_id="zmk-x917-2"), wrapped_key=bytes(16), template=_zpk("no-kcv", T2)))
    assert code is grpc.StatusCode.INVALID_ARGUMENT and msg.startswith("kcv: required")
    # Choosing the form is a key-management action: its formation's audit row names it.
    engine = sa.create_engine(site.url)
    try:
        with engine.connect() as conn:
            rows = dict(conn.execute(sa.text("SELECT key_id, detail FROM audit WHERE action = 'key.form'")).all())
    finally:
        engine.dispose()
    for zmk_id, _, form in ZMKS:
        detail = json.loads(rows[zmk_id])
        assert (detail["legacy_form"], detail["legacy_types"]) == (form.value, "ZPK")


def test_an_x917_ecb_import_needs_its_kcv(site: Site) -> None:
    """Plain ECB binds nothing of the key, so a cryptogram without its KCV would be taken in as
    whatever it deciphered to: under an X9.17 ECB KEK the KCV is required (the backend's rule, as
    for the payShield variant forms; issue 33 saw it accepted, which a check since c637afb refuses)."""
    zmk_id = next(kid for kid, _, form in ZMKS if form is LegacyForm.X917_ECB)
    zpk = ref.odd_parity(secrets.token_bytes(16))
    code, details = code_of(site.mgr.keys.ImportKey, key_pb.ImportKeyRequest(
        kek=pb.KeyRef(key_id=zmk_id), wrapped_key=ref.tdes_ecb(site.clear[zmk_id], zpk),
        template=_zpk("no-kcv", T2)))
    assert code is grpc.StatusCode.INVALID_ARGUMENT and details.startswith("kcv: required:"), details
