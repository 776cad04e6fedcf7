"""SM2, SM3 and SM4 (GB/T 32918, GB/T 32905, GB/T 32907; GM/T 0003 annex examples)."""

import re
import shutil
import subprocess
from pathlib import Path

import gmssl.func
import gmssl.sm2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hsmsvc.crypto import sm2
from hsmsvc.crypto._cipher import BlockCipher, ecb_decrypt, ecb_encrypt
from hsmsvc.errors import InvalidInput, VerificationFailed
from hsmsvc.types import Algorithm
from tests.crypto.sm_curves import TEST_CURVE

H = bytes.fromhex



# --- SM3: GB/T 32905-2016 annex A -------------------------------------------------

@pytest.mark.parametrize(
    ("msg", "digest"),
    [
        (b"abc", "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"),
        (b"abcd" * 16, "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"),
    ],
)
def test_sm3_gbt32905_annex_a(msg: bytes, digest: str) -> None:
    assert sm2.sm3(msg) == H(digest)


# --- SM4: GB/T 32907-2016 annex A ---------------------------------------------------

SM4_KEY = H("0123456789abcdeffedcba9876543210")


def test_sm4_gbt32907_a1() -> None:
    assert ecb_encrypt(Algorithm.SM4, SM4_KEY, SM4_KEY) == H("681edf34d206965e86b3e94f536e4246")
    assert ecb_decrypt(Algorithm.SM4, SM4_KEY, H("681edf34d206965e86b3e94f536e4246")) == SM4_KEY


def test_sm4_gbt32907_a2_million_iterations() -> None:
    c = BlockCipher(Algorithm.SM4, SM4_KEY)
    block = SM4_KEY
    for _ in range(1_000_000):
        block = c.encrypt(block)
    assert block == H("595298c7c6fd271f0402f804c33d3f66")


@given(st.binary(min_size=16, max_size=16), st.binary(min_size=16, max_size=160).filter(lambda b: len(b) % 16 == 0))
def test_sm4_round_trip(key: bytes, data: bytes) -> None:
    assert ecb_decrypt(Algorithm.SM4, key, ecb_encrypt(Algorithm.SM4, key, data)) == data


# --- SM2 signature: GM/T 0003.2-2012 annex A.2, and the recommended curve ---------

ALICE = sm2.PublicKey(
    0x0AE4C7798AA0F119471BEE11825BE46202BB79E2A5844495E97C04FF4DF2548A,
    0x7C0240F88F1CD4E16352A73C17B7F16F07353E53A176D684A9FE0C6BB798E857,
    TEST_CURVE,
)
ALICE_KEY = sm2.PrivateKey(0x128B2FA8BD433C6C068C8D803DFF79792A519A55171B1B650C23661D15897263, ALICE)
ALICE_ID = b"ALICE123@YAHOO.COM"


def test_sm2_za_and_signature_gmt0003_2_annex_a() -> None:
    assert sm2.za(ALICE, ALICE_ID) == H("F4A38489E32B45B6F876E3AC2168CA392362DC8F23459C1D1146FC3DBFB7BC9A")
    e = sm2.sm3(sm2.za(ALICE, ALICE_ID) + b"message digest")
    assert e == H("B524F552CD82B8B028476E005C377FB19A87E6FC682D48BB5D42E3D9B9EFFE76")
    sig = sm2._sign_with_k(ALICE_KEY, e, 0x6CB28D99385C175C94F94E934817663FC176D925DD72B727260DBAAE1FB2F96F)
    assert sig == H(
        "40F1EC59F793D9F49E09DCEF49130D4194F79FB1EED2CAA55BACDB49C4E755D1"
        "6FC6DAC32C5D5CF10C77DFB20F7C2EB667A457872FB09EC56327A67EC7DEEBE7"
    )
    sm2.verify(ALICE, b"message digest", sig, ALICE_ID)
    with pytest.raises(VerificationFailed):
        sm2.verify(ALICE, b"message digest", sig, b"BOB")


def test_sm2_signature_recommended_curve_example() -> None:
    # GM/T 0003.5-2012 / GB/T 32918.5-2017 example on sm2p256v1 with the default ID.
    d = 0x3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8
    pub = sm2.PublicKey(
        0x09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020,
        0xCCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13,
    )
    key = sm2.PrivateKey(d, pub)
    e = sm2.sm3(sm2.za(pub) + b"message digest")
    assert e == H("F0B43E94BA45ACCAACE692ED534382EB17E6AB5A19CE7B31F4486FDFC0D28640")
    sig = sm2._sign_with_k(key, e, 0x59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21)
    assert sig == H(
        "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3"
        "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA"
    )
    sm2.verify(pub, b"message digest", sig)


# --- SM2 encryption: GM/T 0003.4-2012 annex A.2 --------------------------------------

