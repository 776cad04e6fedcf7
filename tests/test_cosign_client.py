"""hsmsvc_client.cosign without a server: sealing the client's share, and the DER of a signature.

The share file is JSON with d1 under AES-256-GCM (NIST SP 800-38D) keyed by scrypt (RFC 7914)
from the passphrase; the key id and the joint point are its additional data, so a change to either
is an authentication failure (SP 800-38D clause 7.2). Keys are built directly; the joint point is
computed with tests/reference.py's integer arithmetic, and the SubjectPublicKeyInfo is the fixed
sm2p256v1 prefix of GB/T 35276-2017 clause 7.1 with the point. The DER of a signature (GB/T
35276-2017 clause 7.3, SM2Signature ::= SEQUENCE { r INTEGER, s INTEGER }) is checked against
pyca's ``encode_dss_signature``.
"""

from __future__ import annotations

import json
import secrets

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st

from hsmsvc_client.cosign import ClientShare, CoSigningError, CoSigningKey, signature_to_der
from tests import reference as ref
from tests.sm2tools import CURVE, SPKI_PREFIX, G, N

PASSPHRASE = b"correct horse battery staple"
MESSAGE = "not a share file, or a wrong passphrase"


def _point(k: int) -> bytes:
    """04 || x || y of k G (GB/T 32918.1-2016 clause 4.2.9), by the reference."""
    pt = ref.ec_mul(CURVE, k, G)
    assert pt is not None
    return b"\x04" + pt[0].to_bytes(32, "big") + pt[1].to_bytes(32, "big")


def _key(d1: int | None = None, key_id: str = "term-0001.cosign") -> CoSigningKey:
    d1 = d1 if d1 is not None else 1 + secrets.randbelow(N - 1)
    point = _point(1 + secrets.randbelow(N - 1))  # the joint key: any point will do for sealing
    return CoSigningKey(ClientShare(d1), key_id, point, SPKI_PREFIX + point)


@pytest.fixture(scope="module")
def sealed() -> tuple[CoSigningKey, bytes]:
    # A d1 with all 32 bytes nonzero, so that its hex and decimal forms are unambiguous in a search.
    while True:
        d1 = 1 + secrets.randbelow(N - 1)
        if all(d1.to_bytes(32, "big")) and d1.bit_length() == 256:
            break
    key = _key(d1)
    return key, key.to_bytes(passphrase=PASSPHRASE)


def _refused(data: bytes, passphrase: bytes = PASSPHRASE) -> None:
    with pytest.raises(CoSigningError) as caught:
        CoSigningKey.from_bytes(data, passphrase=passphrase)
    assert str(caught.value) == MESSAGE
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def _edit(data: bytes, **changes: object) -> bytes:
    doc = json.loads(data)
    assert set(changes) <= set(doc)
    doc.update(changes)
    return json.dumps(doc).encode()


# --- sealing ------------------------------------------------------------------------------------

def test_round_trip(sealed: tuple[CoSigningKey, bytes]) -> None:
    key, data = sealed
    back = CoSigningKey.from_bytes(data, passphrase=PASSPHRASE)
    assert back == key
    assert back.share.d1 == key.share.d1
    assert (back.key_id, back.public_key, back.public_key_der) == (key.key_id, key.public_key, key.public_key_der)


def test_each_sealing_is_fresh(sealed: tuple[CoSigningKey, bytes]) -> None:
    """A new salt and nonce each time (SP 800-38D clause 8: a nonce never repeats under one key)."""
    key, data = sealed
    doc, again = json.loads(data), json.loads(key.to_bytes(passphrase=PASSPHRASE))
    assert doc["salt"] != again["salt"] and doc["nonce"] != again["nonce"] and doc["d1"] != again["d1"]


def test_wrong_passphrase(sealed: tuple[CoSigningKey, bytes]) -> None:
    _refused(sealed[1], PASSPHRASE + b"!")
    _refused(sealed[1], b"")


def test_changed_key_id_or_public_key(sealed: tuple[CoSigningKey, bytes]) -> None:
    """The key id and the public key are GCM's additional data: a change fails authentication."""
    key, data = sealed
    _refused(_edit(data, key_id=key.key_id + "x"))
    _refused(_edit(data, key_id="term-0002.cosign"))
    _refused(_edit(data, public_key=(SPKI_PREFIX + _point(2)).hex()))
    flipped = bytearray(key.public_key_der)
    flipped[-20] ^= 1
    _refused(_edit(data, public_key=flipped.hex()))


