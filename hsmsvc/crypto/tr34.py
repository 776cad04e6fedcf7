"""TR-34 one-pass key tokens (ASC X9 TR 34-2019, KDH to KRD), over CMS (RFC 5652).

A token is a CMS ``SignedData`` (signed by the KDH's RSA key, PKCS #1 v1.5 with
SHA-256; signed attributes contentType, signingTime and messageDigest) whose
encapsulated content is an ``EnvelopedData``: one ``KeyTransRecipientInfo``
with an ephemeral content key wrapped to the KRD by RSAES-OAEP (SHA-256,
MGF1-SHA-256, empty label), and the TR-34 key block enciphered under that key
in CBC mode with PKCS #7 padding (AES-128-CBC on export; AES-CBC or
des-ede3-cbc accepted on import). The key block is TR 34-2019's::

    KeyBlock ::= SEQUENCE {
        version          INTEGER (1),
        idKDH            IssuerAndSerialNumber,   -- the KDH's certificate
        clearKey         OCTET STRING,
        attributeHeader  SEQUENCE { attrType OBJECT IDENTIFIER (id-data),
                                    attrValues SET OF OCTET STRING }  -- 16-byte TR-31 header
    }

Simplifications (docs/architecture.md, "TR-34"): one-pass only (no KRD random
nonce, no rebind/unbind tokens), no CRL in the token, one recipient, the KDH
certificate checked against one CA certificate (no longer chain), and the
header carries no optional blocks. On import the signature is verified before
any byte is unwrapped, and every fault from the token's parsing on (signature,
certificate, OAEP, padding, structure) is the one :class:`InvalidKeyBlock`.

asn1crypto gives the CMS structures; pyca/cryptography has no EnvelopedData
with RSAES-OAEP recipients nor a SignedData whose signer key lives in a backend.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Final

from asn1crypto import algos, cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.serialization import Encoding

from hsmsvc.crypto import compare
from hsmsvc.crypto.tr31 import KeyBlockAlgorithm
from hsmsvc.errors import InvalidInput, InvalidKeyBlock
from hsmsvc.types import Exportability, KeyUsage, ModeOfUse

__all__ = ["KeyBlockHeader", "build_token", "load_certificate", "open_token"]

_OAEP: Final = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
_MAX_TOKEN: Final = 16384
_DER: Final = Encoding.DER
_ENVELOPED: Final = "enveloped_data"


_ID_DATA: Final = "1.2.840.113549.1.7.1"


class _OctetStrings(core.SetOf):  # type: ignore[misc]  # asn1crypto is untyped
    _child_spec = core.OctetString


class _HeaderAttribute(core.Sequence):  # type: ignore[misc]
    _fields = [("attr_type", core.ObjectIdentifier), ("attr_values", _OctetStrings)]


class _Tr34KeyBlock(core.Sequence):  # type: ignore[misc]
    _fields = [
        ("version", core.Integer),
        ("id_kdh", cms.IssuerAndSerialNumber),
        ("clear_key", core.OctetString),
        ("attribute_header", _HeaderAttribute),
    ]


@dataclass(frozen=True, kw_only=True)
class KeyBlockHeader:
    """The TR-31 header fields a TR-34 key block binds (TR 34-2019 clause 5.4.9; no optional blocks)."""

    usage: KeyUsage
    algorithm: KeyBlockAlgorithm
    mode_of_use: ModeOfUse
    key_version: str = "00"
    exportability: Exportability = Exportability.NON_EXPORTABLE

    def encode(self) -> bytes:
        # The version byte is "A": TR 34-2019's own examples; the block is not TR-31-protected.
        return (f"A0000{self.usage.value}{self.algorithm.value}{self.mode_of_use.value}"
                f"{self.key_version}{self.exportability.value}0000").encode("ascii")

    @staticmethod
    def decode(raw: bytes) -> KeyBlockHeader:
        if len(raw) != 16:
            raise InvalidKeyBlock()
        try:
            text = raw.decode("ascii")
            out = KeyBlockHeader(usage=KeyUsage(text[5:7]), algorithm=KeyBlockAlgorithm(text[7]),
                                 mode_of_use=ModeOfUse(text[8]), key_version=text[9:11],
                                 exportability=Exportability(text[11]))
        except ValueError:
            raise InvalidKeyBlock() from None
        if not text[9:11].isalnum() or text[12:14] != "00":
            raise InvalidKeyBlock()
        return out


def load_certificate(der: bytes, field: str) -> x509.Certificate:
    """An X.509 certificate (DER) with an RSA key of at least 2048 bits, or ``InvalidInput`` naming ``field``."""
    if not isinstance(der, (bytes, bytearray)) or not 1 <= len(der) <= 8192:
        raise InvalidInput(field, "an X.509 certificate, DER, at most 8192 bytes")
    try:
        cert = x509.load_der_x509_certificate(bytes(der))
        key = cert.public_key()
    except ValueError:
        raise InvalidInput(field, "an X.509 certificate, DER") from None
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < 2048:
        raise InvalidInput(field, "an RSA key of at least 2048 bits (TR 34-2019)")
    return cert


def _issuer_serial(cert: x509.Certificate) -> cms.IssuerAndSerialNumber:
    c = asn1_x509.Certificate.load(cert.public_bytes(_DER))
    return cms.IssuerAndSerialNumber({"issuer": c.issuer, "serial_number": c.serial_number})


def _same_id(a: cms.IssuerAndSerialNumber, cert: x509.Certificate) -> bool:
    return compare.bytes_eq(a.dump(force=True), _issuer_serial(cert).dump(force=True))


def check_issued(cert: x509.Certificate, ca: x509.Certificate, now: datetime) -> None:
    """``cert`` signed by ``ca`` and both within their validity; else the generic error."""
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise InvalidKeyBlock() from None
    for c in (cert, ca):
        if not c.not_valid_before_utc <= now <= c.not_valid_after_utc:
            raise InvalidKeyBlock()


def build_token(*, sign: Callable[[bytes], bytes], kdh_cert: x509.Certificate, krd_cert: x509.Certificate,
                header: KeyBlockHeader, key: bytes, now: datetime | None = None) -> bytes:
    """A one-pass key token carrying ``key`` from the KDH (``sign``: RSA PKCS #1 v1.5 SHA-256) to the KRD."""
    krd_key = krd_cert.public_key()
    if not isinstance(krd_key, rsa.RSAPublicKey) or krd_key.key_size < 2048:
        raise InvalidInput("krd_certificate", "an RSA key of at least 2048 bits (TR 34-2019)")
    block = _Tr34KeyBlock({
        "version": 1, "id_kdh": _issuer_serial(kdh_cert), "clear_key": key,
        "attribute_header": {"attr_type": _ID_DATA, "attr_values": [header.encode()]},
    }).dump()
    cek, iv = secrets.token_bytes(16), secrets.token_bytes(16)
    padder = sym_padding.PKCS7(128).padder()
    enc = Cipher(algorithms.AES(cek), modes.CBC(iv)).encryptor()
    body = enc.update(padder.update(block) + padder.finalize()) + enc.finalize()
    oaep = algos.RSAESOAEPParams({
        "hash_algorithm": {"algorithm": "sha256"},
        "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": "sha256"}},
    })
    enveloped = cms.EnvelopedData({
        "version": "v0",
        "recipient_infos": [cms.RecipientInfo(name="ktri", value=cms.KeyTransRecipientInfo({
            "version": "v0",
            "rid": cms.RecipientIdentifier(name="issuer_and_serial_number", value=_issuer_serial(krd_cert)),
            "key_encryption_algorithm": {"algorithm": "rsaes_oaep", "parameters": oaep},
            "encrypted_key": krd_key.encrypt(cek, _OAEP),
        }))],
        "encrypted_content_info": {
            "content_type": "data",
            "content_encryption_algorithm": {"algorithm": "aes128_cbc", "parameters": iv},
            "encrypted_content": body,
        },
    }).dump()
    attrs = cms.CMSAttributes([
        {"type": "content_type", "values": [_ENVELOPED]},
        {"type": "signing_time", "values": [cms.Time(name="utc_time", value=now or datetime.now(timezone.utc))]},
        {"type": "message_digest", "values": [hashlib.sha256(enveloped).digest()]},
    ])
    kdh = asn1_x509.Certificate.load(kdh_cert.public_bytes(_DER))
    signer = cms.SignerInfo({
        "version": "v1",
        "sid": cms.SignerIdentifier(name="issuer_and_serial_number", value=_issuer_serial(kdh_cert)),
        "digest_algorithm": {"algorithm": "sha256"},
        "signed_attrs": attrs,
        # RFC 5652 clause 5.4: the signature is over the attributes' DER as a SET, not as [0].
        "signature_algorithm": {"algorithm": "rsassa_pkcs1v15"},
        "signature": sign(attrs.dump()),
    })
    signed = cms.SignedData({
        "version": "v3",  # RFC 5652 clause 5.1: eContentType is not id-data
        "digest_algorithms": [{"algorithm": "sha256"}],
        "encap_content_info": {"content_type": _ENVELOPED, "content": core.ParsableOctetString(enveloped)},
        "certificates": [cms.CertificateChoices(name="certificate", value=kdh)],
        "signer_infos": [signer],
    })
    return bytes(cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump())


