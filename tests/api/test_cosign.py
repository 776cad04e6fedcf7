"""Two-party SM2 over mTLS on a real server: CoSigningService and hsmsvc_client.cosign (issue 32).

The scheme (docs/architecture.md, "Two-party SM2"): the client holds d1, the server d2 under
its LMK, the joint key is d = (d1 d2)^-1 - 1. Every signature is verified by OpenSSL
(``openssl pkeyutl -verify -digest sm3 -pkeyopt distid:…``, GB/T 32918.2-2016) against the
joint public key the server gave, and that key is recomputed here from d1 and the server's
share with tests/reference.py's integer arithmetic, which imports nothing from hsmsvc.
Ciphertexts for two-party decryption are made by OpenSSL's SM2 encryption.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path
from typing import Any

import grpc
import pytest
from hsmsvc_client import Client, ClientError
from hsmsvc_client.cosign import PURPOSE_DECRYPT, ClientShare, CoSigningError, CoSigningKey, enroll, signature_to_der
from sqlalchemy import create_engine, select

from hsmsvc.keys.schema import audit
from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import signature_service_pb2 as sig_pb
from hsmsvc_client.v1 import types_pb2 as pb
from tests import reference as ind
from tests.api.conftest import Env, code_of
from tests.sm2tools import sm2cipher, CURVE, DEFAULT_ID, G, N, OpenSslSm2Verifier, openssl, spki

StatusCode = grpc.StatusCode


class _Verifier:
    """OpenSSL's SM2 verification of r || s signatures under one SubjectPublicKeyInfo."""

    def __init__(self, tmp: Path, public_der: bytes) -> None:
        self._verify = OpenSslSm2Verifier(tmp, public_der)

    def __call__(self, message: bytes, signature: bytes, uid: bytes = DEFAULT_ID) -> bool:
        return self._verify(message, signature_to_der(signature), uid)


def _point(raw: bytes) -> tuple[int, int]:
    assert len(raw) == 65 and raw[0] == 4
    return int.from_bytes(raw[1:33], "big"), int.from_bytes(raw[33:], "big")


@pytest.fixture(scope="module")
def mgr(server: Env) -> Client:
    return server.client("key-manager")


@pytest.fixture(scope="module")
def signer(mgr: Client) -> CoSigningKey:
    return enroll(mgr, ClientShare.generate(), key_id="term-0001.cosign", zone="core")


def test_enrolment_gives_the_joint_key_of_both_shares(mgr: Client, signer: CoSigningKey) -> None:
    info = mgr.keys.GetPublicKey(key_pb.GetPublicKeyRequest(key=pb.KeyRef(key_id=signer.key_id)))
    assert bytes(info.public_key) == signer.public_key_der and info.algorithm == pb.ALGORITHM_SM2
    # The same d1 with another server share d2 is another key.
    again = enroll(mgr, signer.share, key_id="term-0001.cosign-b", zone="core")
    assert again.public_key != signer.public_key
    key = mgr.keys.GetKey(key_pb.GetKeyRequest(key=pb.KeyRef(key_id=signer.key_id))).key
    assert key.key_type == pb.KEY_TYPE_CSK and key.mode_of_use == pb.MODE_OF_USE_SIGN_ONLY


def test_enrolment_checked_by_the_reference(mgr: Client) -> None:
    d1 = 1 + secrets.randbelow(N - 2)
    p1 = ind.ec_mul(CURVE, pow(d1, -1, N), G)
    assert p1 is not None
    r = mgr.cosigning.CreateCoSigningKey(sig_pb.CreateCoSigningKeyRequest(
        key_id="term-ref.cosign", purpose=sig_pb.CO_SIGNING_PURPOSE_SIGN,
        client_share=b"\x04" + p1[0].to_bytes(32, "big") + p1[1].to_bytes(32, "big")))
    p2 = _point(bytes(r.server_share))
    joint = ind.ec_add(CURVE, ind.ec_mul(CURVE, pow(d1, -1, N), p2), (G[0], CURVE[0] - G[1]))
    assert joint is not None
    assert bytes(r.public_key).endswith(b"\x04" + joint[0].to_bytes(32, "big") + joint[1].to_bytes(32, "big"))


def test_a_thousand_two_party_signatures_verify_with_openssl(tmp_path: Path, core: Client,
                                                              signer: CoSigningKey) -> None:
    verify = _Verifier(tmp_path, signer.public_key_der)
    for i in range(1000):
        message = os.urandom(1 + i % 64)
        signature = signer.sign(core, message)
        assert verify(message, signature), i
    uid = b"trader-0001@futures.example"
    message = b"order: buy 10 IF2612 at 3850.2"
    sig = signer.sign(core, message, user_id=uid)
    assert verify(message, sig, uid) and not verify(message, sig)


