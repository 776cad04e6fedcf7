"""Digital signatures with a SIG key pair: one scheme per key algorithm.

* RSA_2048, RSA_3072: RSASSA-PSS (RFC 8017 clause 8.1) with SHA-256, MGF1-SHA-256 and a
  32-byte salt; public exponent 65537.
* ECC_P256: ECDSA with SHA-256; ECC_P384: ECDSA with SHA-384 (FIPS 186-5 clause 6.4).
  Signatures are the DER Ecdsa-Sig-Value of RFC 3279 clause 2.2.3.
* SM2: SM2 signature with SM3 (GB/T 32918.2-2016) on sm2p256v1, the signer's ID 1234567812345678
  unless given (GB/T 35276-2017); signatures are the DER SM2Signature of GB/T 35276-2017.

A caller gives either the message, which is hashed here, or its digest: the scheme's hash of the
message for RSA and ECDSA, and for SM2 e = SM3(Z_A || M), Z_A already included, as GM/T 0018-2012's
SDF_InternalSign_ECC takes it.

Private keys are held, inside a backend only, as PKCS#8 DER (RFC 5208) for RSA and ECDSA and as the
32-byte big-endian scalar d for SM2. Public keys travel as X.509 SubjectPublicKeyInfo DER; a key
pair's fingerprint is the first 8 bytes of SHA-256 (RSA, ECDSA) or SM3 (SM2) over that DER.
"""

from __future__ import annotations

from typing import Final

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from hsmsvc.crypto import keytransport, sm2
from hsmsvc.errors import InvalidInput, VerificationFailed
from hsmsvc.types import Algorithm

__all__ = [
    "ALGORITHMS",
    "SigningKey",
    "VerifyingKey",
    "fingerprint",
    "generate_private_key",
    "load_private_key",
    "load_public_key",
]

ALGORITHMS: Final = (Algorithm.RSA_2048, Algorithm.RSA_3072, Algorithm.ECC_P256, Algorithm.ECC_P384, Algorithm.SM2)
_RSA_BITS: Final = {Algorithm.RSA_2048: 2048, Algorithm.RSA_3072: 3072}
_CURVES: Final[dict[Algorithm, tuple[type[ec.EllipticCurve], type[hashes.HashAlgorithm]]]] = {
    Algorithm.ECC_P256: (ec.SECP256R1, hashes.SHA256),
    Algorithm.ECC_P384: (ec.SECP384R1, hashes.SHA384),
}
# A salt as long as the SHA-256 output: RFC 8017 clause 9.1 (note 4) calls hLen typical, RFC 4055
# clause 3.1 recommends it and FIPS 186-5 allows no more. Fixed, not pyca's MAX_LENGTH (which varies
# with the modulus), because a CSR's RSASSA-PSS-params state one value and many HSMs and KMSs accept
# only sLen = hLen; verification insists on exactly 32, the value those parameters promise.
_PSS: Final = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
_SPKI: Final = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
_FAIL: Final = "does not verify"
# ENTL_A is the ID's length in bits in two bytes (GB/T 32918.2-2016 clause 5.5), so at most 8191 bytes.
_MAX_ID: Final = 8191

_Private = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | sm2.PrivateKey
_Public = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | sm2.PublicKey


def _check(algorithm: Algorithm) -> None:
    if algorithm not in ALGORITHMS:
        raise InvalidInput("algorithm", "RSA_2048, RSA_3072, ECC_P256, ECC_P384 or SM2")


def fingerprint(algorithm: Algorithm, public_der: bytes) -> bytes:
    """First 8 bytes of SHA-256 (RSA, ECDSA) or SM3 (SM2) over the SubjectPublicKeyInfo DER: the
    key transport pairs' rule (:func:`hsmsvc.crypto.keytransport.fingerprint`), one for all pairs."""
    _check(algorithm)
    return keytransport.spki_fingerprint(public_der, sm3=algorithm is Algorithm.SM2)


