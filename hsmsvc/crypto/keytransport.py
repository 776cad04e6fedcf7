"""Key transport under a key pair: RSAES-OAEP, SM2 encryption and ECIES on P-521.

* RSA: RSAES-OAEP with SHA-256 and MGF1-SHA-256, empty label (RFC 8017
  clause 7.1), 2048- or 3072-bit modulus, public exponent 65537.
* SM2: public-key encryption on sm2p256v1 (GB/T 32918.4-2016), ciphertext
  C1||C3||C2, or the SM2Cipher DER of GB/T 35276-2017 that OpenSSL emits.
* ECC_P521 (a CTK of 256-bit strength): ECIES in the SP 800-56A rev. 3
  C(1e, 1s) form, SP 800-56C one-step KDF with SHA-512, RFC 5649 AES key wrap
  with padding (:mod:`hsmsvc.crypto.ecies`).

A private key is held, inside a backend only, as PKCS#8 DER (RFC 5208) for
RSA, as the 32-byte big-endian scalar d for SM2 and the 66-byte one for P-521.
Public keys travel as X.509 SubjectPublicKeyInfo DER. A key pair's check value
is a fingerprint: the first 8 bytes of SHA-256 (RSA, P-521) or SM3 (SM2) over that DER.
"""

from __future__ import annotations

from typing import Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from hsmsvc.crypto import ecdh, ecies, sm2
from hsmsvc.errors import InvalidInput
from hsmsvc.types import Algorithm

__all__ = ["TransportKey", "encrypt", "fingerprint", "generate_private_key", "load_private_key", "spki_fingerprint"]

_RSA_BITS: Final = {Algorithm.RSA_2048: 2048, Algorithm.RSA_3072: 3072}
_OAEP: Final = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
_FAIL: Final = "does not decrypt"


def _check(algorithm: Algorithm) -> None:
    if algorithm not in (Algorithm.RSA_2048, Algorithm.RSA_3072, Algorithm.SM2, Algorithm.ECC_P521):
        raise InvalidInput("algorithm", "RSA_2048, RSA_3072, SM2 or ECC_P521")


def fingerprint(algorithm: Algorithm, public_der: bytes) -> bytes:
    """First 8 bytes of SHA-256 (RSA, P-521) or SM3 (SM2) over the SubjectPublicKeyInfo DER."""
    _check(algorithm)
    return spki_fingerprint(public_der, sm3=algorithm is Algorithm.SM2)


def spki_fingerprint(public_der: bytes, *, sm3: bool) -> bytes:
    """A key pair's check value, for every kind of pair: the first 8 bytes of SM3 (an SM2 pair's)
    or SHA-256 (any other) over its SubjectPublicKeyInfo DER."""
    if sm3:
        return sm2.sm3(public_der)[:8]
    h = hashes.Hash(hashes.SHA256())
    h.update(public_der)
    return h.finalize()[:8]