def _sm2_sign(d: int, message: bytes, public: tuple[int, int], uid: bytes = b"1234567812345678") -> bytes:
    """GB/T 32918.2-2016 clause 6.1 in integers (tests/reference.py's arithmetic), with key d."""
    e = int.from_bytes(ind.sm3(ind.sm2_z(CURVE, uid, public) + message), "big")
    while True:
        k = 1 + secrets.randbelow(N - 1)
        x1 = ind.ec_mul(CURVE, k, G)
        assert x1 is not None
        r = (e + x1[0]) % N
        s = pow(1 + d, -1, N) * (k - r * d) % N
        if r and r + k != N and s:
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def test_a_certificate_request_for_the_joint_key(tmp_path: Path, core: Client, signer: CoSigningKey) -> None:
    """The terminal's PKCS#10 request, co-signed: OpenSSL verifies it and reads the joint key from it."""
    tool = openssl()
    subject = "CN=terminal-0001,O=Example Futures,C=CN"
    (tmp_path / "req.der").write_bytes(signer.certificate_request(core, subject))
    r = subprocess.run([tool, "req", "-inform", "DER", "-in", str(tmp_path / "req.der"), "-verify", "-noout",
                        "-vfyopt", "distid:1234567812345678", "-pubkey"], capture_output=True, text=True)
    assert "verify OK" in r.stdout + r.stderr, r.stderr
    pem = subprocess.run([tool, "pkey", "-pubin", "-inform", "DER", "-outform", "PEM"], input=signer.public_key_der,
                         capture_output=True, check=True).stdout.decode()
    assert pem.strip() in r.stdout
    shown = subprocess.run([tool, "req", "-inform", "DER", "-in", str(tmp_path / "req.der"), "-noout", "-subject"],
                           capture_output=True, text=True).stdout
    assert "CN = terminal-0001" in shown and "O = Example Futures" in shown


def test_neither_share_alone_signs(tmp_path: Path, core: Client, signer: CoSigningKey) -> None:
    verify = _Verifier(tmp_path, signer.public_key_der)
    message = b"a message"
    public = _point(signer.public_key)
    # The client alone: d1 used as the key (or as d1^-1 - 1, its own half of the joint formula)
    # makes no signature that verifies under the joint key.
    d1 = signer.share.d1
    for d in (d1, (pow(d1, -1, N) - 1) % N):
        assert not verify(message, _sm2_sign(d, message, public))
    # The server alone: its partial signature needs d1 to finish; any other d1 fails, and the
    # client's check catches it before a bad signature is returned.
    wrong = CoSigningKey(ClientShare(d1 ^ 1), signer.key_id, signer.public_key, signer.public_key_der)
    with pytest.raises(CoSigningError):
        wrong.sign(core, message)
    # The negative results mean something: the same signer with a whole key verifies in OpenSSL.
    d = 1 + secrets.randbelow(N - 2)
    own = ind.ec_mul(CURVE, d, G)
    assert own is not None
    assert _Verifier(tmp_path / "own", spki(own))(message, _sm2_sign(d, message, own))


class _Tampering(Client):
    """A client whose CoSign answers are changed on the way back: a man in the middle of the reply."""

    def _call(self, service: str, method: str, request: Any, timeout: float | None,
              remake: Any = None) -> Any:
        answer = super()._call(service, method, request, timeout, remake)
        if method == "CoSign":
            s3 = bytearray(answer.s3)
            s3[-1] ^= 1
            return sig_pb.CoSignResponse(r=answer.r, s2=answer.s2, s3=bytes(s3), key_version=answer.key_version)
        return answer


def test_a_tampered_partial_signature_is_caught_by_the_client(server: Env, signer: CoSigningKey) -> None:
    ident = server.ids["core-banking"]
    from hsmsvc_client import ClientTls
    c = _Tampering(f"127.0.0.1:{server.port}", ClientTls(server.ca.ca_file, ident.cert, ident.key, "localhost"))
    try:
        with pytest.raises(CoSigningError):
            signer.sign(c, b"pay 1,000,000")
    finally:
        c.close()


def test_every_cosignature_is_audited_with_its_digest_never_the_message(server: Env, core: Client,
                                                                       signer: CoSigningKey) -> None:
    message = b"secret order body 8f3a"
    signer.sign(core, message)
    with create_engine(server.store_url).connect() as conn:
        rows = conn.execute(select(audit.c.action, audit.c.key_id, audit.c.detail, audit.c.actor)
                            .where(audit.c.action == "key.cosign").order_by(audit.c.seq.desc()).limit(1)).all()
    action, key_id, detail, actor = rows[0]
    assert key_id == signer.key_id and actor == "core-banking"
    assert '"digest":"' in detail and message.hex() not in detail and "8f3a" not in detail.replace(
        detail.split('"digest":"')[1][:64], "")


