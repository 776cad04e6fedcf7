"""Issue 30: TR-34 (ASC X9 TR 34-2019) one-pass key tokens through a real server, end to end.

The token is built and opened by tests/tr34_ref.py (pyca and asn1crypto only; no hsmsvc import):
CMS SignedData (RFC 5652 clause 5) over an EnvelopedData (clause 6) whose content key is RSAES-OAEP
SHA-256 wrapped (RFC 8017 clause 7.1). KCVs are ANSI X9.24-1:2017's (AES: CMAC of a zero block) from
tests/reference.py, pinned to published vectors in tests/test_reference.py. No published TR 34-2019
annex B sample token was found in the searchable corpora, so none is tested here.
"""

from __future__ import annotations

import secrets

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, load_der_public_key

from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import types_pb2 as pb
from hsmsvc_client import ClientError
from tests import reference as ref
from tests import tr34_ref as tr34
from tests.api.conftest import Env, template

B = pb.MODE_OF_USE_ENCRYPT_DECRYPT
GENERIC = (grpc.StatusCode.INVALID_ARGUMENT, "key_block: key block invalid")


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def site(server: Env) -> dict[str, object]:
    mgr = server.client("key-manager")
    tid = secrets.token_hex(3)
    krd_t = template(f"tr34-krd-{tid}", pb.KEY_TYPE_KTK, pb.ALGORITHM_RSA_3072, pb.KEY_USAGE_ASYMMETRIC_KEY_WRAPPING,
                     pb.MODE_OF_USE_DECRYPT_ONLY)
    kdh_t = template(f"tr34-kdh-{tid}", pb.KEY_TYPE_KTK, pb.ALGORITHM_RSA_3072, pb.KEY_USAGE_ASYMMETRIC_KEY_WRAPPING,
                     pb.MODE_OF_USE_SIGN_ONLY)
    mgr.keys.GenerateKey(key_pb.GenerateKeyRequest(template=krd_t))
    mgr.keys.GenerateKey(key_pb.GenerateKeyRequest(template=kdh_t))
    krd_pub = load_der_public_key(bytes(mgr.keys.GetPublicKey(key_pb.GetPublicKeyRequest(
        key=pb.KeyRef(key_id=krd_t.key_id))).public_key))
    own_kdh_pub = load_der_public_key(bytes(mgr.keys.GetPublicKey(key_pb.GetPublicKeyRequest(
        key=pb.KeyRef(key_id=kdh_t.key_id))).public_key))
    assert isinstance(krd_pub, rsa.RSAPublicKey) and isinstance(own_kdh_pub, rsa.RSAPublicKey)
    ca_key, kdh_key, other_key, peer_krd_key = _rsa(), _rsa(), _rsa(), _rsa()
    ca = tr34.certificate("TR34 test CA", ca_key.public_key(), "TR34 test CA", ca_key, ca=True)
    return {
        "mgr": mgr, "tid": tid, "krd": krd_t.key_id, "kdh": kdh_t.key_id, "krd_pub": krd_pub,
        "ca": ca, "kdh_key": kdh_key,
        "kdh_cert": tr34.certificate("KDH 1", kdh_key.public_key(), "TR34 test CA", ca_key),
        "other_key": other_key,
        "other_cert": tr34.certificate("KDH 2", other_key.public_key(), "TR34 test CA", ca_key),
        "own_kdh_cert": tr34.certificate("hsmsvc KDH", own_kdh_pub, "TR34 test CA", ca_key),
        "peer_krd_key": peer_krd_key,
        "peer_krd_cert": tr34.certificate("peer KRD", peer_krd_key.public_key(), "TR34 test CA", ca_key),
    }


def _der(c: object) -> bytes:
    return c.public_bytes(Encoding.DER)  # type: ignore[attr-defined, no-any-return]


def _import(s: dict[str, object], token: bytes, key_id: str, kdh_cert: object | None = None,
            kcv: bytes = b"") -> key_pb.ImportTr34KeyResponse:
    t = template(key_id, pb.KEY_TYPE_ZMK, pb.ALGORITHM_AES_128, pb.KEY_USAGE_KBPK, B)
    t.exportability = pb.EXPORTABILITY_EXPORTABLE
    return s["mgr"].keys.ImportTr34Key(key_pb.ImportTr34KeyRequest(  # type: ignore[attr-defined, no-any-return]
        krd_key=pb.KeyRef(key_id=str(s["krd"])), token=token, kdh_certificate=_der(kdh_cert or s["kdh_cert"]),
        ca_certificate=_der(s["ca"]), kcv=kcv, template=t))


