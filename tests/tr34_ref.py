"""An independent TR-34 one-pass key token (ASC X9 TR 34-2019), built and opened with pyca and asn1crypto only.

Imports nothing from hsmsvc (tests/test_test_imports.py). RFC 5652 clause 5 (SignedData, version 3 as
the eContentType is id-envelopedData; signature over the signed attributes' DER as a SET), clause 6
(EnvelopedData, KeyTransRecipientInfo), RFC 8017 clause 7.1 (RSAES-OAEP, SHA-256, MGF1-SHA-256).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os

from asn1crypto import algos, cms, core
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding as sympad
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


class _Values(core.SetOf):
    _child_spec = core.OctetString


class _Attr(core.Sequence):
    _fields = [("t", core.ObjectIdentifier), ("v", _Values)]


class KeyBlock(core.Sequence):
    """TR 34-2019 KeyBlock: version, idKDH, clearKey, attributeHeader (id-data, the 16-byte TR-31 header)."""

    _fields = [("version", core.Integer), ("id_kdh", cms.IssuerAndSerialNumber), ("key", core.OctetString),
               ("header", _Attr)]


def certificate(cn: str, public: rsa.RSAPublicKey, issuer: str, issuer_key: rsa.RSAPrivateKey,
                ca: bool = False) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(public).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(issuer_key, hashes.SHA256()))


def _ias(cert: x509.Certificate) -> cms.IssuerAndSerialNumber:
    c = ax509.Certificate.load(cert.public_bytes(Encoding.DER))
    return cms.IssuerAndSerialNumber({"issuer": c.issuer, "serial_number": c.serial_number})


def build(*, kdh_key: rsa.RSAPrivateKey, kdh_cert: x509.Certificate, krd_public: rsa.RSAPublicKey,
          header: bytes, key: bytes) -> bytes:
    """A token as a KDH would send it (AES-128-CBC content key; OAEP to the KRD)."""
    block = KeyBlock({"version": 1, "id_kdh": _ias(kdh_cert), "key": key,
                      "header": {"t": "1.2.840.113549.1.7.1", "v": [header]}}).dump()
    cek, iv = os.urandom(16), os.urandom(16)
    p = sympad.PKCS7(128).padder()
    e = Cipher(algorithms.AES(cek), modes.CBC(iv)).encryptor()
    body = e.update(p.update(block) + p.finalize()) + e.finalize()
    env = cms.EnvelopedData({
        "version": "v0",
        "recipient_infos": [cms.RecipientInfo(name="ktri", value=cms.KeyTransRecipientInfo({
            "version": "v0",
            "rid": cms.RecipientIdentifier(name="subject_key_identifier", value=b"\x01" * 20),
            "key_encryption_algorithm": {"algorithm": "rsaes_oaep", "parameters": algos.RSAESOAEPParams({
                "hash_algorithm": {"algorithm": "sha256"},
                "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": "sha256"}}})},
            "encrypted_key": krd_public.encrypt(cek, OAEP)}))],
        "encrypted_content_info": {"content_type": "data",
                                   "content_encryption_algorithm": {"algorithm": "aes128_cbc", "parameters": iv},
                                   "encrypted_content": body},
    }).dump()
    attrs = cms.CMSAttributes([
        {"type": "content_type", "values": ["enveloped_data"]},
        {"type": "signing_time", "values": [cms.Time(name="utc_time", value=dt.datetime.now(dt.timezone.utc))]},
        {"type": "message_digest", "values": [hashlib.sha256(env).digest()]},
    ])
    signer = cms.SignerInfo({
        "version": "v1", "sid": cms.SignerIdentifier(name="issuer_and_serial_number", value=_ias(kdh_cert)),
        "digest_algorithm": {"algorithm": "sha256"}, "signed_attrs": attrs,
        "signature_algorithm": {"algorithm": "rsassa_pkcs1v15"},
        "signature": kdh_key.sign(attrs.dump(), padding.PKCS1v15(), hashes.SHA256()),
    })
    signed = cms.SignedData({
        "version": "v3", "digest_algorithms": [{"algorithm": "sha256"}],
        "encap_content_info": {"content_type": "enveloped_data", "content": core.ParsableOctetString(env)},
        "signer_infos": [signer],
    })
    return cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump()


def open_token(*, token: bytes, kdh_public: rsa.RSAPublicKey, krd_key: rsa.RSAPrivateKey) -> tuple[bytes, bytes]:
    """(header, key) of a token, once its signature verifies (raises otherwise)."""
    signed = cms.ContentInfo.load(token)["content"]
    env = signed["encap_content_info"]["content"].contents
    si = signed["signer_infos"][0]
    attrs = {a["type"].native: a["values"][0].native for a in si["signed_attrs"]}
    assert attrs["message_digest"] == hashlib.sha256(env).digest()
    assert attrs["content_type"] == "enveloped_data"
    kdh_public.verify(si["signature"].native, b"\x31" + si["signed_attrs"].dump()[1:], padding.PKCS1v15(),
                      hashes.SHA256())
    e = cms.EnvelopedData.load(env)
    ktri = e["recipient_infos"][0].chosen
    cek = krd_key.decrypt(ktri["encrypted_key"].native, OAEP)
    eci = e["encrypted_content_info"]
    iv = eci["content_encryption_algorithm"]["parameters"].native
    d = Cipher(algorithms.AES(cek), modes.CBC(iv)).decryptor()
    u = sympad.PKCS7(128).unpadder()
    block = KeyBlock.load(u.update(d.update(eci["encrypted_content"].native) + d.finalize()) + u.finalize())
    return block["header"]["v"][0].native, block["key"].native