def test_a_revoked_share_never_signs_again(mgr: Client, core: Client) -> None:
    key = enroll(mgr, ClientShare.generate(), key_id="term-0002.cosign")
    key.sign(core, b"before")
    mgr.keys.UpdateKeyState(key_pb.UpdateKeyStateRequest(key=pb.KeyRef(key_id=key.key_id, version=1),
                                                         state=pb.KEY_STATE_REVOKED, reason="terminal stolen"))
    with pytest.raises(ClientError) as e:
        key.sign(core, b"after")
    assert e.value.code is StatusCode.FAILED_PRECONDITION


def test_uses_are_counted(mgr: Client, core: Client) -> None:
    key = enroll(mgr, ClientShare.generate(), key_id="term-0003.cosign", max_uses=1000)
    for _ in range(5):
        key.sign(core, b"m")
    info = mgr.keys.GetKey(key_pb.GetKeyRequest(key=pb.KeyRef(key_id=key.key_id))).key
    assert info.use_count >= 5


def test_two_party_decryption_of_an_openssl_ciphertext(tmp_path: Path, mgr: Client, core: Client) -> None:
    key = enroll(mgr, ClientShare.generate(), key_id="term-0001.codecrypt", purpose=PURPOSE_DECRYPT)
    plain = b"session key 0123456789abcdef and more"
    der = ind.sm2_wrap(key.public_key_der, plain)  # OpenSSL: SM2Cipher DER (GB/T 35276)
    (c1x, c1y), c3, c2 = sm2cipher(der)
    ct = b"\x04" + c1x.to_bytes(32, "big") + c1y.to_bytes(32, "big") + c3 + c2
    assert key.decrypt(core, ct) == plain
    bad = bytearray(ct)
    bad[-1] ^= 1
    with pytest.raises(CoSigningError):
        key.decrypt(core, bytes(bad))
    # A decryption share never signs, a signing share never decrypts.
    with pytest.raises(ClientError) as e:
        key.sign(core, b"m")
    assert e.value.code is StatusCode.FAILED_PRECONDITION


def test_bad_requests_get_precise_statuses(mgr: Client, core: Client, signer: CoSigningKey) -> None:
    g = bytes.fromhex("04" + f"{G[0]:064x}{G[1]:064x}")
    off = bytearray(g)
    off[-1] ^= 1
    for request, want in (
        (sig_pb.CoSignRequest(key=pb.KeyRef(key_id=signer.key_id), digest=bytes(31), client_point=g),
         StatusCode.INVALID_ARGUMENT),
        (sig_pb.CoSignRequest(key=pb.KeyRef(key_id=signer.key_id), digest=bytes(32), client_point=bytes(off)),
         StatusCode.INVALID_ARGUMENT),
        (sig_pb.CoSignRequest(key=pb.KeyRef(key_id=signer.key_id), digest=bytes(32), client_point=g[:33]),
         StatusCode.INVALID_ARGUMENT),
        (sig_pb.CoSignRequest(key=pb.KeyRef(key_id="no-such"), digest=bytes(32), client_point=g),
         StatusCode.NOT_FOUND),
        (sig_pb.CoSignRequest(key=pb.KeyRef(key_id="mak-cmac"), digest=bytes(32), client_point=g),
         StatusCode.NOT_FOUND),
    ):
        code, details = code_of(core.cosigning.CoSign, request)
        assert code in (want, StatusCode.FAILED_PRECONDITION) if want is StatusCode.NOT_FOUND else code is want
        assert "Traceback" not in details
    for request in (
        sig_pb.CreateCoSigningKeyRequest(purpose=sig_pb.CO_SIGNING_PURPOSE_SIGN, client_share=bytes(off)),
        sig_pb.CreateCoSigningKeyRequest(client_share=g),
    ):
        code, _ = code_of(mgr.cosigning.CreateCoSigningKey, request)
        assert code is StatusCode.INVALID_ARGUMENT
    # An operator signs but does not enrol; a manager enrols but does not sign.
    code, _ = code_of(core.cosigning.CreateCoSigningKey, sig_pb.CreateCoSigningKeyRequest(
        purpose=sig_pb.CO_SIGNING_PURPOSE_SIGN, client_share=g))
    assert code is StatusCode.PERMISSION_DENIED
    code, _ = code_of(mgr.cosigning.CoSign, sig_pb.CoSignRequest(key=pb.KeyRef(key_id=signer.key_id),
                                                                  digest=bytes(32), client_point=g))
    assert code is StatusCode.PERMISSION_DENIED

