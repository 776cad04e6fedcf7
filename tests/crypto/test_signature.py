"""SIG key-pair signatures: RSASSA-PSS, ECDSA P-256/P-384 and SM2, each against an independent party.

The references here import nothing from hsmsvc: pyca/cryptography's own verify and sign for RSA and
ECDSA, the ``openssl`` command for SM2 (Z_A computed below from the GB/T 32918.2-2016 formula), and a
NIST CAVP SigVer vector.
"""

import base64
import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
from hypothesis import given, settings
from hypothesis import strategies as st

from hsmsvc.crypto import signature
from hsmsvc.errors import InvalidInput, VerificationFailed
from hsmsvc.types import Algorithm

RSA = [Algorithm.RSA_2048, Algorithm.RSA_3072]
ECDSA = [Algorithm.ECC_P256, Algorithm.ECC_P384]
PYCA = RSA + ECDSA
ALL = PYCA + [Algorithm.SM2]
HASH = {Algorithm.RSA_2048: hashes.SHA256, Algorithm.RSA_3072: hashes.SHA256,
        Algorithm.ECC_P256: hashes.SHA256, Algorithm.ECC_P384: hashes.SHA384}
# RSASSA-PSS as the module promises it: SHA-256, MGF1-SHA-256, a 32-byte salt (checked exactly on verify).
PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
MESSAGE = b"key change notice 2026-12-07: ZPK demo-zpk-a version 3"

# sm2p256v1, GB/T 32918.5-2017 recommended parameters (typed here, not taken from hsmsvc).
SM2_A = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
SM2_B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
SM2_GX = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
SM2_GY = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0
SM2_N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # FIPS 186-5 / SP 800-186
DEFAULT_ID = b"1234567812345678"  # GB/T 35276-2017
ALICE = b"ALICE123@YAHOO.COM"  # the GB/T 32918.2-2016 example's ID


@pytest.fixture(scope="module")
def keys() -> dict[Algorithm, signature.SigningKey]:
    return {a: signature.load_private_key(a, signature.generate_private_key(a)) for a in ALL}


@pytest.fixture(scope="module")
def signed(keys: dict[Algorithm, signature.SigningKey]) -> dict[Algorithm, bytes]:
    return {a: keys[a].sign(message=MESSAGE) for a in ALL}


def pyca_public(key: signature.SigningKey) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    pub = serialization.load_der_public_key(key.public_der)
    assert isinstance(pub, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey))
    return pub


def pyca_verify(algorithm: Algorithm, pub: rsa.RSAPublicKey | ec.EllipticCurvePublicKey, sig: bytes,
                data: bytes) -> None:
    if isinstance(pub, rsa.RSAPublicKey):
        pub.verify(sig, data, PSS, HASH[algorithm]())
    else:
        pub.verify(sig, data, ec.ECDSA(HASH[algorithm]()))


def digest_of(algorithm: Algorithm, data: bytes) -> bytes:
    return hashlib.new("sha384" if algorithm is Algorithm.ECC_P384 else "sha256", data).digest()


# --- RSA and ECDSA against pyca/cryptography ---------------------------------------------------

@pytest.mark.parametrize("algorithm", PYCA, ids=lambda a: a.value)
def test_our_signatures_verify_with_pyca(keys: dict[Algorithm, signature.SigningKey], algorithm: Algorithm) -> None:
    key = keys[algorithm]
    pub = pyca_public(key)
    pyca_verify(algorithm, pub, key.sign(message=MESSAGE), MESSAGE)
    pyca_verify(algorithm, pub, key.sign(digest=digest_of(algorithm, MESSAGE)), MESSAGE)


@pytest.mark.parametrize("algorithm", PYCA, ids=lambda a: a.value)
def test_pyca_signatures_verify_here(algorithm: Algorithm) -> None:
    encoded = signature.generate_private_key(algorithm)
    theirs = serialization.load_der_private_key(encoded, password=None)
    verifier = signature.load_private_key(algorithm, encoded).verifier()
    if isinstance(theirs, rsa.RSAPrivateKey):
        sig = theirs.sign(MESSAGE, PSS, hashes.SHA256())
        prehashed = theirs.sign(digest_of(algorithm, MESSAGE), PSS, utils.Prehashed(hashes.SHA256()))
    else:
        assert isinstance(theirs, ec.EllipticCurvePrivateKey)
        sig = theirs.sign(MESSAGE, ec.ECDSA(HASH[algorithm]()))
        prehashed = theirs.sign(digest_of(algorithm, MESSAGE), ec.ECDSA(utils.Prehashed(HASH[algorithm]())))
    for s in (sig, prehashed):
        verifier.verify(message=MESSAGE, signature=s)
        verifier.verify(digest=digest_of(algorithm, MESSAGE), signature=s)


