"""ECIES to a P-521 CTK (SP 800-56A C(1e, 1s), SP 800-56C one-step KDF, RFC 5649 KWP), against tests/reference.py.

The reference's ECDH and KDF are pinned to the NIST CAVP CDH and ACVP one-step KDF vectors and its
key wrap to RFC 5649 section 6 (tests/test_reference.py); here each side decrypts what the other made.
"""

from __future__ import annotations

import secrets

import pytest

from hsmsvc.crypto import keytransport
from hsmsvc.errors import InvalidInput
from hsmsvc.types import Algorithm
from tests import reference as ref
from tests.kas_vectors import CDH_P521_D, CDH_P521_QX, CDH_P521_QY, CDH_P521_Z

P521 = Algorithm.ECC_P521


@pytest.fixture(scope="module")
def ctk() -> tuple[bytes, keytransport.TransportKey]:
    d = keytransport.generate_private_key(P521)
    return d, keytransport.load_private_key(P521, d)


@pytest.mark.parametrize("length", [16, 24, 32, 7])
def test_reference_decrypts_what_ours_encrypts(ctk: tuple[bytes, keytransport.TransportKey], length: int) -> None:
    d, key = ctk
    assert key.public_der == ref.p521_public(d)
    part = secrets.token_bytes(length)
    ct = keytransport.encrypt(P521, key.public_der, part)
    assert len(ct) == 133 + 8 * (-(-length // 8)) + 8 and ct[0] == 4
    assert ref.ecies_p521_decrypt(d, ct) == part


def test_ours_decrypts_what_the_reference_encrypts(ctk: tuple[bytes, keytransport.TransportKey]) -> None:
    _, key = ctk
    part = secrets.token_bytes(32)
    ephemeral = secrets.token_bytes(66)
    ephemeral = (int.from_bytes(ephemeral, "big") % (1 << 520) or 1).to_bytes(66, "big")
    assert key.decrypt(ref.ecies_p521_encrypt(key.public_der, ephemeral, part)) == part


def test_with_the_cavp_cdh_vector_as_the_ctk_and_the_ephemeral_key() -> None:
    # CAVP CDH P-521 count 0: the IUT's d as the CTK, QCAVS as the ephemeral point. The ciphertext is
    # built from the pinned Z alone (no ECDH on the sending side): ours must reach the same Z.
    key = keytransport.load_private_key(P521, CDH_P521_D[-66:])  # CAVP pads to 68 bytes
    assert key.public_der == ref.p521_public(CDH_P521_D)
    assert key.fingerprint == ref.sha256(key.public_der)[:8] == keytransport.fingerprint(P521, key.public_der)
    point = b"\x04" + CDH_P521_QX[-66:] + CDH_P521_QY[-66:]
    part = secrets.token_bytes(32)
    ct = point + ref.aes_kwp_wrap(ref.ecies_p521_kek(CDH_P521_Z, point, key.public_der), part)
    assert key.decrypt(ct) == part


def _fails(key: keytransport.TransportKey, ct: bytes) -> None:
    with pytest.raises(InvalidInput) as e:
        key.decrypt(ct)
    assert e.value.field == "wrapped_key" and "does not decrypt" in str(e.value)


def test_every_fault_is_the_one_error(ctk: tuple[bytes, keytransport.TransportKey]) -> None:
    _, key = ctk
    ct = keytransport.encrypt(P521, key.public_der, secrets.token_bytes(32))
    for i in (0, 1, 70, 132, 133, 140, len(ct) - 1):  # point tag, x, y, wrapped component
        bad = bytearray(ct)
        bad[i] ^= 0x01
        _fails(key, bytes(bad))
    _fails(key, ct[:-8])  # truncated
    _fails(key, ct[:133])  # no wrapped part
    _fails(key, b"\x02" + ct[1:67] + ct[133:])  # compressed point: not the wire form
    # A point not on the curve (the invalid-curve attack): y + 1.
    y = (int.from_bytes(ct[67:133], "big") + 1).to_bytes(66, "big")
    _fails(key, ct[:67] + y + ct[133:])
    # The KEK is bound to this CTK: another CTK's ciphertext does not unwrap.
    other = keytransport.load_private_key(P521, keytransport.generate_private_key(P521))
    _fails(key, keytransport.encrypt(P521, other.public_der, secrets.token_bytes(32)))


def test_encrypt_refuses_a_key_not_on_p521() -> None:
    rsa = keytransport.load_private_key(Algorithm.RSA_2048, keytransport.generate_private_key(Algorithm.RSA_2048))
    with pytest.raises(InvalidInput, match="P-521"):
        keytransport.encrypt(P521, rsa.public_der, b"\x01" * 16)
    with pytest.raises(InvalidInput):
        keytransport.load_private_key(P521, b"\x00" * 66)