def _verify_signed(token: bytes, kdh_cert: x509.Certificate) -> bytes:
    """The EnvelopedData DER, once the KDH's signature over it verifies (RFC 5652 clause 5.6)."""
    info = cms.ContentInfo.load(token, strict=True)
    if info["content_type"].native != "signed_data":
        raise InvalidKeyBlock()
    signed = info["content"]
    if signed["version"].native != "v3":
        raise InvalidKeyBlock()
    encap = signed["encap_content_info"]
    if encap["content_type"].native != _ENVELOPED or len(signed["signer_infos"]) != 1:
        raise InvalidKeyBlock()
    content = encap["content"].contents
    si = signed["signer_infos"][0]
    if si["sid"].name != "issuer_and_serial_number" or not _same_id(si["sid"].chosen, kdh_cert):
        raise InvalidKeyBlock()
    if si["digest_algorithm"]["algorithm"].native != "sha256":
        raise InvalidKeyBlock()
    if si["signature_algorithm"]["algorithm"].native not in ("rsassa_pkcs1v15", "sha256_rsa"):
        raise InvalidKeyBlock()
    attrs = si["signed_attrs"]
    seen: dict[str, Any] = {}
    for a in attrs:
        name = a["type"].native
        if name in seen or len(a["values"]) != 1:
            raise InvalidKeyBlock()
        seen[name] = a["values"][0]
    if seen.get("content_type") is None or seen["content_type"].native != _ENVELOPED:
        raise InvalidKeyBlock()
    digest = seen.get("message_digest")
    if digest is None or not compare.bytes_eq(digest.native, hashlib.sha256(content).digest()):
        raise InvalidKeyBlock()
    key = kdh_cert.public_key()
    assert isinstance(key, rsa.RSAPublicKey)  # load_certificate checked it
    # The [0] IMPLICIT tag becomes the SET tag for the signed bytes (RFC 5652 clause 5.4).
    signed_bytes = b"\x31" + attrs.dump(force=False)[1:]
    key.verify(si["signature"].native, signed_bytes, padding.PKCS1v15(), hashes.SHA256())
    return bytes(content)


