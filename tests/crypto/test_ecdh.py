"""hsmsvc.crypto.ecdh: ECDH P-521 and the SP 800-56C rev. 2 one-step KDF with SHA-512.

Pinned to NIST's published vectors (the CAVP ECC CDH primitive for Z, the ACVP
one-step KDF samples for the KDF, as in tests/test_reference.py) and checked
against tests/reference.py, which writes both out without hsmsvc.
"""

from __future__ import annotations

import secrets

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from hsmsvc.crypto import ecdh
from hsmsvc.errors import InvalidInput
from tests import reference as ref
from tests.kas_vectors import (
    ACVP_ONESTEP_SHA512,
    CDH_P521_D,
    CDH_P521_QX,
    CDH_P521_QY,
    CDH_P521_Z,
)

H = bytes.fromhex
D = CDH_P521_D[-66:]  # CAVP writes dIUT in 68 bytes; P-521 scalars are 66 (FE2OS)


@pytest.mark.parametrize(("z", "parties", "dkm"), ACVP_ONESTEP_SHA512)
def test_one_step_kdf_is_the_acvp_sha512_vectors(z: str, parties: str, dkm: str) -> None:
    # NIST ACVP KAS-KDF OneStep SHA2-512 sample, tcId 138 and 139 (cited in tests/test_reference.py).
    assert ecdh.one_step_kdf(H(z), 128, H(parties) + (1024).to_bytes(4, "big")) == H(dkm)


def test_agreement_uses_the_cavp_cdh_shared_secret() -> None:
    # NIST CAVP KAS_ECC_CDH_PrimitiveTest.txt [P-521] COUNT = 0: the key derived from dIUT and
    # QCAVS is the one-step KDF of ZIUT, so Z is the published one.
    key = ecdh.load_private_key(D)
    peer = ecdh.load_public_key(ref.p521_spki(CDH_P521_QX, CDH_P521_QY))
    info = b"fixed info"
    assert key.derive(peer, length=32, info=info) == ref.one_step_kdf_sha512(CDH_P521_Z, 32, info)


def test_public_half_and_fingerprint() -> None:
    key = ecdh.load_private_key(D)
    assert key.public_der == ref.p521_public(D)
    assert key.fingerprint == ref.sha256(key.public_der)[:8]
    assert D.hex() not in repr(key).lower()


@settings(max_examples=10, deadline=None)
@given(info=st.binary(min_size=16, max_size=64), bits=st.sampled_from([128, 192, 256]))
def test_both_parties_derive_the_same_key_as_the_reference(info: bytes, bits: int) -> None:
    da, db = ecdh.generate_private_key(), ecdh.generate_private_key()
    a, b = ecdh.load_private_key(da), ecdh.load_private_key(db)
    fa = ecdh.fixed_info(algorithm_id=b"id", own_public=a.public_der, peer_public=b.public_der, key_bits=bits,
                         shared_info=info)
    fb = ecdh.fixed_info(algorithm_id=b"id", own_public=b.public_der, peer_public=a.public_der, key_bits=bits,
                         shared_info=info)
    assert fa == fb == ref.agreement_fixed_info(b"id", a.public_der, b.public_der, bits, info)
    ka = a.derive(ecdh.load_public_key(b.public_der), length=bits // 8, info=fa)
    kb = b.derive(ecdh.load_public_key(a.public_der), length=bits // 8, info=fb)
    assert ka == kb == ref.one_step_kdf_sha512(ref.ecdh_p521_z(da, b.public_der), bits // 8, fa)


def test_a_key_on_another_curve_is_refused() -> None:
    other = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(InvalidInput, match="peer_public_key: .*P-521"):
        ecdh.load_public_key(other)


def test_a_point_not_on_the_curve_is_refused() -> None:
    der = bytearray(ref.p521_spki(CDH_P521_QX, CDH_P521_QY))
    der[-1] ^= 0x01  # the last byte of y: (x, y') is not on P-521
    with pytest.raises(InvalidInput, match="peer_public_key"):
        ecdh.load_public_key(bytes(der))


def test_the_point_at_infinity_is_refused() -> None:
    # SEC 1 clause 2.3.3 encodes the point at infinity as the single octet 00: as an SPKI's BIT STRING.
    valid = ref.p521_spki(CDH_P521_QX, CDH_P521_QY)
    prefix = valid[: valid.index(b"\x03\x81\x86")]  # SEQUENCE header and AlgorithmIdentifier
    algorithm_identifier = prefix[3:]
    body = algorithm_identifier + b"\x03\x02\x00\x00"
    infinity = b"\x30" + bytes([len(body)]) + body
    with pytest.raises(InvalidInput, match="peer_public_key"):
        ecdh.load_public_key(infinity)


@pytest.mark.parametrize("bad", [b"", b"\x30\x00", secrets.token_bytes(158), b"x" * 2000])
def test_garbage_is_refused(bad: bytes) -> None:
    with pytest.raises(InvalidInput, match="peer_public_key"):
        ecdh.load_public_key(bad)


@pytest.mark.parametrize("bad", [b"", bytes(66), b"\xff" * 66, bytes(65)])
def test_a_bad_private_scalar_is_refused(bad: bytes) -> None:
    with pytest.raises(InvalidInput, match="private_key"):
        ecdh.load_private_key(bad)