@pytest.mark.parametrize("algorithm", RSA, ids=lambda a: a.value)
def test_pss_salt_length_is_exactly_32(algorithm: Algorithm) -> None:
    encoded = signature.generate_private_key(algorithm)
    theirs = serialization.load_der_private_key(encoded, password=None)
    assert isinstance(theirs, rsa.RSAPrivateKey)
    verifier = signature.load_public_key(theirs.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
    # pyca's default salt (the maximum) and PKCS #1 v1.5 are other schemes: refused.
    longest = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.MAX_LENGTH)
    for sig in (theirs.sign(MESSAGE, longest, hashes.SHA256()), theirs.sign(MESSAGE, padding.PKCS1v15(),
                                                                            hashes.SHA256())):
        with pytest.raises(VerificationFailed):
            verifier.verify(message=MESSAGE, signature=sig)


@pytest.mark.parametrize("algorithm", PYCA, ids=lambda a: a.value)
def test_message_and_digest_forms_agree(keys: dict[Algorithm, signature.SigningKey], algorithm: Algorithm) -> None:
    key, verifier = keys[algorithm], keys[algorithm].verifier()
    d = digest_of(algorithm, MESSAGE)
    verifier.verify(digest=d, signature=key.sign(message=MESSAGE))
    verifier.verify(message=MESSAGE, signature=key.sign(digest=d))
    with pytest.raises(VerificationFailed):
        verifier.verify(digest=digest_of(algorithm, MESSAGE + b"!"), signature=key.sign(message=MESSAGE))


# --- NIST CAVP -----------------------------------------------------------------------------------
# NIST CAVP "FIPS 186-4 ECDSA" test vectors, 186-4ecdsatestvectors.zip, SigVer.rsp, section
# [P-256,SHA-256]: the record with Result = P (0) and the record with Result = F (2 - R changed).
CAVP = [
    ("e1130af6a38ccb412a9c8d13e15dbfc9e69a16385af3c3f1e5da954fd5e7c45fd75e2b8c36699228e92840c0562fbf3772f07e17f1"
     "add56588dd45f7450e1217ad239922dd9c32695dc71ff2424ca0dec1321aa47064a044b7fe3c2b97d03ce470a592304c5ef21eed9f9"
     "3da56bb232d1eeb0035f9bf0dfafdcc4606272b20a3",
     "e424dc61d4bb3cb7ef4344a7f8957a0c5134e16f7a67c074f82e6e12f49abf3c",
     "970eed7aa2bc48651545949de1dddaf0127e5965ac85d1243d6f60e7dfaee927",
     "bf96b99aa49c705c910be33142017c642ff540c76349b9dab72f981fd9347f4f",
     "17c55095819089c2e03b9cd415abdf12444e323075d98f31920b9e0f57ec871c", True),
    ("069a6e6b93dfee6df6ef6997cd80dd2182c36653cef10c655d524585655462d683877f95ecc6d6c81623d8fac4e900ed0019964094e"
     "7de91f1481989ae1873004565789cbf5dc56c62aedc63f62f3b894c9c6f7788c8ecaadc9bd0e81ad91b2b3569ea12260e93924fdddd"
     "3972af5273198f5efda0746219475017557616170e",
     "5cf02a00d205bdfee2016f7421807fc38ae69e6b7ccd064ee689fc1a94a9f7d2",
     "ec530ce3cc5c9d1af463f264d685afe2b4db4b5828d7e61b748930f3ce622a85",
     "dc23d130c6117fb5751201455e99f36f59aba1a6a21cf2d0e7481a97451d6693",
     "d6ce7708c18dbf35d4f8aa7240922dc6823f2e7058cbc1484fcad1599db5018c", False),
]


