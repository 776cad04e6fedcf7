"""SignatureService and KeyService.ImportPublicKey over mTLS on a real server (issue 32).

Every signature hsmsvc makes is checked by code that is not hsmsvc's: pyca/cryptography's
RSASSA-PSS and ECDSA verification (RFC 8017 clause 8.1, FIPS 186-5), OpenSSL's SM2
(``openssl pkeyutl -verify -digest sm3 -pkeyopt distid:…``, GB/T 32918.2-2016) and
OpenSSL's ``req -verify`` for the PKCS#10 requests. Signatures pyca makes verify here.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from hsmsvc_client import Client

from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import signature_service_pb2 as sig_pb
from hsmsvc_client.v1 import types_pb2 as pb
from tests.api.conftest import Env, code_of, template
from tests.sm2tools import DEFAULT_ID, OpenSslSm2Verifier, openssl

StatusCode = grpc.StatusCode
S, V = pb.MODE_OF_USE_SIGN_ONLY, pb.MODE_OF_USE_MAC_VERIFY_ONLY
ALGS = {
    "sm2": pb.ALGORITHM_SM2, "p256": pb.ALGORITHM_ECC_P256, "p384": pb.ALGORITHM_ECC_P384,
    "rsa2048": pb.ALGORITHM_RSA_2048, "rsa3072": pb.ALGORITHM_RSA_3072,
}
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)


_openssl = openssl


def _sig_template(key_id: str, alg: int, mode: int = S, zone: str = "core", **kw: Any) -> key_pb.KeyTemplate:
    return template(key_id, pb.KEY_TYPE_SIG, alg, pb.KEY_USAGE_DIGITAL_SIGNATURE, mode, zone=zone, **kw)


@pytest.fixture(scope="module")
def mgr(server: Env) -> Client:
    return server.client("key-manager")


@pytest.fixture(scope="module")
def sig_keys(mgr: Client) -> dict[str, bytes]:
    """One SIG per algorithm, generated in the backend; its public half (SPKI DER) by name."""
    out = {}
    for name, alg in ALGS.items():
        r = mgr.keys.GenerateKey(key_pb.GenerateKeyRequest(template=_sig_template(f"sig-{name}", alg)))
        assert r.key.key_type == pb.KEY_TYPE_SIG and r.key.mode_of_use == S
        pub = mgr.keys.GetPublicKey(key_pb.GetPublicKeyRequest(key=pb.KeyRef(key_id=f"sig-{name}")))
        assert pub.algorithm == alg
        out[name] = bytes(pub.public_key)
    return out


def _signer(c: Client, key: str, **data: bytes) -> Any:
    return lambda: _sign(c, key, **data)


def _sign(c: Client, key: str, **data: bytes) -> bytes:
    r = c.signatures.Sign(sig_pb.SignRequest(key=pb.KeyRef(key_id=key), data=sig_pb.SignedData(**data)))
    return bytes(r.signature)


def _verify(c: Client, key: str, signature: bytes, **data: bytes) -> bool:
    r = c.signatures.Verify(sig_pb.VerifyRequest(key=pb.KeyRef(key_id=key), data=sig_pb.SignedData(**data),
                                                 signature=signature))
    return bool(r.verified)


def _openssl_sm2_verify(tmp: Path, public_der: bytes, message: bytes, signature: bytes,
                        uid: bytes = DEFAULT_ID) -> bool:
    return OpenSslSm2Verifier(tmp / "verify", public_der)(message, signature, uid)


@pytest.mark.parametrize("name", ["p256", "p384", "rsa2048", "rsa3072"])
def test_signatures_verify_with_pyca(server: Env, core: Client, sig_keys: dict[str, bytes], name: str) -> None:
    message = os.urandom(200)
    public = serialization.load_der_public_key(sig_keys[name])
    h = hashes.SHA384() if name == "p384" else hashes.SHA256()
    digest = hashlib.new(h.name, message).digest()
    for sig in (_sign(core, f"sig-{name}", message=message), _sign(core, f"sig-{name}", digest=digest)):
        if isinstance(public, rsa.RSAPublicKey):
            public.verify(sig, message, _PSS, h)
        else:
            assert isinstance(public, ec.EllipticCurvePublicKey)
            public.verify(sig, message, ec.ECDSA(h))
        assert _verify(core, f"sig-{name}", sig, message=message)
        assert not _verify(core, f"sig-{name}", sig, message=message + b"!")


def test_sm2_signatures_verify_with_openssl(tmp_path: Path, core: Client, sig_keys: dict[str, bytes]) -> None:
    message = b"transfer 100.00 CNY to 6222020200112233"
    assert _openssl_sm2_verify(tmp_path, sig_keys["sm2"], message, _sign(core, "sig-sm2", message=message))
    uid = b"clearing@bank.example"
    sig = _sign(core, "sig-sm2", message=message, user_id=uid)
    assert _openssl_sm2_verify(tmp_path, sig_keys["sm2"], message, sig, uid)
    assert not _openssl_sm2_verify(tmp_path, sig_keys["sm2"], message, sig)
    assert _verify(core, "sig-sm2", sig, message=message, user_id=uid)
    assert not _verify(core, "sig-sm2", sig, message=message)


def test_openssl_sm2_signature_verifies_through_an_imported_public_key(tmp_path: Path, mgr: Client,
                                                                      core: Client) -> None:
    tool = _openssl()
    key = tmp_path / "partner.pem"
    subprocess.run([tool, "genpkey", "-algorithm", "SM2", "-out", str(key)], check=True, capture_output=True)
    spki = subprocess.run([tool, "pkey", "-in", str(key), "-pubout", "-outform", "DER"], check=True,
                          capture_output=True).stdout
    message = b"clearing file 2026-12-07 batch 17"
    (tmp_path / "m").write_bytes(message)
    sig = subprocess.run([tool, "pkeyutl", "-sign", "-inkey", str(key), "-rawin", "-in", str(tmp_path / "m"),
                          "-digest", "sm3", "-pkeyopt", "distid:1234567812345678"], check=True,
                         capture_output=True).stdout
    r = mgr.keys.ImportPublicKey(key_pb.ImportPublicKeyRequest(
        template=_sig_template("partner-sm2", pb.ALGORITHM_SM2, V), public_key=spki))
    assert r.key.mode_of_use == V and r.key.key_type == pb.KEY_TYPE_SIG
    assert _verify(core, "partner-sm2", sig, message=message)
    assert not _verify(core, "partner-sm2", sig, message=message[:-1])
    # Verify-only: it never signs.
    code, _ = code_of(_signer(core, "partner-sm2", message=message))
    assert code is StatusCode.FAILED_PRECONDITION


def test_pyca_ecdsa_signature_verifies_through_an_imported_public_key(mgr: Client, core: Client) -> None:
    partner = ec.generate_private_key(ec.SECP256R1())
    spki = partner.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    mgr.keys.ImportPublicKey(key_pb.ImportPublicKeyRequest(
        template=_sig_template("partner-p256", pb.ALGORITHM_ECC_P256, V), public_key=spki))
    message = b"ISO 20022 pacs.008 payload"
    sig = partner.sign(message, ec.ECDSA(hashes.SHA256()))
    assert _verify(core, "partner-p256", sig, message=message)
    assert _verify(core, "partner-p256", sig, digest=hashlib.sha256(message).digest())
    bad = bytearray(sig)
    bad[-1] ^= 1
    assert not _verify(core, "partner-p256", bytes(bad), message=message)
    assert not _verify(core, "partner-p256", b"\x30\x00", message=message)


def test_an_imported_key_must_be_what_the_template_says(mgr: Client) -> None:
    spki = ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    for t, data in ((_sig_template("partner-x", pb.ALGORITHM_ECC_P256, V), spki),
                    (_sig_template("partner-x", pb.ALGORITHM_ECC_P384, S), spki),
                    (_sig_template("partner-x", pb.ALGORITHM_ECC_P384, V), b"\x30\x03\x02\x01\x01")):
        code, _ = code_of(mgr.keys.ImportPublicKey, key_pb.ImportPublicKeyRequest(template=t, public_key=data))
        assert code in (StatusCode.INVALID_ARGUMENT, StatusCode.FAILED_PRECONDITION)
    code, _ = code_of(mgr.keys.GetKey, key_pb.GetKeyRequest(key=pb.KeyRef(key_id="partner-x")))
    assert code is StatusCode.NOT_FOUND


@pytest.mark.parametrize("name", list(ALGS))
def test_csr_verifies_with_openssl(tmp_path: Path, mgr: Client, sig_keys: dict[str, bytes], name: str) -> None:
    tool = _openssl()
    subject = f"CN=clearing-gw-{name},O=Example Bank,C=CN"
    csr = bytes(mgr.signatures.GenerateCsr(sig_pb.GenerateCsrRequest(key=pb.KeyRef(key_id=f"sig-{name}"),
                                                                      subject=subject)).csr)
    f = tmp_path / "req.der"
    f.write_bytes(csr)
    args = [tool, "req", "-inform", "DER", "-in", str(f), "-verify", "-noout"]
    if name == "sm2":
        args += ["-vfyopt", "distid:1234567812345678"]
    r = subprocess.run(args, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "verify OK" in (r.stdout + r.stderr)
    if name != "sm2":
        req = x509.load_der_x509_csr(csr)
        assert req.is_signature_valid
        assert req.subject.rfc4514_string() == subject
        assert req.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo) == sig_keys[name]


def test_keys_are_used_only_within_their_usage(mgr: Client, core: Client, sig_keys: dict[str, bytes]) -> None:
    # A signing key never MACs, encrypts or leaves; a MAC key never signs; GenerateKey never makes a
    # verify-only SIG (there is no private half to generate for one).
    from hsmsvc_client.v1 import mac_service_pb2 as mac_pb
    code, _ = code_of(core.macs.GenerateMac, mac_pb.GenerateMacRequest(
        key=pb.KeyRef(key_id="sig-p256"), algorithm=pb.MAC_ALGORITHM_CMAC, data=b"x"))
    assert code is StatusCode.FAILED_PRECONDITION
    code, _ = code_of(_signer(core, "mak-cmac", message=b"x"))
    assert code in (StatusCode.FAILED_PRECONDITION, StatusCode.NOT_FOUND)
    code, _ = code_of(mgr.keys.GenerateKey, key_pb.GenerateKeyRequest(
        template=_sig_template("sig-v", pb.ALGORITHM_ECC_P256, V)))
    assert code is StatusCode.INVALID_ARGUMENT
    code, _ = code_of(mgr.keys.GenerateKey, key_pb.GenerateKeyRequest(
        template=_sig_template("sig-aes", pb.ALGORITHM_AES_256)))
    assert code is StatusCode.INVALID_ARGUMENT
    code, _ = code_of(mgr.keys.ExportKey, key_pb.ExportKeyRequest(
        key=pb.KeyRef(key_id="sig-p256"), kek=pb.KeyRef(key_id="zmk-core")))
    assert code is StatusCode.FAILED_PRECONDITION


def test_bad_requests_get_precise_statuses(core: Client, sig_keys: dict[str, bytes]) -> None:
    cases = [
        (sig_pb.SignRequest(key=pb.KeyRef(key_id="sig-p256")), StatusCode.INVALID_ARGUMENT),
        (sig_pb.SignRequest(key=pb.KeyRef(key_id="sig-p256"), data=sig_pb.SignedData(digest=b"short")),
         StatusCode.INVALID_ARGUMENT),
        (sig_pb.SignRequest(key=pb.KeyRef(key_id="sig-p256"), data=sig_pb.SignedData(message=b"m", user_id=b"u")),
         StatusCode.INVALID_ARGUMENT),
        (sig_pb.SignRequest(key=pb.KeyRef(key_id="sig-sm2"), data=sig_pb.SignedData(digest=bytes(32),
                                                                                     user_id=b"u")),
         StatusCode.INVALID_ARGUMENT),
        (sig_pb.SignRequest(key=pb.KeyRef(key_id="no-such-sig"), data=sig_pb.SignedData(message=b"m")),
         StatusCode.NOT_FOUND),
        (sig_pb.SignRequest(data=sig_pb.SignedData(message=b"m")), StatusCode.INVALID_ARGUMENT),
        (sig_pb.SignRequest(key=pb.KeyRef(key_id="sig-p256"), data=sig_pb.SignedData(message=bytes((1 << 20) + 1))),
         StatusCode.INVALID_ARGUMENT),
    ]
    for request, want in cases:
        code, details = code_of(core.signatures.Sign, request)
        assert code is want, (request, details)
        assert "Traceback" not in details


def test_authorization_is_by_role_method_and_zone(server: Env, mgr: Client) -> None:
    branch = server.client("branch-0001")
    code, _ = code_of(_signer(branch, "sig-p256", message=b"m"))
    assert code is StatusCode.PERMISSION_DENIED
    auditor = server.client("auditor")
    code, _ = code_of(_signer(auditor, "sig-p256", message=b"m"))
    assert code is StatusCode.PERMISSION_DENIED


def test_requests_are_counted_and_audited_and_verifying_is_not_a_use(server: Env, mgr: Client,
                                                                     core: Client) -> None:
    from sqlalchemy import create_engine, select

    from hsmsvc.keys.schema import audit

    # max_uses 2: uses stop at 4. One signature and one request are 2; ten verifications, were they
    # counted, would be past the stop, and the signature after them would be refused.
    mgr.keys.GenerateKey(key_pb.GenerateKeyRequest(template=_sig_template(
        "sig-counted", pb.ALGORITHM_ECC_P256, max_uses=2)))
    sig = _sign(core, "sig-counted", message=b"m")
    for _ in range(10):
        assert _verify(core, "sig-counted", sig, message=b"m")
    mgr.signatures.GenerateCsr(sig_pb.GenerateCsrRequest(key=pb.KeyRef(key_id="sig-counted"), subject="CN=x"))
    _sign(core, "sig-counted", message=b"m")
    with create_engine(server.store_url).connect() as conn:
        rows = conn.execute(select(audit.c.action, audit.c.actor, audit.c.detail)
                            .where(audit.c.key_id == "sig-counted").order_by(audit.c.seq)).all()
    actions = [r.action for r in rows]
    assert actions[0] == "key.generate" and sorted(actions[1:]) == ["key.csr", "key.renewal_due"], actions
    csr = rows[actions.index("key.csr")]
    assert csr.actor == "key-manager" and '"subject":"CN=x"' in csr.detail


def test_a_signing_key_at_its_limit_is_due_for_renewal_not_replaced(server: Env, mgr: Client,
                                                                    core: Client) -> None:
    """A new pair would need a new certificate: at max_uses an audited key.renewal_due, at twice a stop."""
    from sqlalchemy import create_engine, select

    from hsmsvc.keys.schema import audit

    mgr.keys.GenerateKey(key_pb.GenerateKeyRequest(template=_sig_template(
        "sig-limited", pb.ALGORITHM_ECC_P256, max_uses=2)))
    for _ in range(4):
        _sign(core, "sig-limited", message=b"m")
    code, _ = code_of(_signer(core, "sig-limited", message=b"m"))
    assert code is StatusCode.RESOURCE_EXHAUSTED or code is StatusCode.FAILED_PRECONDITION
    listed = mgr.keys.ListKeys(key_pb.ListKeysRequest(key_type=pb.KEY_TYPE_SIG)).keys
    assert [k.version for k in listed if k.key_id == "sig-limited"] == [1]
    with create_engine(server.store_url).connect() as conn:
        actions = conn.execute(select(audit.c.action).where(audit.c.key_id == "sig-limited")).scalars().all()
    assert "key.renewal_due" in actions and "key.rotate" not in actions


def test_an_imported_public_key_takes_a_lifetime_but_no_use_limit(mgr: Client) -> None:
    spki = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    code, _ = code_of(mgr.keys.ImportPublicKey, key_pb.ImportPublicKeyRequest(
        template=_sig_template("partner-limited", pb.ALGORITHM_ECC_P256, V, max_uses=5), public_key=spki))
    assert code is StatusCode.INVALID_ARGUMENT
    r = mgr.keys.ImportPublicKey(key_pb.ImportPublicKeyRequest(
        template=_sig_template("partner-expiring", pb.ALGORITHM_ECC_P256, V, lifetime_seconds=3600),
        public_key=spki))
    assert r.key.HasField("expire_time")
