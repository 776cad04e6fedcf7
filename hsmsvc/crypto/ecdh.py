"""ECDH key agreement on NIST P-521 with the NIST SP 800-56C rev. 2 one-step KDF.

* Key pair: P-521 (FIPS 186-5, SP 800-186). A private key is held, inside a
  backend only, as the 66-byte big-endian scalar d; public keys travel as X.509
  SubjectPublicKeyInfo DER. The check value is a fingerprint: the first 8 bytes
  of SHA-256 over that DER, as for an RSA KTK.
* Shared secret Z: the ECC CDH primitive (SP 800-56A rev. 3 clause 5.7.1.2), the
  x-coordinate of d * Q, 66 bytes. OpenSSL validates the partner's key in full
  when it is loaded (clause 5.6.2.3.3): a point off the curve is refused, and the
  point at infinity has no SubjectPublicKeyInfo encoding to load.
* KDF: the one-step KDF of SP 800-56C rev. 2 clause 4.1, option 1, H = SHA-512
  (pyca's ConcatKDFHash): K = H(1 || Z || FixedInfo) || H(2 || ...) truncated.
* FixedInfo: the concatenation format of SP 800-56A rev. 3 clause 5.8.2.1.1,
  AlgorithmID || PartyUInfo || PartyVInfo || SuppPubInfo, each field a 4-byte
  big-endian length and its bytes (:func:`fixed_info`).
"""

from __future__ import annotations

import hashlib
from typing import Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash

from hsmsvc.errors import InvalidInput

__all__ = ["AgreementKey", "MAX_SHARED_INFO", "MIN_SHARED_INFO", "fingerprint", "fixed_info",
           "generate_private_key", "load_private_key", "load_public_key", "one_step_kdf"]

SCALAR_BYTES: Final = 66
"""P-521's order is 521 bits: d and Z are 66 bytes (SP 800-56A rev. 3 clause C.2, FE2OS)."""
MIN_SHARED_INFO: Final = 16
"""The shared info carries a nonce both sites agreed: at least 128 bits, so no two agreements repeat."""
MAX_SHARED_INFO: Final = 512
_CURVE: Final = ec.SECP521R1()
_PUBLIC_KEY: Final = "a SubjectPublicKeyInfo of an EC public key on P-521"


def fingerprint(public_der: bytes) -> bytes:
    """First 8 bytes of SHA-256 over the SubjectPublicKeyInfo DER: what the officers compare."""
    return hashlib.sha256(public_der).digest()[:8]


def generate_private_key() -> bytes:
    """A fresh P-521 key pair's private scalar d, 66 bytes big-endian."""
    key = ec.generate_private_key(_CURVE)
    return key.private_numbers().private_value.to_bytes(SCALAR_BYTES, "big")


def load_public_key(public_der: bytes) -> ec.EllipticCurvePublicKey:
    """The partner's public key, refused unless a valid point on P-521 (the curve of every KAK)."""
    if not isinstance(public_der, (bytes, bytearray)) or not 1 <= len(public_der) <= 1024:
        raise InvalidInput("peer_public_key", f"1 to 1024 bytes: {_PUBLIC_KEY}")
    try:
        key = serialization.load_der_public_key(bytes(public_der))
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # OpenSSL's check on load: not DER, an unknown curve, or a point not on the curve.
        raise InvalidInput("peer_public_key", _PUBLIC_KEY) from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != _CURVE.name:
        raise InvalidInput("peer_public_key", f"{_PUBLIC_KEY} (the curve of this KAK)")
    return key


def fixed_info(*, algorithm_id: bytes, own_public: bytes, peer_public: bytes, key_bits: int,
               shared_info: bytes) -> bytes:
    """SP 800-56A rev. 3 clause 5.8.2.1.1 FixedInfo for one agreement.

    PartyUInfo and PartyVInfo are SHA-256 of the two public keys (the identities the
    officers checked), in byte order, so both sites build the same FixedInfo
    without being told which of U and V they are. SuppPubInfo is the derived key's
    length in bits (4 bytes) and the shared info (the agreed nonce and context).
    """
    ids = sorted((hashlib.sha256(own_public).digest(), hashlib.sha256(peer_public).digest()))
    fields = (algorithm_id, ids[0], ids[1], key_bits.to_bytes(4, "big") + shared_info)
    return b"".join(len(f).to_bytes(4, "big") + f for f in fields)


def one_step_kdf(z: bytes, length: int, info: bytes) -> bytes:
    """SP 800-56C rev. 2 clause 4.1 one-step KDF, option 1 with H = SHA-512."""
    return ConcatKDFHash(algorithm=hashes.SHA512(), length=length, otherinfo=info).derive(z)


class AgreementKey:
    """A loaded KAK: gives its public half and agrees keys with a partner's."""

    __slots__ = ("_key", "fingerprint", "public_der")

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self._key = key
        self.public_der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.fingerprint = fingerprint(self.public_der)

    def __repr__(self) -> str:
        return f"AgreementKey(P-521, {self.fingerprint.hex().upper()})"

    def derive(self, peer: ec.EllipticCurvePublicKey, *, length: int, info: bytes) -> bytes:
        """ECDH Z with ``peer``, then the one-step KDF: ``length`` bytes of keying material."""
        z = self._key.exchange(ec.ECDH(), peer)
        return one_step_kdf(z, length, info)


def load_private_key(encoded: bytes) -> AgreementKey:
    """Parse and check a private scalar held in this module's encoding (1 <= d < n)."""
    if not isinstance(encoded, (bytes, bytearray)) or len(encoded) != SCALAR_BYTES:
        raise InvalidInput("private_key", f"{SCALAR_BYTES} bytes for P-521")
    try:
        key = ec.derive_private_key(int.from_bytes(encoded, "big"), _CURVE)
    except ValueError:
        raise InvalidInput("private_key", "a P-521 scalar") from None
    return AgreementKey(key)
