"""PKCS#10 requests (RFC 2986) from build_csr, checked by OpenSSL's ``req -verify`` and by pyca/cryptography.

The references import nothing from hsmsvc: OpenSSL and pyca parse and verify the request, pyca builds
the RSASSA-PSS AlgorithmIdentifier we compare with, and OpenSSL makes the SM2 request we match.
"""

import os
import shutil
import subprocess
from pathlib import Path

import asn1crypto.csr
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID
from hypothesis import given, settings
from hypothesis import strategies as st

from hsmsvc.crypto import signature
from hsmsvc.crypto.csr import build_csr
from hsmsvc.errors import InvalidInput, VerificationFailed
from hsmsvc.types import Algorithm

ALL = [Algorithm.RSA_2048, Algorithm.RSA_3072, Algorithm.ECC_P256, Algorithm.ECC_P384, Algorithm.SM2]
SUBJECT = "CN=hsmsvc SIG demo-sig-1,OU=Payments\\, Cards,O=Example Bank,L=Shanghai,C=CN"
OIDS = {
    Algorithm.RSA_2048: SignatureAlgorithmOID.RSASSA_PSS,
    Algorithm.RSA_3072: SignatureAlgorithmOID.RSASSA_PSS,
    Algorithm.ECC_P256: SignatureAlgorithmOID.ECDSA_WITH_SHA256,
    Algorithm.ECC_P384: SignatureAlgorithmOID.ECDSA_WITH_SHA384,
}
DEFAULT_ID = "1234567812345678"


@pytest.fixture(scope="module")
def keys() -> dict[Algorithm, signature.SigningKey]:
    return {a: signature.load_private_key(a, signature.generate_private_key(a)) for a in ALL}


def _csr(key: signature.SigningKey, subject: str = SUBJECT, user_id: bytes | None = None) -> bytes:
    return build_csr(subject=subject, public_der=key.public_der, algorithm=key.algorithm, user_id=user_id,
                     sign=lambda info: key.sign(message=info, user_id=user_id))


def _openssl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("openssl") is None:
        pytest.fail("openssl CLI missing: .ci/run installs it")
    return subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)


def _require_sm2(cwd: Path) -> None:
    """Skip where this openssl has no SM2; under CI (CI=true) that is a failure."""
    made = _openssl("genpkey", "-algorithm", "SM2", "-out", "sm2.pem", cwd=cwd)
    if made.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"openssl lacks SM2: {made.stderr.strip()}")
        pytest.skip("this openssl has no SM2")


def _openssl_req_verifies(cwd: Path, der: bytes, distid: str | None = None) -> bool:
    (cwd / "req.der").write_bytes(der)
    args = ["req", "-inform", "DER", "-in", "req.der", "-verify", "-noout"]
    if distid is not None:
        args += ["-vfyopt", f"distid:{distid}"]
    out = _openssl(*args, cwd=cwd)
    text = out.stdout + out.stderr
    # OpenSSL 3.0's `req -verify` exits 0 when the signature fails too: read its verdict.
    assert out.returncode == 0 or "verify failure" in text, text
    return "self-signature verify OK" in text and "failure" not in text


@pytest.mark.parametrize("algorithm", ALL, ids=lambda a: a.value)
def test_openssl_verifies_the_request(keys: dict[Algorithm, signature.SigningKey], tmp_path: Path,
                                      algorithm: Algorithm) -> None:
    if algorithm is Algorithm.SM2:
        _require_sm2(tmp_path)
    der = _csr(keys[algorithm])
    assert _openssl_req_verifies(tmp_path, der, DEFAULT_ID if algorithm is Algorithm.SM2 else None)
    csr = x509.load_der_x509_csr(der)  # pyca parses an SM2 request too; only its key it cannot load
    assert csr.subject == x509.Name.from_rfc4514_string(SUBJECT)
    assert csr.subject.rfc4514_string() == SUBJECT
    assert csr.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "Payments, Cards"
    req = asn1crypto.csr.CertificationRequest.load(der)
    assert req["certification_request_info"]["version"].native == "v1"  # INTEGER 0
    assert len(req["certification_request_info"]["attributes"]) == 0
    assert req["certification_request_info"]["subject_pk_info"].dump() == keys[algorithm].public_der
    assert req.dump(force=True) == der  # DER: re-encoding changes nothing


@pytest.mark.parametrize("algorithm", ALL[:4], ids=lambda a: a.value)
def test_pyca_verifies_the_request(keys: dict[Algorithm, signature.SigningKey], algorithm: Algorithm) -> None:
    csr = x509.load_der_x509_csr(_csr(keys[algorithm]))
    assert csr.is_signature_valid
    assert csr.signature_algorithm_oid == OIDS[algorithm]
    assert csr.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo) == keys[algorithm].public_der


def test_pss_parameters_are_pycas(keys: dict[Algorithm, signature.SigningKey]) -> None:
    """RFC 4055 clause 3.1 RSASSA-PSS-params, as pyca encodes SHA-256, MGF1-SHA-256, salt 32."""
    theirs = rsa.generate_private_key(65537, 2048)
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    ref = x509.CertificateSigningRequestBuilder().subject_name(x509.Name.from_rfc4514_string("CN=x")).sign(
        theirs, hashes.SHA256(), rsa_padding=pss).public_bytes(serialization.Encoding.DER)
    expected = asn1crypto.csr.CertificationRequest.load(ref)["signature_algorithm"].dump()
    for algorithm in (Algorithm.RSA_2048, Algorithm.RSA_3072):
        ours = asn1crypto.csr.CertificationRequest.load(_csr(keys[algorithm]))["signature_algorithm"]
        assert ours.dump() == expected
        assert ours["parameters"]["salt_length"].native == 32


