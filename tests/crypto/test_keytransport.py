"""Key transport under RSA-OAEP and SM2: Wycheproof's OAEP vectors, OpenSSL's SM2, properties."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st

from hsmsvc.crypto import keytransport, sm2
from hsmsvc.errors import InvalidInput
from hsmsvc.types import Algorithm

H = bytes.fromhex

# Wycheproof testvectors_v1/rsa_oaep_2048_sha256_mgf1sha256_test.json, test group 1:
# the private key (PKCS#8) and test cases 3 and 7 (valid) and 8 (encrypted with a
# label, so invalid for a scheme with an empty label).
WYCHEPROOF_PKCS8 = H(
    "308204bd020100300d06092a864886f70d0101010500048204a7308204a30201000282010100a2b451a07d0aa5f96e45"
    "5671513550514a8a5b462ebef717094fa1fee82224e637f9746d3f7cafd31878d80325b6ef5a1700f65903b469429e89"
    "d6eac8845097b5ab393189db92512ed8a7711a1253facd20f79c15e8247f3d3e42e46e48c98e254a2fe9765313a03eff"
    "8f17e1a029397a1fa26a8dce26f490ed81299615d9814c22da610428e09c7d9658594266f5c021d0fceca08d945a12be"
    "82de4d1ece6b4c03145b5d3495d4ed5411eb878daf05fd7afc3e09ada0f1126422f590975a1969816f48698bcbba1b4d"
    "9cae79d460d8f9f85e7975005d9bc22c4e5ac0f7c1a45d12569a62807d3b9a02e5a530e773066f453d1f5b4c2e9cf782"
    "0283f742b9d502030100010282010024cdc62317f5d72a6f6ba6cc9632899b01d1ff28867d72f61688995bc855a4e420"
    "a8405250089bdb13cf8e09543827b748b9d27fbb2b4d9e20af8c5a6a862796d1a4cc18ad16ea678bc1bd4a83bbbe9c5e"
    "57453b5ce7388e41a3ba4ce2b77b4438a229e954f720dae0353dc088ac8a76b26dc276f8e1b7851ddd6398ad16ff2e78"
    "195123b9b036e945c38c9d12434f6df76fe22359eb3e1ac9c011678fc926fad3ae475a4fffff55feb2d147e9c894f4c0"
    "e29a599e762462482d968bf42780945fc0d2c31c573c4431b8f4fe8b8c67bec815abd44f7a86edca1c2308737358d2c2"
    "ae5e2e0e2dadf730980262377e58b13b7d9992060a0bc870ccfdb4a9319ee102818100dc431050f782e894fb5248247d"
    "98cb7d58b8d1e24f3b55d041c56e4de086b0d5bb028bda42eeb5d234d5681e5809d415e6a289ad4cfbf78f978f6c3581"
    "4f50eebff1c5b80a69f788e81e6bab5ddaa78369d659d143ec6f17e79813a575cfad9c569156b90113e2e9110ad9e7b4"
    "8a1c9348a6e653321191290ea36cfb3a5b18f102818100bd1a81e7977f9898122273ae3222b598ea5fb19eb4eabc3830"
    "8a5e32196603b2e500ffb79f5b886816611debc472fac45544070beb057c941378a6868af3b7a03d3f9880ec47d5e089"
    "b94fbde542aba9ae8d72c57088d7abf5b131f39098f7bc160f90536abc9492fd4e06f3ed7299d4b97bb03677207d9566"
    "9f140cfbc20f2502818100a94b528b28f291599121d91952ffd1c7f21d7c1479d99d478885fb161870ee1218bf084726"
    "12dbe5497e8d9c650688e09c786961ae3e2c354dc48ae34514759c4c23c4588488961dc06b414e61c0e1e7fbbd2923d3"
    "1532fe289f96da220711e58c14019808e00414276933bb07e4efb9b4a9b37656917205209f33f09515d7c10281803af0"
    "e72a933aef09ff2503df78bafed531c02ff1a2bc437c540cdcbd4ad35435cf511763596543480629b114ca7f780ff7ef"
    "a32ea0cb6e000d6d9ea1f2ef71fd9cf9948422a165557e37e755edfe70d90b920502eb478bc98a63f788ce3a0f856d6e"
    "de7251a383bfa8fa480a81a925af7b3cc538c4bab8c9f7597ffb68011d8d0281802640fbfbcfefb163ee7a87b6483a66"
    "ee41f956d90fa8a7939bfc042ee0924b1b7993d0445f758d51933e85179c0320b0c968b48a91c38b5be923e1097c0c56"
    "2f88d42294b6a2759bafa5428a74f1270874e45f6fcc60f21602de5eccd143cf31241f5921b5ad3983fb54ef17be3b28"
    "5367e50c999c67247b552fe4bfce945f7b"
)
WYCHEPROOF_VALID = [
    (
        "54657374",
        "5eab3f0741e63986ed647d53e1cd71df041986900803d0f99c68355d249a15a47dc5b4f70a191477654299e5a2731f3b"
        "4eec76dea18262fc696ac794e5f66cbfcddac4472c578e246c26707598055584540b839836b1404c5611ae558a984cee"
        "8fd036cea924e0be2474a940f61e0acc14fcae95ebdc59942a9ce9af9a9c81999f7f6815f057ffdc2533cb15d6391d1e"
        "2d95f16f9c04209c889a4c359c7d2926d28a66e2b030a416b928d2825627998e5191fb4983a6e65024262d94fc09187a"
        "2d78162122433251d1bfcc8e507d06eba2d229c10031261da32ab8ccd15f1c5f9fbf07ed158483d736a110af4b44d6a4"
        "da60d6cb519b4454213cf9f0dc560f2b",
    ),
    (
        "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
        "096958786ee7972050d67a9e4b69d6c6af7db7cc674386df725770dd29129b826e39552330104c8d71e6cc3a3014dd2f"
        "61b54153af51b0438d447ee939f9e3c13bb8b00a37dea6a068f6c9d27e848b1be7a1eeeb3ee50b78036fba95ae46948c"
        "a5b13f356ea24db10f60dc09e4b8bad8f766b668ef72524432080a0ce00ed676d6d5e354984b1078520412525848156d"
        "06f0652469f95791baa3d9a798ae537094f76f976faecd5c9ce0c930a75910c63dacf63485cb4b5e7bdbcf4d80e74037"
        "eaa1a8fe4b52930bec6be99cf6ac88cf5878dbf6859d456a95dbc34654eec425de84ca2a535d517403a9aada827e7d00"
        "93ecfc97ed056a7652825e9a45cb2dcb",
    ),
]


def test_rsa_oaep_sha256_wycheproof_vectors() -> None:
    key = keytransport.load_private_key(Algorithm.RSA_2048, WYCHEPROOF_PKCS8)
    for msg, ct in WYCHEPROOF_VALID:
        assert key.decrypt(H(ct)) == H(msg)


def test_rsa_oaep_refuses_a_labelled_ciphertext_with_the_one_error() -> None:
    key = keytransport.load_private_key(Algorithm.RSA_2048, WYCHEPROOF_PKCS8)
    _, ct = WYCHEPROOF_VALID[0]
    tampered = bytearray(H(ct))
    tampered[-1] ^= 1
    for bad in (bytes(tampered), H(ct)[:-1], b"\x00" * 256, b""):
        with pytest.raises(InvalidInput) as e:
            key.decrypt(bad)
        assert (e.value.field, e.value.reason) == ("wrapped_key", "does not decrypt")


def test_rsa_fingerprint_is_sha256_of_the_spki() -> None:
    key = keytransport.load_private_key(Algorithm.RSA_2048, WYCHEPROOF_PKCS8)
    spki = serialization.load_der_private_key(WYCHEPROOF_PKCS8, None).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert key.public_der == spki
    assert key.fingerprint == hashlib.sha256(spki).digest()[:8]


def test_rsa_key_of_the_wrong_size_or_kind_is_refused() -> None:
    with pytest.raises(InvalidInput, match="3072 bits"):
        keytransport.load_private_key(Algorithm.RSA_3072, WYCHEPROOF_PKCS8)
    with pytest.raises(InvalidInput, match="PKCS#8"):
        keytransport.load_private_key(Algorithm.RSA_2048, WYCHEPROOF_PKCS8[:-1])
    with pytest.raises(InvalidInput, match="RSA_2048, RSA_3072, SM2 or ECC_P521"):
        keytransport.generate_private_key(Algorithm.AES_128)


# --- SM2 against OpenSSL's CLI --------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> bytes:
    if shutil.which("openssl") is None:
        pytest.fail("openssl CLI missing: .ci/run installs it")
    return subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, check=True).stdout


def test_sm2_spki_and_der_ciphertext_interoperate_with_openssl(tmp_path: Path) -> None:
    _openssl("genpkey", "-algorithm", "SM2", "-out", "k.pem", cwd=tmp_path)
    _openssl("pkey", "-in", "k.pem", "-pubout", "-outform", "DER", "-out", "pub.der", cwd=tmp_path)
    text = _openssl("pkey", "-in", "k.pem", "-text", "-noout", cwd=tmp_path).decode()
    priv = re.search(r"priv:\s*([0-9a-f:\s]+)pub:", text)
    assert priv
    d = int(re.sub(r"[:\s]", "", priv.group(1)), 16).to_bytes(32, "big")
    ours = keytransport.load_private_key(Algorithm.SM2, d)
    # OpenSSL's SubjectPublicKeyInfo is byte for byte ours.
    assert ours.public_der == (tmp_path / "pub.der").read_bytes()
    assert ours.fingerprint == sm2.sm3(ours.public_der)[:8]
    # OpenSSL wraps (GB/T 35276 SM2Cipher DER), we unwrap.
    (tmp_path / "k.bin").write_bytes(H("0123456789ABCDEFFEDCBA9876543210"))
    _openssl("pkeyutl", "-encrypt", "-pubin", "-keyform", "DER", "-inkey", "pub.der",
             "-in", "k.bin", "-out", "ct.der", cwd=tmp_path)
    assert ours.decrypt((tmp_path / "ct.der").read_bytes()) == H("0123456789ABCDEFFEDCBA9876543210")
    # Our wrap under OpenSSL's public key unwraps here (C1||C3||C2).
    ct = keytransport.encrypt(Algorithm.SM2, (tmp_path / "pub.der").read_bytes(), b"\x11" * 16)
    assert ct[0] == 4 and ours.decrypt(ct) == b"\x11" * 16


def test_sm2_der_ciphertext_malformed_is_the_one_error() -> None:
    key = keytransport.load_private_key(Algorithm.SM2, keytransport.generate_private_key(Algorithm.SM2))
    for bad in (b"\x30\x00", b"\x30\x05\x02\x01\x01\x02\x00", b"\x30\x81", b"\x04" + b"\x00" * 120):
        with pytest.raises(InvalidInput) as e:
            key.decrypt(bad)
        assert (e.value.field, e.value.reason) == ("wrapped_key", "does not decrypt")


# --- properties -------------------------------------------------------------------------

_PAIRS = {
    a: keytransport.load_private_key(a, keytransport.generate_private_key(a))
    for a in (Algorithm.RSA_2048, Algorithm.SM2)
}


@given(st.sampled_from(sorted(_PAIRS, key=lambda a: a.value)), st.binary(min_size=1, max_size=64), st.data())
def test_wrap_unwrap_round_trip_and_any_tamper_is_refused(alg: Algorithm, key: bytes, data: st.DataObject) -> None:
    pair = _PAIRS[alg]
    ct = keytransport.encrypt(alg, pair.public_der, key)
    assert pair.decrypt(ct) == key
    i = data.draw(st.integers(0, len(ct) - 1))
    bit = data.draw(st.integers(0, 7))
    tampered = ct[:i] + bytes([ct[i] ^ (1 << bit)]) + ct[i + 1 :]
    with pytest.raises(InvalidInput) as e:
        pair.decrypt(tampered)
    assert e.value.reason == "does not decrypt"


@given(st.binary(max_size=100))
def test_public_key_parsers_refuse_garbage(data: bytes) -> None:
    for alg in (Algorithm.RSA_2048, Algorithm.SM2):
        with pytest.raises(InvalidInput):
            keytransport.encrypt(alg, data, b"k" * 16)
