"""ECIES on P-521 for a ceremony transport key (CTK): a component of 256-bit strength.

The SP 800-56A rev. 3 C(1e, 1s, ECC CDH) scheme (clause 6.2.2.2) with key
transport by AES key wrap:

* The sender makes an ephemeral P-521 key pair (e, Qe) and computes the shared
  secret Z = x(e * Qs) with the CTK's public key Qs (clause 5.7.1.2).
* The SP 800-56C rev. 2 clause 4.1 one-step KDF, H = SHA-512, derives a 256-bit
  key-encryption key from Z and FixedInfo (:func:`fixed_info`).
* The data is wrapped by AES key wrap with padding (RFC 5649, NIST SP 800-38F
  KWP) under that key.

Wire form: Qe as an uncompressed point (SEC 1 v2 clause 2.3.3, 133 bytes) ||
the wrapped data. The receiver validates Qe in full (SP 800-56A rev. 3 clause
5.6.2.3.3, by OpenSSL when the point is loaded); every fault (a bad point, an
integrity failure of the unwrap) is one refusal.
"""

from __future__ import annotations

import hashlib
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap_with_padding,
    aes_key_wrap_with_padding,
)

from hsmsvc.crypto.ecdh import one_step_kdf
from hsmsvc.errors import InvalidInput

__all__ = ["ALGORITHM_ID", "POINT_BYTES", "decrypt", "encrypt", "fixed_info"]

ALGORITHM_ID: Final = b"hsmsvc CTK ECIES P-521 SHA-512 AES-256-KWP"
"""The FixedInfo AlgorithmID: names the scheme, so the key wraps nothing else."""
POINT_BYTES: Final = 133
"""An uncompressed P-521 point: 0x04 || x || y, 66 bytes each."""
KEK_BITS: Final = 256
_CURVE: Final = ec.SECP521R1()
_FAIL: Final = "does not decrypt"


def fixed_info(ephemeral_point: bytes, recipient_der: bytes) -> bytes:
    """SP 800-56A rev. 3 clause 5.8.2.1.1 concatenation FixedInfo, each field a 4-byte length and its bytes.

    AlgorithmID = :data:`ALGORITHM_ID`; PartyUInfo = the ephemeral public key (uncompressed
    point); PartyVInfo = SHA-256 of the CTK's SubjectPublicKeyInfo DER; SuppPubInfo = the
    key-encryption key's length in bits (4 bytes big-endian).
    """
    fields = (ALGORITHM_ID, ephemeral_point, hashlib.sha256(recipient_der).digest(), KEK_BITS.to_bytes(4, "big"))
    return b"".join(len(f).to_bytes(4, "big") + f for f in fields)


def _point(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def encrypt(recipient: ec.EllipticCurvePublicKey, recipient_der: bytes, data: bytes) -> bytes:
    """Qe || KWP(KDF(Z), data) for the CTK public key ``recipient`` (its DER is ``recipient_der``)."""
    if recipient.curve.name != _CURVE.name:
        raise InvalidInput("public_key", "an EC public key on P-521")
    ephemeral = ec.generate_private_key(_CURVE)
    point = _point(ephemeral.public_key())
    z = ephemeral.exchange(ec.ECDH(), recipient)
    kek = one_step_kdf(z, KEK_BITS // 8, fixed_info(point, recipient_der))
    return point + aes_key_wrap_with_padding(kek, bytes(data))


def decrypt(private: ec.EllipticCurvePrivateKey, recipient_der: bytes, ciphertext: bytes) -> bytes:
    """The data sent by :func:`encrypt`; one ``InvalidInput`` for every fault."""
    if len(ciphertext) < POINT_BYTES + 16 or ciphertext[0] != 0x04:
        raise InvalidInput("wrapped_key", _FAIL)
    point, wrapped = ciphertext[:POINT_BYTES], ciphertext[POINT_BYTES:]
    try:
        # Loading validates the point: on the curve, coordinates in range (SP 800-56A clause 5.6.2.3.3).
        ephemeral = ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, point)
        z = private.exchange(ec.ECDH(), ephemeral)
        kek = one_step_kdf(z, KEK_BITS // 8, fixed_info(point, recipient_der))
        return aes_key_unwrap_with_padding(kek, wrapped)
    except (ValueError, InvalidUnwrap):
        raise InvalidInput("wrapped_key", _FAIL) from None