def _decipher(eci: cms.EncryptedContentInfo, cek: bytes) -> bytes:
    alg = eci["content_encryption_algorithm"]
    name, iv = alg["algorithm"].native, alg["parameters"].native
    sizes = {"aes128_cbc": 16, "aes192_cbc": 24, "aes256_cbc": 32, "tripledes_3key": 24}
    if name not in sizes or len(cek) != sizes[name] or not isinstance(iv, bytes):
        raise InvalidKeyBlock()
    cipher: Any = algorithms.AES(cek) if name != "tripledes_3key" else _tdes(cek)
    if len(iv) != cipher.block_size // 8:
        raise InvalidKeyBlock()
    data = eci["encrypted_content"].native
    if not isinstance(data, bytes) or not data or len(data) % len(iv):
        raise InvalidKeyBlock()
    dec = Cipher(cipher, modes.CBC(iv)).decryptor()
    unpadder = sym_padding.PKCS7(cipher.block_size).unpadder()
    return unpadder.update(dec.update(data) + dec.finalize()) + unpadder.finalize()


def _tdes(key: bytes) -> Any:
    # des-ede3-cbc (RFC 3370 clause 5.1): TR 34-2019 allows a TDEA content key.
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES

    return TripleDES(key)


def open_token(*, token: bytes, kdh_cert: x509.Certificate, ca_cert: x509.Certificate,
               decrypt: Callable[[bytes], bytes], now: datetime | None = None) -> tuple[KeyBlockHeader, bytes]:
    """The header and clear key of a one-pass token; ``decrypt`` is the KRD's RSAES-OAEP unwrap.

    The KDH certificate chains to ``ca_cert`` and the signature verifies before
    ``decrypt`` is called; every fault is the one :class:`InvalidKeyBlock`.
    """
    if not isinstance(token, (bytes, bytearray)) or not 1 <= len(token) <= _MAX_TOKEN:
        raise InvalidInput("token", f"1 to {_MAX_TOKEN} bytes of DER")
    check_issued(kdh_cert, ca_cert, now or datetime.now(timezone.utc))
    try:
        content = _verify_signed(bytes(token), kdh_cert)
        env = cms.EnvelopedData.load(content, strict=True)
        infos = env["recipient_infos"]
        if len(infos) != 1 or infos[0].name != "ktri":
            raise InvalidKeyBlock()
        ktri = infos[0].chosen
        kea = ktri["key_encryption_algorithm"]
        if kea["algorithm"].native != "rsaes_oaep":
            raise InvalidKeyBlock()
        p = kea["parameters"]
        if (p["hash_algorithm"]["algorithm"].native != "sha256"
                or p["mask_gen_algorithm"]["parameters"]["algorithm"].native != "sha256"
                or p["p_source_algorithm"]["parameters"].native not in (b"", None)):
            raise InvalidKeyBlock()
        try:
            cek = decrypt(ktri["encrypted_key"].native)
        except InvalidInput:
            raise InvalidKeyBlock() from None
        block = _Tr34KeyBlock.load(_decipher(env["encrypted_content_info"], cek), strict=True)
        if block["version"].native != 1 or not _same_id(block["id_kdh"], kdh_cert):
            raise InvalidKeyBlock()
        attr = block["attribute_header"]
        if attr["attr_type"].dotted != _ID_DATA or len(attr["attr_values"]) != 1:
            raise InvalidKeyBlock()
        header = KeyBlockHeader.decode(attr["attr_values"][0].native)
        return header, bytes(block["clear_key"].native)
    except InvalidKeyBlock:
        raise
    # asn1crypto raises ValueError, TypeError, KeyError or AttributeError on malformed DER; pyca
    # InvalidSignature or ValueError (padding): all one generic refusal, so the token is no oracle.
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, InvalidSignature):
        raise InvalidKeyBlock() from None