def test_changed_ciphertext_nonce_salt_cost_or_format(sealed: tuple[CoSigningKey, bytes]) -> None:
    data = sealed[1]
    doc = json.loads(data)
    sealed_d1 = bytearray.fromhex(doc["d1"])
    sealed_d1[0] ^= 1
    _refused(_edit(data, d1=sealed_d1.hex()))
    _refused(_edit(data, d1=doc["d1"][:-2]))                       # the tag cut short
    _refused(_edit(data, nonce=bytes(12).hex()))
    _refused(_edit(data, salt=bytes(16).hex()))
    _refused(_edit(data, scrypt_n=1 << 14))
    _refused(_edit(data, format="hsmsvc-cosign-share/1"))
    _refused(_edit(data, scrypt_n=1 << 30))  # a cost no share file has: refused before scrypt runs


@pytest.mark.parametrize("cut", [0, 1, 2, 10, 100, -100, -2, -1])
def test_truncated_file(sealed: tuple[CoSigningKey, bytes], cut: int) -> None:
    data = sealed[1]
    _refused(data[:cut])


@pytest.mark.parametrize("data", [b"\xff\xfe", b"[]", b"{}", b"null", b"not json"])
def test_not_a_share_file(data: bytes) -> None:
    _refused(data)


def test_a_missing_field(sealed: tuple[CoSigningKey, bytes]) -> None:
    doc = json.loads(sealed[1])
    for name in doc:
        _refused(json.dumps({k: v for k, v in doc.items() if k != name}).encode())


def test_no_d1_in_clear(sealed: tuple[CoSigningKey, bytes]) -> None:
    key, data = sealed
    d1 = key.share.d1
    text = data.decode().lower()
    raw = d1.to_bytes(32, "big")
    for form in (f"{d1:064x}", f"{d1:x}", str(d1), raw.hex()[:16], raw.hex()[-16:]):
        assert form not in text
    assert raw not in data
    # What is there: 32 bytes of sealed d1 and GCM's 16-byte tag (SP 800-38D clause 7.1).
    assert len(bytes.fromhex(json.loads(data)["d1"])) == 48
    assert "d1=" not in repr(key) and str(d1) not in repr(key) and str(d1) not in repr(key.share)


# --- what the additional data binds --------------------------------------------------------------

def test_changed_spki_is_refused(sealed: tuple[CoSigningKey, bytes]) -> None:
    """The SPKI is what a certificate certifies; swapping it for another key's does not load."""
    _refused(_edit(sealed[1], public_key=(SPKI_PREFIX + _point(2)).hex()))


def test_moving_a_character_between_key_id_and_public_key_is_refused(sealed: tuple[CoSigningKey, bytes]) -> None:
    """Each part of the additional data is length-prefixed: "abc" + P and "ab" + "c" || P differ."""
    key, data = sealed
    moved = key.key_id[-1].encode()
    _refused(_edit(data, key_id=key.key_id[:-1], public_key=(moved + key.public_key_der).hex()))


# --- ClientShare ---------------------------------------------------------------------------------

def test_client_public_share_is_d1_inverse_times_g() -> None:
    """P1 = d1^-1 G (docs/architecture.md, "Two-party SM2")."""
    d1 = 1 + secrets.randbelow(N - 1)
    assert ClientShare(d1).public_share == _point(pow(d1, -1, N))
    generated = ClientShare.generate()
    assert 1 <= generated.d1 < N
    assert str(generated.d1) not in repr(generated)


# --- signature_to_der ----------------------------------------------------------------------------

EDGES = [0, 1, 0x7F, 0x80, 0xFF, 0x100, 2**255 - 1, 2**255, 2**256 - 1, N - 1, 0x80 << 200, 0x7F << 240]


@settings(max_examples=50, deadline=None)
@given(r=st.one_of(st.integers(0, 2**256 - 1), st.sampled_from(EDGES),
                   st.binary(min_size=32, max_size=32).map(lambda b: int.from_bytes(b, "big"))),
       s=st.one_of(st.integers(0, 2**256 - 1), st.sampled_from(EDGES),
                   st.binary(min_size=32, max_size=32).map(lambda b: int.from_bytes(b, "big"))))
def test_signature_to_der_matches_pyca(r: int, s: int) -> None:
    """r || s to SM2Signature DER, minimal INTEGERs with a 00 before a set high bit (X.690 8.3)."""
    assert signature_to_der(r.to_bytes(32, "big") + s.to_bytes(32, "big")) == encode_dss_signature(r, s)


@pytest.mark.parametrize(("r", "s"), [(2**255, 2**255), (2**256 - 1, 2**256 - 1), (1, 1), (0x80, 0x7F)])
def test_signature_to_der_edges(r: int, s: int) -> None:
    assert signature_to_der(r.to_bytes(32, "big") + s.to_bytes(32, "big")) == encode_dss_signature(r, s)