def test_sm2_encryption_gmt0003_4_annex_a() -> None:
    bob = sm2.PublicKey(
        0x435B39CCA8F3B508C1488AFC67BE491A0F7BA07E581A0E4849A5CF70628A7E0A,
        0x75DDBA78F15FEECB4C7895E2C1CDF5FE01DEBB2CDBADF45399CCF77BBA076A42,
        TEST_CURVE,
    )
    bob_key = sm2.PrivateKey(0x1649AB77A00637BD5E2EFE283FBF353534AA7F7CB89463F208DDBC2920BB0DA0, bob)
    k = 0x4C62EEFD6ECFC2B95B92FD6C3D9575148AFA17425546D49018E5388D49DD7B4F
    ct = sm2._encrypt_with_k(bob, b"encryption standard", k)
    assert ct is not None
    c1 = H(
        "04245C26FB68B1DDDDB12C4B6BF9F2B6D5FE60A383B0D18D1C4144ABF17F6252E7"
        "76CB9264C2A7E88E52B19903FDC47378F605E36811F5C07423A24B84400F01B8"
    )
    c2 = H("650053A89B41C418B0C3AAD00D886C00286467")
    c3 = H("9C3D7360C30156FAB7C80A0276712DA9D8094A634B766D3A285E07480653426D")
    # The annex prints C1||C2||C3 (2012 order); we emit C1||C3||C2 (GB/T 32918.4-2016).
    assert ct == c1 + c3 + c2
    assert sm2.decrypt(bob_key, ct) == b"encryption standard"


# --- gmssl's randomness is never used -------------------------------------------------

def test_gmssl_random_source_is_never_used(monkeypatch: pytest.MonkeyPatch) -> None:
    def tripwire(*_: object) -> str:
        raise AssertionError("gmssl's predictable random source was used")

    monkeypatch.setattr(gmssl.func, "random_hex", tripwire)
    monkeypatch.setattr(gmssl.func, "choice", tripwire)
    monkeypatch.setattr(gmssl.sm2, "choice", tripwire)
    key = sm2.generate_private_key()
    sig = sm2.sign(key, b"payload")
    sm2.verify(key.public, b"payload", sig)
    assert sm2.decrypt(key, sm2.encrypt(key.public, b"payload")) == b"payload"


def test_public_key_starting_with_zero_digits_survives() -> None:
    # gmssl's constructor lstrip("04")s public keys; ours must not be mangled.
    for _ in range(300):
        key = sm2.generate_private_key()
        if f"{key.public.x:064x}".startswith("0"):
            break
    sm2.verify(key.public, b"m", sm2.sign(key, b"m"))


# --- properties ---------------------------------------------------------------------

@settings(max_examples=10)
@given(st.binary(max_size=300), st.binary(min_size=1, max_size=40))
def test_sign_verify_round_trip_and_tamper(msg: bytes, uid: bytes) -> None:
    key = sm2.generate_private_key()
    sig = sm2.sign(key, msg, uid)
    sm2.verify(key.public, msg, sig, uid)
    assert sm2.signature_from_der(sm2.signature_to_der(sig)) == sig
    with pytest.raises(VerificationFailed):
        sm2.verify(key.public, msg + b"x", sig, uid)


@settings(max_examples=10)
@given(st.binary(min_size=1, max_size=200), st.integers(0, 10_000))
def test_encrypt_decrypt_round_trip_and_tamper(msg: bytes, where: int) -> None:
    key = sm2.generate_private_key()
    ct = sm2.encrypt(key.public, msg)
    assert sm2.decrypt(key, ct) == msg
    i = 65 + where % (len(ct) - 65)
    bad = ct[:i] + bytes([ct[i] ^ 1]) + ct[i + 1:]
    with pytest.raises(InvalidInput) as e:
        sm2.decrypt(key, bad)
    assert str(e.value) == "ciphertext: does not decrypt"


@pytest.mark.parametrize("sig", [bytes(64), b"\xff" * 64, bytes(63)])
def test_out_of_range_signatures_rejected(sig: bytes) -> None:
    key = sm2.generate_private_key()
    with pytest.raises((VerificationFailed, InvalidInput)):
        sm2.verify(key.public, b"m", sig)


def test_point_not_on_curve_rejected() -> None:
    with pytest.raises(InvalidInput):
        sm2.PublicKey(1, 2)


def test_private_key_repr_is_redacted() -> None:
    key = sm2.generate_private_key()
    assert f"{key.d:x}" not in repr(key) and "redacted" in repr(key)


# --- cross-check with OpenSSL's own SM2 -------------------------------------------------

def _openssl(*args: str, cwd: Path) -> str:
    if shutil.which("openssl") is None:
        pytest.fail("openssl CLI missing: .ci/run installs it")
    return subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, check=True, text=True).stdout