@pytest.mark.parametrize("algorithm", ALL[2:], ids=lambda a: a.value)
def test_ec_and_sm2_signature_algorithms_have_no_parameters(keys: dict[Algorithm, signature.SigningKey],
                                                            algorithm: Algorithm) -> None:
    # RFC 5758 clause 3.2 (ECDSA) and OpenSSL's SM2-with-SM3: SEQUENCE { OID } and nothing else.
    oid = {Algorithm.ECC_P256: "1.2.840.10045.4.3.2", Algorithm.ECC_P384: "1.2.840.10045.4.3.3",
           Algorithm.SM2: "1.2.156.10197.1.501"}[algorithm]
    alg = asn1crypto.csr.CertificationRequest.load(_csr(keys[algorithm]))["signature_algorithm"]
    assert alg["algorithm"].dotted == oid
    assert alg.dump() == b"\x30" + bytes([len(alg["algorithm"].dump())]) + alg["algorithm"].dump()


def test_sm2_request_matches_what_openssl_makes(keys: dict[Algorithm, signature.SigningKey], tmp_path: Path) -> None:
    _require_sm2(tmp_path)
    made = _openssl("req", "-new", "-key", "sm2.pem", "-sm3", "-sigopt", f"distid:{DEFAULT_ID}", "-subj", "/CN=x",
                    "-outform", "DER", "-out", "theirs.der", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    theirs = asn1crypto.csr.CertificationRequest.load((tmp_path / "theirs.der").read_bytes())
    ours = asn1crypto.csr.CertificationRequest.load(_csr(keys[Algorithm.SM2]))
    assert ours["signature_algorithm"].dump() == theirs["signature_algorithm"].dump()
    spki = theirs["certification_request_info"]["subject_pk_info"]
    assert spki["algorithm"].dump() == ours["certification_request_info"]["subject_pk_info"]["algorithm"].dump()
    # Our verifier reads OpenSSL's request: its SPKI and its signature over the info.
    verifier = signature.load_public_key(spki.dump(), Algorithm.SM2)
    verifier.verify(message=theirs["certification_request_info"].dump(), signature=theirs["signature"].native)


def test_sm2_request_with_another_id(keys: dict[Algorithm, signature.SigningKey], tmp_path: Path) -> None:
    _require_sm2(tmp_path)
    der = _csr(keys[Algorithm.SM2], user_id=b"ALICE123@YAHOO.COM")
    assert _openssl_req_verifies(tmp_path, der, "ALICE123@YAHOO.COM")
    assert not _openssl_req_verifies(tmp_path, der, DEFAULT_ID)


@settings(max_examples=30, deadline=None)
# At most 16 characters: pyca bounds CN and O at 64 UTF-8 bytes (RFC 5280's ub-common-name is 64).
# Printable text only: control and format characters are refused (see test_injected_subjects_are_refused).
@given(cn=st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc", "Cf", "Zl", "Zp", "Co", "Cn"]),
                  min_size=1, max_size=16).filter(str.isprintable),
       org=st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc", "Cf", "Zl", "Zp", "Co", "Cn"]),
                   min_size=1, max_size=16).filter(str.isprintable))
def test_any_subject_reads_back(keys: dict[Algorithm, signature.SigningKey], cn: str, org: str) -> None:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)])
    subject = name.rfc4514_string()
    csr = x509.load_der_x509_csr(_csr(keys[Algorithm.ECC_P256], subject))
    assert csr.subject == name
    assert csr.is_signature_valid


@pytest.mark.parametrize("subject", [
    "CN=bank.example\\00.evil.example",   # an escaped NUL: reads as one name, compares as another
    "CN=#3003020101",                    # RFC 4514 clause 2.4: raw DER, which the key would sign
    "1.2.3.4=anything",                  # an attribute no request needs
    "CN=a\\0Ab",                          # an escaped line feed
])
def test_injected_subjects_are_refused(keys: dict[Algorithm, signature.SigningKey], subject: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        _csr(keys[Algorithm.ECC_P256], subject)
    assert caught.value.field == "subject"


@pytest.mark.parametrize("subject", ["", "CN", "=x", "CN=", "FOO=bar", "CN=a,,O=b", "C=CHINA",
                                     "CN=" + "x" * 1030, "CN=" + "x" * 65])
def test_bad_subject_is_refused(keys: dict[Algorithm, signature.SigningKey], subject: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        _csr(keys[Algorithm.ECC_P256], subject)
    assert caught.value.field == "subject"


def test_other_misuse_is_refused(keys: dict[Algorithm, signature.SigningKey]) -> None:
    p256, p384 = keys[Algorithm.ECC_P256], keys[Algorithm.ECC_P384]
    with pytest.raises(InvalidInput) as caught:
        build_csr(subject=SUBJECT, public_der=p256.public_der, algorithm=Algorithm.ECC_P384,
                  sign=lambda info: p256.sign(message=info))
    assert caught.value.field == "public_key"
    with pytest.raises(InvalidInput) as caught:
        build_csr(subject=SUBJECT, public_der=p256.public_der, algorithm=Algorithm.ECC_P256, user_id=b"x",
                  sign=lambda info: p256.sign(message=info))
    assert caught.value.field == "user_id"
    with pytest.raises(InvalidInput) as caught:
        build_csr(subject=SUBJECT, public_der=p256.public_der, algorithm=Algorithm.AES_128,
                  sign=lambda info: p256.sign(message=info))
    assert caught.value.field == "algorithm"
    # A signer holding another key, or signing other bytes, is caught before the request leaves.
    for sign in (lambda info: p384.sign(message=info), lambda info: p256.sign(message=info + b"x")):
        with pytest.raises(VerificationFailed):
            build_csr(subject=SUBJECT, public_der=p256.public_der, algorithm=Algorithm.ECC_P256, sign=sign)
