"""PKCS#10 certification requests (RFC 2986) for a SIG key pair, signed by the caller.

The request is DER built here: the server depends on no ASN.1 library (asn1crypto serves TR-34's
CMS only), and a CertificationRequest is three fixed layers around pyca's encoding of the subject.
The signature algorithm is the key's one scheme (:mod:`hsmsvc.crypto.signature`):

* RSA: RSASSA-PSS with explicit RFC 4055 clause 3.1 parameters, SHA-256, MGF1-SHA-256, salt 32;
* ECC_P256 / ECC_P384: ecdsa-with-SHA256 / ecdsa-with-SHA384, parameters absent (RFC 5758 clause 3.2);
* SM2: SM2-with-SM3 (1.2.156.10197.1.501, GB/T 35276-2017), parameters absent, as OpenSSL 3.0 emits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from cryptography import x509
from cryptography.x509.oid import NameOID

from hsmsvc.crypto import signature
from hsmsvc.errors import InvalidInput, VerificationFailed
from hsmsvc.types import Algorithm

__all__ = ["MAX_SUBJECT", "build_csr"]

MAX_SUBJECT: Final = 1024


def _der(tag: int, body: bytes) -> bytes:
    """One DER TLV (X.690 clause 8.1), definite length in the shortest form (clause 10.1)."""
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    width = (n.bit_length() + 7) // 8
    return bytes([tag, 0x80 | width]) + n.to_bytes(width, "big") + body


def _seq(body: bytes) -> bytes:
    return _der(0x30, body)


def _int(v: int) -> bytes:
    """A non-negative INTEGER in the fewest octets, a leading 0 where the top bit is set (X.690 8.3)."""
    return _der(0x02, v.to_bytes(v.bit_length() // 8 + 1, "big"))


def _oid(dotted: str) -> bytes:
    """OBJECT IDENTIFIER (X.690 clause 8.19): 40 * arc1 + arc2, then each arc base 128."""
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return _der(0x06, bytes(out))


def _explicit(n: int, body: bytes) -> bytes:
    return _der(0xA0 | n, body)


# RFC 4055 clause 2.1: the hash and MGF AlgorithmIdentifiers inside RSASSA-PSS-params carry NULL
# parameters (sha256Identifier); OpenSSL emits the same. The module's tags are EXPLICIT.
_SHA256: Final = _seq(_oid("2.16.840.1.101.3.4.2.1") + b"\x05\x00")
_RSASSA_PSS: Final = _seq(_oid("1.2.840.113549.1.1.10") + _seq(
    _explicit(0, _SHA256)
    + _explicit(1, _seq(_oid("1.2.840.113549.1.1.8") + _SHA256))  # id-mgf1 with SHA-256
    + _explicit(2, _int(32))  # trailerField is the default (1), so absent
))
_SIGNATURE_ALGORITHM: Final = {
    Algorithm.RSA_2048: _RSASSA_PSS,
    Algorithm.RSA_3072: _RSASSA_PSS,
    Algorithm.ECC_P256: _seq(_oid("1.2.840.10045.4.3.2")),
    Algorithm.ECC_P384: _seq(_oid("1.2.840.10045.4.3.3")),
    Algorithm.SM2: _seq(_oid("1.2.156.10197.1.501")),
}


# The attributes a request's subject may name (RFC 5280 clause 4.1.2.4 and appendix A; RFC 4519):
# a CA decides the certificate's name, so a request needs no more, and an OID chosen by the caller
# would put bytes of the caller's choosing under the key's signature.
_ATTRIBUTES: Final = frozenset({
    NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME, NameOID.COUNTRY_NAME,
    NameOID.STATE_OR_PROVINCE_NAME, NameOID.LOCALITY_NAME, NameOID.SERIAL_NUMBER, NameOID.DOMAIN_COMPONENT,
    NameOID.ORGANIZATION_IDENTIFIER,
})


def _subject(subject: str) -> bytes:
    if not isinstance(subject, str) or not 1 <= len(subject) <= MAX_SUBJECT:
        raise InvalidInput("subject", f"an RFC 4514 distinguished name of 1 to {MAX_SUBJECT} characters")
    try:
        name = x509.Name.from_rfc4514_string(subject)
        if not len(name):
            raise ValueError
    except ValueError:
        raise InvalidInput("subject", "an RFC 4514 distinguished name with at least one attribute") from None
    for attribute in name:
        # A '#' value is raw DER (RFC 4514 clause 2.4): pyca gives it as bytes. Control characters
        # (an escaped NUL) would make a CN that reads as one name and compares as another.
        value = attribute.value
        if attribute.oid not in _ATTRIBUTES:
            raise InvalidInput("subject", "attributes CN, O, OU, C, ST, L, serialNumber, DC, organizationIdentifier")
        if not isinstance(value, str) or not value or not value.isprintable():
            raise InvalidInput("subject", "attribute values are printable text (no #hex DER, no controls)")
    return name.public_bytes()


def build_csr(*, subject: str, public_der: bytes, algorithm: Algorithm, sign: Callable[[bytes], bytes],
              user_id: bytes | None = None) -> bytes:
    """DER CertificationRequest (RFC 2986 clause 4) for the key pair whose public half is ``public_der``.

    ``sign`` signs the CertificationRequestInfo DER it is given, as a message, with the key's scheme and
    returns the DER signature; for SM2 with ``user_id`` (default 1234567812345678), which is checked here
    with the signature before the request is returned.
    """
    if algorithm not in _SIGNATURE_ALGORITHM:
        raise InvalidInput("algorithm", "RSA_2048, RSA_3072, ECC_P256, ECC_P384 or SM2")
    if user_id is not None and algorithm is not Algorithm.SM2:
        raise InvalidInput("user_id", "only for SM2")
    name = _subject(subject)
    verifier = signature.load_public_key(public_der, algorithm)
    # version 0, subject, SubjectPublicKeyInfo, attributes [0] IMPLICIT SET OF (empty).
    info = _seq(_int(0) + name + verifier.public_der + b"\xa0\x00")
    sig = sign(info)
    if not isinstance(sig, (bytes, bytearray)):
        raise InvalidInput("signature", "bytes")
    # A signer that used another key, scheme or ID would give a request every CA refuses: say so here.
    try:
        verifier.verify(message=info, signature=bytes(sig), user_id=user_id)
    except VerificationFailed:
        raise VerificationFailed("signature", "the request's signature does not verify under its public key") from None
    return _seq(info + _SIGNATURE_ALGORITHM[algorithm] + _der(0x03, b"\x00" + bytes(sig)))