def generate_private_key(algorithm: Algorithm) -> bytes:
    """A fresh key pair's private half: PKCS#8 DER (RSA, ECDSA) or the 32-byte d (SM2)."""
    _check(algorithm)
    if algorithm is Algorithm.SM2:
        return sm2.generate_private_key().d.to_bytes(32, "big")
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if algorithm in _RSA_BITS:
        key = rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS[algorithm])
    else:
        key = ec.generate_private_key(_CURVES[algorithm][0]())
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _input(message: bytes | None, digest: bytes | None, algorithm: Algorithm,
           user_id: bytes | None) -> tuple[bytes, bool]:
    """The bytes to sign or verify and whether they are a digest; checks the caller's choices."""
    if (message is None) == (digest is None):
        raise InvalidInput("message", "exactly one of message and digest")
    if user_id is not None:
        if algorithm is not Algorithm.SM2:
            raise InvalidInput("user_id", "only for SM2")
        if digest is not None:
            # e = SM3(Z_A || M) already holds the ID: one given beside it would be silently ignored.
            raise InvalidInput("user_id", "not with a digest, which already includes Z_A")
        if not isinstance(user_id, (bytes, bytearray)) or not 1 <= len(user_id) <= _MAX_ID:
            raise InvalidInput("user_id", f"1 to {_MAX_ID} bytes")
    if digest is not None:
        size = _CURVES[algorithm][1].digest_size if algorithm in _CURVES else 32
        if not isinstance(digest, (bytes, bytearray)) or len(digest) != size:
            raise InvalidInput("digest", f"{size} bytes")
        return bytes(digest), True
    if not isinstance(message, (bytes, bytearray)):
        raise InvalidInput("message", "bytes")
    return bytes(message), False


def _hash(algorithm: Algorithm, prehashed: bool) -> hashes.HashAlgorithm | utils.Prehashed:
    h = _CURVES[algorithm][1]() if algorithm in _CURVES else hashes.SHA256()
    return utils.Prehashed(h) if prehashed else h


def _public_der(key: _Public) -> bytes:
    if isinstance(key, sm2.PublicKey):
        return sm2.public_key_to_der(key)
    return key.public_bytes(*_SPKI)


class VerifyingKey:
    """A public key of one of the five algorithms: verifies signatures made with its private half."""

    __slots__ = ("_key", "algorithm", "fingerprint", "public_der")

    def __init__(self, algorithm: Algorithm, key: _Public) -> None:
        self.algorithm = algorithm
        self._key = key
        self.public_der = _public_der(key)
        self.fingerprint = fingerprint(algorithm, self.public_der)

    def __repr__(self) -> str:
        return f"VerifyingKey({self.algorithm.value}, {self.fingerprint.hex().upper()})"

    def verify(self, *, message: bytes | None = None, digest: bytes | None = None, signature: bytes,
               user_id: bytes | None = None) -> None:
        """Return if ``signature`` is this key's over the message; else ``VerificationFailed``, one for every fault.

        RFC 8017 clause 8.1.2, FIPS 186-5 clause 6.4.2, GB/T 32918.2-2016 clause 7.1.
        """
        data, prehashed = _input(message, digest, self.algorithm, user_id)
        if not isinstance(signature, (bytes, bytearray)):
            raise VerificationFailed("signature", _FAIL)
        sig = bytes(signature)
        key = self._key
        try:
            if isinstance(key, sm2.PublicKey):
                rs = sm2.signature_from_der(sig)
                # Only the one DER encoding of (r, s) is a signature: no second form of the same one.
                if sm2.signature_to_der(rs) != sig:
                    raise VerificationFailed("signature", _FAIL)
                if prehashed:
                    sm2.verify_digest(key, data, rs)
                else:
                    sm2.verify(key, data, rs, sm2.DEFAULT_ID if user_id is None else bytes(user_id))
            elif isinstance(key, rsa.RSAPublicKey):
                key.verify(sig, data, _PSS, _hash(self.algorithm, prehashed))
            else:
                key.verify(sig, data, ec.ECDSA(_hash(self.algorithm, prehashed)))
        except (InvalidSignature, InvalidInput, ValueError):
            raise VerificationFailed("signature", _FAIL) from None