@pytest.mark.parametrize(("msg", "qx", "qy", "r", "s", "result"), CAVP, ids=["P", "F-R-changed"])
def test_cavp_sigver_p256_sha256(msg: str, qx: str, qy: str, r: str, s: str, result: bool) -> None:
    spki = ec.EllipticCurvePublicNumbers(int(qx, 16), int(qy, 16), ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    verifier = signature.load_public_key(spki, Algorithm.ECC_P256)
    sig = utils.encode_dss_signature(int(r, 16), int(s, 16))
    m = bytes.fromhex(msg)
    if result:
        verifier.verify(message=m, signature=sig)
        verifier.verify(digest=hashlib.sha256(m).digest(), signature=sig)
    else:
        with pytest.raises(VerificationFailed):
            verifier.verify(message=m, signature=sig)


# --- every fault is one VerificationFailed ---------------------------------------------------

@pytest.mark.parametrize("algorithm", ALL, ids=lambda a: a.value)
@settings(max_examples=25, deadline=None)
@given(in_signature=st.booleans(), index=st.integers(min_value=0), xor=st.integers(min_value=1, max_value=255))
def test_any_flipped_byte_fails(keys: dict[Algorithm, signature.SigningKey], signed: dict[Algorithm, bytes],
                                algorithm: Algorithm, in_signature: bool, index: int, xor: int) -> None:
    sig, message = bytearray(signed[algorithm]), bytearray(MESSAGE)
    target = sig if in_signature else message
    target[index % len(target)] ^= xor
    with pytest.raises(VerificationFailed) as caught:
        keys[algorithm].verifier().verify(message=bytes(message), signature=bytes(sig))
    assert (caught.value.field, caught.value.reason) == ("signature", "does not verify")


def _der(tag: int, body: bytes) -> bytes:
    assert len(body) < 0x80
    return bytes([tag, len(body)]) + body


def _der_sig(r: int, s: int, pad: bytes = b"") -> bytes:
    """SEQUENCE { INTEGER r, INTEGER s } (RFC 3279 clause 2.2.3); ``pad`` prefixes r's octets (non-DER)."""
    def i(v: int) -> bytes:
        return v.to_bytes(v.bit_length() // 8 + 1, "big")
    return _der(0x30, _der(0x02, pad + i(r)) + _der(0x02, i(s)))


@pytest.mark.parametrize("algorithm", ALL, ids=lambda a: a.value)
def test_malformed_signatures_fail_alike(keys: dict[Algorithm, signature.SigningKey], signed: dict[Algorithm, bytes],
                                         algorithm: Algorithm) -> None:
    sig = signed[algorithm]
    bad: list[object] = [b"", b"\x30\x00", sig[:-1], sig + b"\x00", bytes(len(sig)), b"\xff" * len(sig),
                         "not bytes", None]
    if algorithm in (Algorithm.ECC_P256, Algorithm.SM2):
        n = P256_N if algorithm is Algorithm.ECC_P256 else SM2_N
        r, s = utils.decode_dss_signature(sig)
        bad += [
            _der_sig(r, s, pad=b"\x00"),  # a second encoding of a valid signature: BER, not DER
            r.to_bytes(32, "big") + s.to_bytes(32, "big"),  # r||s where DER is due
            _der_sig(0, s), _der_sig(r, 0), _der_sig(n, s), _der_sig(r, n), _der_sig(r + n, s),
        ]
    verifier = keys[algorithm].verifier()
    for b in bad:
        with pytest.raises(VerificationFailed) as caught:
            verifier.verify(message=MESSAGE, signature=b)  # type: ignore[arg-type]
        assert caught.value.reason == "does not verify"


@pytest.mark.parametrize("algorithm", ALL, ids=lambda a: a.value)
def test_caller_errors_are_invalid_input(keys: dict[Algorithm, signature.SigningKey], algorithm: Algorithm) -> None:
    key = keys[algorithm]
    size = 48 if algorithm is Algorithm.ECC_P384 else 32
    cases: list[tuple[dict[str, object], str]] = [
        ({}, "message"),
        ({"message": MESSAGE, "digest": bytes(size)}, "message"),
        ({"digest": bytes(size - 1)}, "digest"),
        ({"digest": bytes(size + 16)}, "digest"),
        ({"message": "text"}, "message"),
    ]
    if algorithm is Algorithm.SM2:
        cases += [({"message": MESSAGE, "user_id": b""}, "user_id"),
                  ({"message": MESSAGE, "user_id": bytes(8192)}, "user_id"),
                  ({"digest": bytes(32), "user_id": ALICE}, "user_id")]
    else:
        cases += [({"message": MESSAGE, "user_id": DEFAULT_ID}, "user_id")]
    for kwargs, field in cases:
        with pytest.raises(InvalidInput) as caught:
            key.sign(**kwargs)  # type: ignore[arg-type]
        assert caught.value.field == field, kwargs
        with pytest.raises(InvalidInput) as caught:
            key.verifier().verify(signature=b"\x30\x00", **kwargs)  # type: ignore[arg-type]
        assert caught.value.field == field, kwargs


def test_sm2_longest_user_id_is_accepted(keys: dict[Algorithm, signature.SigningKey]) -> None:
    # ENTL is two bytes of bit length: 8191 bytes is 65528 bits, the last length that fits.
    uid = b"u" * 8191
    keys[Algorithm.SM2].verifier().verify(message=MESSAGE, user_id=uid,
                                          signature=keys[Algorithm.SM2].sign(message=MESSAGE, user_id=uid))


# --- keys ----------------------------------------------------------------------------------------

def _pkcs8(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _spki(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


Foreign = dict[str, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey]


@pytest.fixture(scope="module")
def foreign() -> Foreign:
    return {
        "rsa1024": rsa.generate_private_key(65537, 1024),
        "rsa2048e3": rsa.generate_private_key(3, 2048),
        "p521": ec.generate_private_key(ec.SECP521R1()),
        "k256": ec.generate_private_key(ec.SECP256K1()),
        "ed25519": ed25519.Ed25519PrivateKey.generate(),
    }


def test_generated_encodings(keys: dict[Algorithm, signature.SigningKey]) -> None:
    for algorithm in PYCA:
        theirs = serialization.load_der_private_key(signature.generate_private_key(algorithm), password=None)
        if algorithm in RSA:
            assert isinstance(theirs, rsa.RSAPrivateKey)
            assert theirs.key_size == int(algorithm.value[4:]) and theirs.public_key().public_numbers().e == 65537
        else:
            assert isinstance(theirs, ec.EllipticCurvePrivateKey)
            assert theirs.curve.name == {Algorithm.ECC_P256: "secp256r1", Algorithm.ECC_P384: "secp384r1"}[algorithm]
    d = int.from_bytes(signature.generate_private_key(Algorithm.SM2), "big")
    assert 1 <= d <= SM2_N - 2
    for algorithm in ALL:  # fingerprint: SHA-256 (RSA, EC) or SM3 (SM2) over the SPKI DER, first 8 bytes
        h = hashes.Hash(hashes.SM3() if algorithm is Algorithm.SM2 else hashes.SHA256())
        h.update(keys[algorithm].public_der)
        assert keys[algorithm].fingerprint == h.finalize()[:8] == keys[algorithm].verifier().fingerprint


def test_wrong_algorithm_encodings_are_refused(keys: dict[Algorithm, signature.SigningKey], foreign: Foreign) -> None:
    encoded = {a: signature.generate_private_key(a) for a in ALL}
    refused: list[tuple[Algorithm, bytes]] = [
        (Algorithm.RSA_2048, encoded[Algorithm.RSA_3072]), (Algorithm.RSA_3072, encoded[Algorithm.RSA_2048]),
        (Algorithm.ECC_P256, encoded[Algorithm.ECC_P384]), (Algorithm.ECC_P384, encoded[Algorithm.ECC_P256]),
        (Algorithm.RSA_2048, encoded[Algorithm.ECC_P256]), (Algorithm.ECC_P256, encoded[Algorithm.RSA_2048]),
        (Algorithm.ECC_P256, encoded[Algorithm.SM2]), (Algorithm.SM2, encoded[Algorithm.ECC_P256]),
        (Algorithm.SM2, bytes(32)), (Algorithm.SM2, SM2_N.to_bytes(32, "big")), (Algorithm.SM2, bytes(31)),
        (Algorithm.RSA_2048, _pkcs8(foreign["rsa2048e3"])), (Algorithm.ECC_P256, _pkcs8(foreign["k256"])),
        (Algorithm.ECC_P384, _pkcs8(foreign["p521"])), (Algorithm.ECC_P256, _pkcs8(foreign["ed25519"])),
        (Algorithm.RSA_2048, b"not DER"),
    ]
    for algorithm, data in refused:
        with pytest.raises(InvalidInput) as caught:
            signature.load_private_key(algorithm, data)
        assert caught.value.field == "key", algorithm
    with pytest.raises(InvalidInput):
        signature.load_private_key(Algorithm.AES_256, encoded[Algorithm.SM2])

    for spki in [_spki(foreign[name]) for name in foreign] + [b"", b"\x30\x00", keys[Algorithm.SM2].public_der[:-1]]:
        with pytest.raises(InvalidInput) as caught:
            signature.load_public_key(spki)
        assert caught.value.field == "public_key"
    for algorithm in ALL:
        assert signature.load_public_key(keys[algorithm].public_der).algorithm is algorithm
        other = ALL[(ALL.index(algorithm) + 1) % len(ALL)]
        with pytest.raises(InvalidInput) as caught:
            signature.load_public_key(keys[algorithm].public_der, other)
        assert caught.value.field == "public_key"


def test_a_compressed_point_gets_the_canonical_spki() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    compressed = key.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    point = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    spki = bytes.fromhex("3039301306072a8648ce3d020106082a8648ce3d030107032200") + point
    assert signature.load_public_key(spki).public_der == compressed


def test_repr_shows_no_key_material(keys: dict[Algorithm, signature.SigningKey]) -> None:
    for algorithm, key in keys.items():
        text = repr(key) + str(key) + repr(key.verifier())
        assert key.fingerprint.hex().upper() in text and algorithm.value in text
        assert not hasattr(key, "__dict__")  # __slots__: no vars() to dump
        secret = key._key  # white-box: the private value must not appear in any form
        if isinstance(secret, rsa.RSAPrivateKey):
            values = [secret.private_numbers().d, secret.private_numbers().p]
        elif isinstance(secret, ec.EllipticCurvePrivateKey):
            values = [secret.private_numbers().private_value]
        else:
            values = [secret.d]
        for v in values:
            assert f"{v:x}" not in text.lower() and str(v) not in text


# --- SM2 against OpenSSL -------------------------------------------------------------------------

def _openssl(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    if shutil.which("openssl") is None:
        pytest.fail("openssl CLI missing: .ci/run installs it")
    return subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, check=check, text=True)


def _pem(spki: bytes) -> str:
    b64 = base64.b64encode(spki).decode()
    return "-----BEGIN PUBLIC KEY-----\n" + "\n".join(b64[i:i + 64] for i in range(0, len(b64), 64)) + \
        "\n-----END PUBLIC KEY-----\n"


def _za(x: int, y: int, uid: bytes) -> bytes:
    """Z_A = SM3(ENTL_A || ID_A || a || b || x_G || y_G || x_A || y_A), GB/T 32918.2-2016 clause 5.5."""
    h = hashes.Hash(hashes.SM3())
    h.update((8 * len(uid)).to_bytes(2, "big") + uid)
    for v in (SM2_A, SM2_B, SM2_GX, SM2_GY, x, y):
        h.update(v.to_bytes(32, "big"))
    return h.finalize()


def _sm3(data: bytes) -> bytes:
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize()


def _require_sm2(cwd: Path) -> None:
    """Skip where this openssl has no SM2 (before 1.1.1); under CI (CI=true) that is a failure."""
    made = _openssl("genpkey", "-algorithm", "SM2", "-out", "k.pem", cwd=cwd, check=False)
    if made.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"openssl lacks SM2: {made.stderr.strip()}")
        pytest.skip("this openssl has no SM2")


@pytest.fixture()
def sm2_openssl(tmp_path: Path) -> tuple[Path, int, int, int]:
    """An SM2 key made by OpenSSL (k.pem, pub.pem, pub.der in the directory): d, x, y as it prints them."""
    _require_sm2(tmp_path)
    _openssl("pkey", "-in", "k.pem", "-pubout", "-out", "pub.pem", cwd=tmp_path)
    _openssl("pkey", "-in", "k.pem", "-pubout", "-outform", "DER", "-out", "pub.der", cwd=tmp_path)
    text = _openssl("pkey", "-in", "k.pem", "-text", "-noout", cwd=tmp_path).stdout
    priv = re.search(r"priv:\s*([0-9a-f:\s]+)pub:", text)
    pub = re.search(r"pub:\s*([0-9a-f:\s]+)ASN1", text)
    assert priv and pub
    point = bytes.fromhex(re.sub(r"[:\s]", "", pub.group(1)))
    assert len(point) == 65 and point[0] == 4
    return tmp_path, int(re.sub(r"[:\s]", "", priv.group(1)), 16), int.from_bytes(point[1:33], "big"), \
        int.from_bytes(point[33:], "big")


def _openssl_verifies(d: Path, sig: bytes, uid: bytes, pub: str = "pub.pem") -> bool:
    (d / "sig.der").write_bytes(sig)
    out = _openssl("pkeyutl", "-verify", "-pubin", "-inkey", pub, "-rawin", "-in", "msg", "-sigfile", "sig.der",
                   "-digest", "sm3", "-pkeyopt", f"distid:{uid.decode()}", cwd=d, check=False)
    ok = out.returncode == 0 and "Signature Verified Successfully" in out.stdout
    assert ok or "Verification Failure" in out.stdout + out.stderr, out.stderr
    return ok


@pytest.mark.parametrize("uid", [None, ALICE], ids=["default-id", "custom-id"])
def test_sm2_signature_verifies_in_openssl(keys: dict[Algorithm, signature.SigningKey], tmp_path: Path,
                                           uid: bytes | None) -> None:
    _require_sm2(tmp_path)
    key = keys[Algorithm.SM2]
    (tmp_path / "pub.pem").write_text(_pem(key.public_der))
    (tmp_path / "msg").write_bytes(MESSAGE)
    sig = key.sign(message=MESSAGE, user_id=uid)
    assert _openssl_verifies(tmp_path, sig, uid or DEFAULT_ID)
    assert not _openssl_verifies(tmp_path, sig, DEFAULT_ID + b"9" if uid is None else DEFAULT_ID)


@pytest.mark.parametrize("uid", [DEFAULT_ID, ALICE], ids=["default-id", "custom-id"])
def test_openssl_sm2_signature_verifies_here(sm2_openssl: tuple[Path, int, int, int], uid: bytes) -> None:
    d, _, _, _ = sm2_openssl
    (d / "msg").write_bytes(MESSAGE)
    _openssl("pkeyutl", "-sign", "-inkey", "k.pem", "-rawin", "-in", "msg", "-digest", "sm3",
             "-pkeyopt", f"distid:{uid.decode()}", "-out", "sig.der", cwd=d)
    verifier = signature.load_public_key((d / "pub.der").read_bytes())
    assert verifier.algorithm is Algorithm.SM2
    sig = (d / "sig.der").read_bytes()
    verifier.verify(message=MESSAGE, signature=sig, user_id=None if uid == DEFAULT_ID else uid)
    with pytest.raises(VerificationFailed):
        verifier.verify(message=MESSAGE, signature=sig, user_id=uid + b"x")


def test_sm2_digest_form_matches_openssl(sm2_openssl: tuple[Path, int, int, int]) -> None:
    d, scalar, x, y = sm2_openssl
    key = signature.load_private_key(Algorithm.SM2, scalar.to_bytes(32, "big"))
    assert key.public_der == (d / "pub.der").read_bytes()  # our SPKI is OpenSSL's, byte for byte
    (d / "msg").write_bytes(MESSAGE)
    for uid in (DEFAULT_ID, ALICE):
        e = _sm3(_za(x, y, uid) + MESSAGE)  # GB/T 32918.2-2016 clause 6.1 A1-A2, computed here
        sig = key.sign(digest=e)
        assert _openssl_verifies(d, sig, uid)
        key.verifier().verify(digest=e, signature=sig)
        key.verifier().verify(message=MESSAGE, signature=sig, user_id=None if uid == DEFAULT_ID else uid)