def _token(s: dict[str, object], key: bytes, signer: str = "kdh_key", cert: str = "kdh_cert") -> bytes:
    return tr34.build(kdh_key=s[signer], kdh_cert=s[cert], krd_public=s["krd_pub"],  # type: ignore[arg-type]
                      header=b"A0000K1AB00E0000", key=key)


def _refused(fn: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(ClientError) as e:
        fn()  # type: ignore[operator]
    return e.value.code, e.value.details


def test_import_kcv_matches_independent(site: dict[str, object]) -> None:
    key = secrets.token_bytes(16)
    kcv = ref.kcv("AES_128", key)
    r = _import(site, _token(site, key), f"tr34-in-{site['tid']}", kcv=kcv)
    assert bytes(r.key.kcv) == kcv and r.key.key_type == pb.KEY_TYPE_ZMK


def test_export_opens_to_the_same_key(site: dict[str, object]) -> None:
    key = secrets.token_bytes(16)
    kid = f"tr34-x-{site['tid']}"
    _import(site, _token(site, key), kid)
    r = site["mgr"].keys.ExportTr34Key(key_pb.ExportTr34KeyRequest(  # type: ignore[attr-defined]
        kdh_key=pb.KeyRef(key_id=str(site["kdh"])), kdh_certificate=_der(site["own_kdh_cert"]),
        key=pb.KeyRef(key_id=kid), krd_certificate=_der(site["peer_krd_cert"]), ca_certificate=_der(site["ca"])))
    header, clear = tr34.open_token(token=bytes(r.token), kdh_public=site["own_kdh_cert"].public_key(),  # type: ignore
                                    krd_key=site["peer_krd_key"])  # type: ignore[arg-type]
    assert clear == key and header[5:9] == b"K1AB"
    assert bytes(r.kcv) == ref.kcv("AES_128", key)


def test_tampered_signature_and_other_kdh_are_one_error(site: dict[str, object]) -> None:
    key = secrets.token_bytes(16)
    good = _token(site, key)
    bad = bytearray(good)
    bad[-10] ^= 0x01  # inside the signature value, the token's last field
    codes = {
        "tampered": _refused(lambda: _import(site, bytes(bad), f"tr34-t-{site['tid']}")),
        "other KDH, our cert": _refused(lambda: _import(site, _token(site, key, signer="other_key"),
                                                        f"tr34-o-{site['tid']}")),
        "other KDH, its cert": _refused(lambda: _import(site, _token(site, key, signer="other_key",
                                                                     cert="other_cert"),
                                                        f"tr34-p-{site['tid']}", kdh_cert=site["kdh_cert"])),
        "truncated": _refused(lambda: _import(site, good[:-40], f"tr34-q-{site['tid']}")),
    }
    assert set(codes.values()) == {GENERIC}, codes
    # Nothing was stored, and no clear key appears in an answer.
    assert key.hex().upper() not in repr(codes).upper()


def test_kdh_key_that_decrypts_may_not_sign(site: dict[str, object]) -> None:
    code, _ = _refused(lambda: site["mgr"].keys.ExportTr34Key(key_pb.ExportTr34KeyRequest(  # type: ignore
        kdh_key=pb.KeyRef(key_id=str(site["krd"])), kdh_certificate=_der(site["own_kdh_cert"]),
        key=pb.KeyRef(key_id=f"tr34-x-{site['tid']}"), krd_certificate=_der(site["peer_krd_cert"]),
        ca_certificate=_der(site["ca"]))))
    assert code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.PERMISSION_DENIED)


def test_bad_certificate_is_invalid_argument(site: dict[str, object]) -> None:
    code, details = _refused(lambda: site["mgr"].keys.ImportTr34Key(key_pb.ImportTr34KeyRequest(  # type: ignore
        krd_key=pb.KeyRef(key_id=str(site["krd"])), token=b"\x30\x00", kdh_certificate=b"junk",
        ca_certificate=_der(site["ca"]), template=template("tr34-z", pb.KEY_TYPE_ZMK, pb.ALGORITHM_AES_128,
                                                           pb.KEY_USAGE_KBPK, B))))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("kdh_certificate")