class SigningKey:
    """A loaded private key: signs, gives its public half. Never shows the private key."""

    __slots__ = ("_key", "algorithm", "fingerprint", "public_der")

    def __init__(self, algorithm: Algorithm, key: _Private) -> None:
        self.algorithm = algorithm
        self._key = key
        self.public_der = _public_der(key.public if isinstance(key, sm2.PrivateKey) else key.public_key())
        self.fingerprint = fingerprint(algorithm, self.public_der)

    def __repr__(self) -> str:
        return f"SigningKey({self.algorithm.value}, {self.fingerprint.hex().upper()})"

    def verifier(self) -> VerifyingKey:
        """This key pair's public half."""
        key = self._key
        return VerifyingKey(self.algorithm, key.public if isinstance(key, sm2.PrivateKey) else key.public_key())

    def sign(self, *, message: bytes | None = None, digest: bytes | None = None,
             user_id: bytes | None = None) -> bytes:
        """The DER signature of the message, or of its digest (see the module docstring).

        RFC 8017 clause 8.1.1, FIPS 186-5 clause 6.4.1, GB/T 32918.2-2016 clause 6.1.
        """
        data, prehashed = _input(message, digest, self.algorithm, user_id)
        key = self._key
        if isinstance(key, sm2.PrivateKey):
            if prehashed:
                return sm2.signature_to_der(sm2.sign_digest(key, data))
            return sm2.signature_to_der(sm2.sign(key, data, sm2.DEFAULT_ID if user_id is None else bytes(user_id)))
        if isinstance(key, rsa.RSAPrivateKey):
            return key.sign(data, _PSS, _hash(self.algorithm, prehashed))
        return key.sign(data, ec.ECDSA(_hash(self.algorithm, prehashed)))


def load_private_key(algorithm: Algorithm, encoded: bytes) -> SigningKey:
    """Parse a private key held in this module's encoding, checking it is a key of ``algorithm``."""
    _check(algorithm)
    if not isinstance(encoded, (bytes, bytearray)):
        raise InvalidInput("key", "bytes")
    if algorithm is Algorithm.SM2:
        if len(encoded) != 32:
            raise InvalidInput("key", "32 bytes d for SM2")
        try:
            return SigningKey(algorithm, sm2.private_key_from_d(int.from_bytes(encoded, "big")))
        except InvalidInput:
            raise InvalidInput("key", "an SM2 scalar d in [1, n-2]") from None
    try:
        key = serialization.load_der_private_key(bytes(encoded), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise InvalidInput("key", "PKCS#8 DER") from None
    if algorithm in _RSA_BITS:
        bits = _RSA_BITS[algorithm]
        if (not isinstance(key, rsa.RSAPrivateKey) or key.key_size != bits
                or key.public_key().public_numbers().e != 65537):
            raise InvalidInput("key", f"an RSA key of {bits} bits, e = 65537")
        return SigningKey(algorithm, key)
    curve = _CURVES[algorithm][0]
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, curve):
        raise InvalidInput("key", f"an EC key on {curve.name}")
    return SigningKey(algorithm, key)


_SPKI_RULE: Final = "SubjectPublicKeyInfo DER of an RSA 2048/3072 (e = 65537), EC P-256/P-384 or SM2 key"


def _detect(spki_der: bytes) -> tuple[Algorithm, _Public]:
    try:
        key = serialization.load_der_public_key(spki_der)
    except UnsupportedAlgorithm:
        # pyca refuses the sm2p256v1 curve OID (1.2.156.10197.1.301); sm2 reads exactly that SPKI.
        try:
            return Algorithm.SM2, sm2.public_key_from_der(spki_der)
        except InvalidInput:
            raise InvalidInput("public_key", _SPKI_RULE) from None
    except (ValueError, TypeError):
        raise InvalidInput("public_key", _SPKI_RULE) from None
    if isinstance(key, rsa.RSAPublicKey):
        for algorithm, bits in _RSA_BITS.items():
            if key.key_size == bits and key.public_numbers().e == 65537:
                return algorithm, key
    elif isinstance(key, ec.EllipticCurvePublicKey):
        for algorithm, (curve, _) in _CURVES.items():
            if isinstance(key.curve, curve):
                return algorithm, key
    raise InvalidInput("public_key", _SPKI_RULE)


def load_public_key(spki_der: bytes, algorithm: Algorithm | None = None) -> VerifyingKey:
    """A verifier from a SubjectPublicKeyInfo DER (RFC 5280 clause 4.1.2.7), its algorithm read from it.

    Refused unless it is a key of one of the five algorithms, and of ``algorithm`` when given.
    The key's ``public_der`` is its canonical re-encoding (an EC point uncompressed), so that one key
    has one fingerprint.
    """
    if algorithm is not None:
        _check(algorithm)
    if not isinstance(spki_der, (bytes, bytearray)):
        raise InvalidInput("public_key", _SPKI_RULE)
    found, key = _detect(bytes(spki_der))
    if algorithm is not None and found is not algorithm:
        raise InvalidInput("public_key", f"a key of {algorithm.value}")
    return VerifyingKey(found, key)
