"""Two sites agree an AES-256 ZMK over ECDH P-521 and carry a zone PIN key under it (issue 30).

A core and a branch ``hsmsvc serve`` (key_sync_sites.open_sites: each its own LMK
and PostgreSQL store, mTLS on loopback). Each site generates a KAK; the officers
exchange public halves and fingerprints; each calls KeyService.AgreeKey and the
two KCVs match, with no component typed or sent. The core then sends a ZPK under
the agreed ZMK as a TR-31 version D block, the branch takes it in with the KCV,
and a PIN block translated at the branch verifies at the core.

The test cannot recompute the agreed key (the private halves never leave the
backends); tests/hsm/test_agree.py does, from known scalars, against
tests/reference.py, which tests/test_reference.py pins to NIST's vectors.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator

import grpc
import pytest
from sqlalchemy import create_engine, select

from hsmsvc.keys.schema import audit
from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import types_pb2 as pb
from tests import reference as ind
from tests.api.conftest import code_of, template
from tests.api.key_sync_sites import ZONE, Site, Sites, open_sites, translate_and_verify

ZMK_ID = f"zmk-{ZONE}-ecdh"


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    with open_sites(tmp_path_factory.mktemp("agree")) as s:
        yield s


def _kak(site: Site) -> tuple[bytes, bytes]:
    keys = site.clients[f"{site.name}-officer"].keys
    keys.GenerateKey(key_pb.GenerateKeyRequest(template=template(
        f"kak-{site.name}", pb.KEY_TYPE_KAK, pb.ALGORITHM_ECC_P521, pb.KEY_USAGE_ASYMMETRIC_KEY_WRAPPING,
        pb.MODE_OF_USE_DERIVE, zone=ZONE)))
    r = keys.GetPublicKey(key_pb.GetPublicKeyRequest(key=pb.KeyRef(key_id=f"kak-{site.name}")))
    assert r.algorithm == pb.ALGORITHM_ECC_P521 and r.fingerprint == ind.sha256(r.public_key)[:8]
    return bytes(r.public_key), bytes(r.fingerprint)


def _agree_request(site: Site, peer_public: bytes, peer_fp: bytes, nonce: bytes,
                   key_id: str = ZMK_ID, alg: int = pb.ALGORITHM_AES_256) -> key_pb.AgreeKeyRequest:
    return key_pb.AgreeKeyRequest(
        kak=pb.KeyRef(key_id=f"kak-{site.name}"), peer_public_key=peer_public, peer_fingerprint=peer_fp,
        shared_info=nonce + f"zone={ZONE}".encode(),
        template=template(key_id, pb.KEY_TYPE_ZMK, alg, pb.KEY_USAGE_KBPK, pb.MODE_OF_USE_ENCRYPT_DECRYPT,
                          zone=ZONE))


@pytest.fixture(scope="module")
def agreed(sites: Sites) -> dict[str, bytes]:
    """Both sites' KAKs and the ZMK agreed between them: the officers' steps in order."""
    core_pub, core_fp = _kak(sites.core)
    branch_pub, branch_fp = _kak(sites.branch)
    nonce = secrets.token_bytes(32)  # agreed out of band with the fingerprints
    at_core = sites.core.clients["core-officer"].keys.AgreeKey(
        _agree_request(sites.core, branch_pub, branch_fp, nonce)).key
    at_branch = sites.branch.clients["branch-officer"].keys.AgreeKey(
        _agree_request(sites.branch, core_pub, core_fp, nonce)).key
    assert at_core.key_type == pb.KEY_TYPE_ZMK and at_core.algorithm == pb.ALGORITHM_AES_256
    assert len(at_core.kcv) == 3
    return {"core_kcv": bytes(at_core.kcv), "branch_kcv": bytes(at_branch.kcv), "core_pub": core_pub,
            "branch_pub": branch_pub, "core_fp": core_fp, "branch_fp": branch_fp, "nonce": nonce}


def test_both_sites_hold_the_same_aes256_zmk(agreed: dict[str, bytes]) -> None:
    assert agreed["core_kcv"] == agreed["branch_kcv"]


def test_a_zpk_change_travels_under_the_agreed_zmk(sites: Sites, agreed: dict[str, bytes]) -> None:
    core, branch = sites.core.clients["core-officer"].keys, sites.branch.clients["branch-officer"].keys
    zpk = template(f"{ZONE}.zpk", pb.KEY_TYPE_ZPK, pb.ALGORITHM_TDES_2KEY, pb.KEY_USAGE_PIN_ENCRYPTION,
                   pb.MODE_OF_USE_ENCRYPT_DECRYPT, zone=ZONE)
    zpk.exportability = pb.EXPORTABILITY_EXPORTABLE
    made = core.GenerateKey(key_pb.GenerateKeyRequest(template=zpk)).key
    out = core.ExportKey(key_pb.ExportKeyRequest(kek=pb.KeyRef(key_id=ZMK_ID), key=pb.KeyRef(key_id=f"{ZONE}.zpk")))
    assert out.wrapped_key[:1] == b"D" and bytes(out.kcv) == bytes(made.kcv)  # TR-31 version D (AES KBPK)
    zpk.exportability = pb.EXPORTABILITY_NON_EXPORTABLE
    took = branch.ImportKey(key_pb.ImportKeyRequest(kek=pb.KeyRef(key_id=ZMK_ID), wrapped_key=out.wrapped_key,
                                                    kcv=out.kcv, template=zpk)).key
    assert bytes(took.kcv) == bytes(made.kcv)
    # Branch: TPK -> ZPK (ISO 0); core: the block verifies against the stored PIN under the same ZPK.
    assert translate_and_verify(sites) == 1
    translate_and_verify(sites, pin="000000")


def test_the_agreement_is_audited_with_both_fingerprints(sites: Sites, agreed: dict[str, bytes]) -> None:
    for site, own, peer in ((sites.core, "core_fp", "branch_fp"), (sites.branch, "branch_fp", "core_fp")):
        engine = create_engine(site.store_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(select(audit.c.actor, audit.c.detail).where(
                    audit.c.action == "key.agree", audit.c.key_id == ZMK_ID)).all()
        finally:
            engine.dispose()
        assert len(rows) == 1 and rows[0].actor == f"{site.name}-officer"
        detail = str(rows[0].detail)
        assert agreed[own].hex().upper() in detail and agreed[peer].hex().upper() in detail
        nonce_info = agreed["nonce"] + f"zone={ZONE}".encode()
        assert hashlib.sha256(nonce_info).hexdigest().upper() in detail
        assert agreed["nonce"].hex() not in detail.lower()


def test_only_a_manager_may_agree(sites: Sites, agreed: dict[str, bytes]) -> None:
    app = sites.core.clients["core-app"].keys
    req = _agree_request(sites.core, agreed["branch_pub"], agreed["branch_fp"], secrets.token_bytes(16), "zmk-x")
    assert code_of(app.AgreeKey, req)[0] is grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize(("change", "code", "text"), [
    ("fingerprint", grpc.StatusCode.INVALID_ARGUMENT, "peer_fingerprint"),
    ("curve", grpc.StatusCode.INVALID_ARGUMENT, "peer_public_key"),
    ("own", grpc.StatusCode.INVALID_ARGUMENT, "own public key"),
    ("tdes", grpc.StatusCode.INVALID_ARGUMENT, "template.algorithm"),
    ("nonce", grpc.StatusCode.INVALID_ARGUMENT, "shared_info"),
])
def test_bad_agreements_get_a_precise_status(sites: Sites, agreed: dict[str, bytes], change: str,
                                             code: grpc.StatusCode, text: str) -> None:
    keys = sites.core.clients["core-officer"].keys
    pub, fp, nonce, alg = agreed["branch_pub"], agreed["branch_fp"], secrets.token_bytes(16), pb.ALGORITHM_AES_256
    if change == "fingerprint":
        fp = agreed["core_fp"]
    elif change == "curve":
        pub = _p256()
        fp = ind.sha256(pub)[:8]
    elif change == "own":
        pub, fp = agreed["core_pub"], agreed["core_fp"]
    elif change == "tdes":
        alg = pb.ALGORITHM_TDES_3KEY
    else:
        nonce = b""
    req = _agree_request(sites.core, pub, fp, nonce, f"zmk-bad-{change}", alg)
    if change == "nonce":
        req.shared_info = b"short"
    got, details = code_of(keys.AgreeKey, req)
    assert got is code and text in details, details
    assert code_of(keys.GetKey, key_pb.GetKeyRequest(key=pb.KeyRef(key_id=f"zmk-bad-{change}")))[0] \
        is grpc.StatusCode.NOT_FOUND


def _p256() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