def generate_private_key(algorithm: Algorithm) -> bytes:
    """A fresh key pair's private half in the encoding this module holds."""
    _check(algorithm)
    if algorithm is Algorithm.SM2:
        return sm2.generate_private_key().d.to_bytes(32, "big")
    if algorithm is Algorithm.ECC_P521:
        return ecdh.generate_private_key()
    key = rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS[algorithm])
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class TransportKey:
    """A loaded private key: decrypts transported keys, gives its public half."""

    __slots__ = ("_ec", "_rsa", "_sm2", "algorithm", "fingerprint", "public_der")

    def __init__(self, algorithm: Algorithm, rsa_key: rsa.RSAPrivateKey | None, sm2_key: sm2.PrivateKey | None,
                 ec_key: ec.EllipticCurvePrivateKey | None = None) -> None:
        self.algorithm = algorithm
        self._rsa = rsa_key
        self._sm2 = sm2_key
        self._ec = ec_key
        spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        if rsa_key is not None:
            self.public_der = rsa_key.public_key().public_bytes(*spki)
        elif ec_key is not None:
            self.public_der = ec_key.public_key().public_bytes(*spki)
        else:
            assert sm2_key is not None
            self.public_der = sm2.public_key_to_der(sm2_key.public)
        self.fingerprint = fingerprint(algorithm, self.public_der)

    def __repr__(self) -> str:
        return f"TransportKey({self.algorithm.value}, {self.fingerprint.hex().upper()})"

    def sign(self, data: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017 clause 8.2): a TR-34 KDH's CMS signature."""
        if self._rsa is None:
            raise InvalidInput("key", "an RSA key pair")
        return self._rsa.sign(bytes(data), padding.PKCS1v15(), hashes.SHA256())

    def decrypt(self, ciphertext: bytes) -> bytes:
        """The transported bytes; one ``InvalidInput`` for every fault (no Manger oracle)."""
        if not isinstance(ciphertext, (bytes, bytearray)) or not 1 <= len(ciphertext) <= 1024:
            raise InvalidInput("wrapped_key", _FAIL)
        data = bytes(ciphertext)
        if self._ec is not None:
            return ecies.decrypt(self._ec, self.public_der, data)
        if self._rsa is not None:
            if len(data) != self._rsa.key_size // 8:
                raise InvalidInput("wrapped_key", _FAIL)
            try:
                return self._rsa.decrypt(data, _OAEP)
            except ValueError:
                raise InvalidInput("wrapped_key", _FAIL) from None
        assert self._sm2 is not None
        try:
            if data[0] == 0x30:
                data = sm2.ciphertext_from_der(data)
            return sm2.decrypt(self._sm2, data)
        except InvalidInput:
            raise InvalidInput("wrapped_key", _FAIL) from None


def load_private_key(algorithm: Algorithm, encoded: bytes) -> TransportKey:
    """Parse and check a private key held in this module's encoding."""
    _check(algorithm)
    if not isinstance(encoded, (bytes, bytearray)):
        raise InvalidInput("private_key", "bytes")
    if algorithm is Algorithm.SM2:
        if len(encoded) != 32:
            raise InvalidInput("private_key", "32 bytes for SM2")
        return TransportKey(algorithm, None, sm2.private_key_from_d(int.from_bytes(encoded, "big")))
    if algorithm is Algorithm.ECC_P521:
        if len(encoded) != ecdh.SCALAR_BYTES:
            raise InvalidInput("private_key", f"{ecdh.SCALAR_BYTES} bytes for P-521")
        try:
            ec_key = ec.derive_private_key(int.from_bytes(encoded, "big"), ec.SECP521R1())
        except ValueError:
            raise InvalidInput("private_key", "a P-521 scalar") from None
        return TransportKey(algorithm, None, None, ec_key)
    try:
        key = serialization.load_der_private_key(bytes(encoded), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise InvalidInput("private_key", "PKCS#8 DER") from None
    if (
        not isinstance(key, rsa.RSAPrivateKey)
        or key.key_size != _RSA_BITS[algorithm]
        or key.public_key().public_numbers().e != 65537
    ):
        raise InvalidInput("private_key", f"an RSA key of {_RSA_BITS[algorithm]} bits, e = 65537")
    return TransportKey(algorithm, key, None)


def encrypt(algorithm: Algorithm, public_der: bytes, data: bytes | bytearray) -> bytes:
    """Wrap ``data`` under a public key (what a terminal or a ceremony client does)."""
    _check(algorithm)
    if not isinstance(data, (bytes, bytearray)) or not 1 <= len(data) <= 64:
        raise InvalidInput("data", "1 to 64 bytes")
    if algorithm is Algorithm.SM2:
        return sm2.encrypt(sm2.public_key_from_der(public_der), bytes(data))
    if algorithm is Algorithm.ECC_P521:
        try:
            recipient = ecdh.load_public_key(public_der)
        except InvalidInput:
            raise InvalidInput("public_key", "a SubjectPublicKeyInfo of an EC public key on P-521") from None
        return ecies.encrypt(recipient, bytes(public_der), bytes(data))
    try:
        key = serialization.load_der_public_key(bytes(public_der))
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise InvalidInput("public_key", "SubjectPublicKeyInfo DER") from None
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size != _RSA_BITS[algorithm]:
        raise InvalidInput("public_key", f"an RSA key of {_RSA_BITS[algorithm]} bits")
    return key.encrypt(bytes(data), _OAEP)