def _der_len(n: int) -> bytes:
    return bytes([n]) if n < 0x80 else bytes([0x81, n])


def _der(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _der_len(len(body)) + body


def _der_uint(v: int) -> bytes:
    return _der(0x02, v.to_bytes((v.bit_length() + 8) // 8, "big"))


@pytest.fixture()
def openssl_key(tmp_path: Path) -> tuple[sm2.PrivateKey, Path]:
    _openssl("genpkey", "-algorithm", "SM2", "-out", "k.pem", cwd=tmp_path)
    _openssl("pkey", "-in", "k.pem", "-pubout", "-out", "pub.pem", cwd=tmp_path)
    text = _openssl("pkey", "-in", "k.pem", "-text", "-noout", cwd=tmp_path)
    priv = re.search(r"priv:\s*([0-9a-f:\s]+)pub:", text)
    pub = re.search(r"pub:\s*([0-9a-f:\s]+)ASN1", text)
    assert priv and pub
    d = int(re.sub(r"[:\s]", "", priv.group(1)), 16)
    point = H(re.sub(r"[:\s]", "", pub.group(1)))
    return sm2.PrivateKey(d, sm2.PublicKey.decode(point)), tmp_path


def test_our_signature_verifies_in_openssl(openssl_key: tuple[sm2.PrivateKey, Path]) -> None:
    key, d = openssl_key
    (d / "m").write_bytes(b"interbank key change notice")
    (d / "sig.der").write_bytes(sm2.signature_to_der(sm2.sign(key, b"interbank key change notice")))
    out = _openssl("pkeyutl", "-verify", "-in", "m", "-rawin", "-digest", "sm3", "-pubin", "-inkey", "pub.pem",
                   "-sigfile", "sig.der", "-pkeyopt", "distid:1234567812345678", cwd=d)
    assert "Verified Successfully" in out


def test_openssl_signature_verifies_here(openssl_key: tuple[sm2.PrivateKey, Path]) -> None:
    key, d = openssl_key
    (d / "m").write_bytes(b"confirmation")
    _openssl("pkeyutl", "-sign", "-in", "m", "-rawin", "-digest", "sm3", "-inkey", "k.pem",
             "-pkeyopt", "distid:1234567812345678", "-out", "sig.der", cwd=d)
    sm2.verify(key.public, b"confirmation", sm2.signature_from_der((d / "sig.der").read_bytes()))


def test_encryption_interoperates_with_openssl(openssl_key: tuple[sm2.PrivateKey, Path]) -> None:
    key, d = openssl_key
    # OpenSSL -> us: its SM2Cipher is SEQUENCE { x, y, hash C3, ciphertext C2 }.
    (d / "m").write_bytes(b"zone master key component")
    _openssl("pkeyutl", "-encrypt", "-pubin", "-inkey", "pub.pem", "-in", "m", "-out", "ct.der", cwd=d)
    fields = re.findall(r"(?:INTEGER\s+:|\[HEX DUMP\]:)([0-9A-F]+)",
                        _openssl("asn1parse", "-inform", "DER", "-in", "ct.der", cwd=d))
    x, y, c3, c2 = (int(fields[0], 16), int(fields[1], 16), H(fields[2]), H(fields[3]))
    c1 = sm2.PublicKey(x, y).encode()
    assert sm2.decrypt(key, c1 + c3 + c2) == b"zone master key component"
    # Us -> OpenSSL.
    ct = sm2.encrypt(key.public, b"terminal master key")
    x = int.from_bytes(ct[1:33], "big")
    y = int.from_bytes(ct[33:65], "big")
    body = _der_uint(x) + _der_uint(y) + _der(0x04, ct[65:97]) + _der(0x04, ct[97:])
    (d / "ours.der").write_bytes(_der(0x30, body))
    _openssl("pkeyutl", "-decrypt", "-inkey", "k.pem", "-in", "ours.der", "-out", "plain", cwd=d)
    assert (d / "plain").read_bytes() == b"terminal master key"


@given(st.binary(min_size=16, max_size=16), st.binary(min_size=16, max_size=16),
       st.binary(min_size=16, max_size=96).filter(lambda b: len(b) % 16 == 0))
def test_sm4_cbc_matches_gmssl(key: bytes, iv: bytes, data: bytes) -> None:
    # Cross-check OpenSSL's SM4-CBC against gmssl's independent pure-Python SM4.
    from gmssl.sm4 import SM4_ENCRYPT, CryptSM4

    from hsmsvc.crypto._cipher import cbc_decrypt, cbc_encrypt

    ours = cbc_encrypt(Algorithm.SM4, key, iv, data)
    ref = CryptSM4()
    ref.set_key(key, SM4_ENCRYPT)
    assert ours == bytes(ref.crypt_cbc(iv, data))[: len(data)]
    assert cbc_decrypt(Algorithm.SM4, key, iv, ours) == data
