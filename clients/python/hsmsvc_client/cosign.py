"""The client half of two-party SM2 (collaborative signing, 协同签名) against hsmsvc's CoSigningService.

The client holds d1, the server d2; the SM2 private key d = (d1 d2)^-1 - 1
exists nowhere (docs/architecture.md, "Two-party SM2"). ``pip install
'hsmsvc-client[cosign]'`` brings the one extra dependency (``cryptography``, for
SM3, scrypt and AES-GCM).

>>> share = ClientShare.generate()
>>> key = enroll(client, share, purpose=PURPOSE_SIGN, key_id="term-0001")   # doctest: +SKIP
>>> data = key.to_bytes(passphrase=b"...")                                   # doctest: +SKIP
>>> signature = key.sign(client, b"order 1234")                              # doctest: +SKIP

Every signature is checked against the joint public key before it is returned,
so a wrong partial signature from the server (or from anyone between) is an
error, never a bad signature. A fresh k1 is drawn for every attempt: the same
k1 in two signatures would let whoever sees both and the server's values solve
for d1, so CoSign is retried (on UNAVAILABLE, at the next address, as the
client retries any idempotent call) only as a new request.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from hsmsvc_client import sm2curve as _sm2
from hsmsvc_client.v1 import signature_service_pb2 as sig_pb
from hsmsvc_client.v1 import types_pb2 as pb

if TYPE_CHECKING:
    from hsmsvc_client.client import Client

__all__ = ["CoSigningError", "CoSigningKey", "ClientShare", "PURPOSE_DECRYPT", "PURPOSE_SIGN", "enroll",
           "signature_to_der"]

PURPOSE_SIGN: Final = sig_pb.CO_SIGNING_PURPOSE_SIGN
PURPOSE_DECRYPT: Final = sig_pb.CO_SIGNING_PURPOSE_DECRYPT
_ATTEMPTS: Final = 3
# SubjectPublicKeyInfo of an sm2p256v1 point: id-ecPublicKey with the SM2 curve OID 1.2.156.10197.1.301
# (GB/T 35276-2017); the joint key's DER must be exactly this and the point.
_SPKI_PREFIX: Final = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d034200")
# AlgorithmIdentifier SM2-with-SM3, 1.2.156.10197.1.501, parameters absent (GB/T 35276-2017; as OpenSSL).
_SM2_WITH_SM3: Final = bytes.fromhex("300a06082a811ccf55018375")
_FORMAT: Final = "hsmsvc-cosign-share/2"
# scrypt at 2^15: about 0.1 s and 32 MiB per unlock (RFC 7914 clause 2's interactive figure).
_SCRYPT_N: Final = 1 << 15


class CoSigningError(Exception):
    """The server's answer does not complete a valid signature or decryption, or a share file is wrong."""


@dataclass(frozen=True)
class ClientShare:
    """The client's d1 and P1 = d1^-1 G (what enrolment sends)."""

    d1: int = field(repr=False)

    @classmethod
    def generate(cls) -> ClientShare:
        return cls(secrets.randbelow(_sm2.N - 1) + 1)

    @property
    def public_share(self) -> bytes:
        pt = _sm2.mul_base(pow(self.d1, -1, _sm2.N))
        assert pt is not None
        return _sm2.encode(pt)


@dataclass(frozen=True)
class CoSigningKey:
    """An enrolled two-party key: the client's share, the server's key id and the joint public key."""

    share: ClientShare = field(repr=False)
    key_id: str
    public_key: bytes
    """The joint public key, 65 bytes (04 || x || y)."""
    public_key_der: bytes
    """The same as SubjectPublicKeyInfo DER, as the server gave it: what a certificate certifies."""

    def sign_digest(self, client: Client, e: bytes) -> bytes:
        """r || s for e = SM3(Z_A || M), one CoSign round trip (more only if the server is unreachable)."""
        if len(e) != 32:
            raise ValueError("e is 32 bytes")
        public = _sm2.decode(self.public_key)
        ei = int.from_bytes(e, "big")
        for _ in range(_ATTEMPTS):
            k1 = 0

            def request() -> sig_pb.CoSignRequest:
                # A fresh k1 for every attempt, the client's retries included: never the same k1 twice.
                nonlocal k1
                k1 = secrets.randbelow(_sm2.N - 1) + 1
                q1 = _sm2.mul_base(k1)
                assert q1 is not None
                return sig_pb.CoSignRequest(key=pb.KeyRef(key_id=self.key_id), digest=e, client_point=_sm2.encode(q1))

            # The client's retry loop (next address at once, backoff, budget), each attempt a new request.
            answer = client._call("cosigning", "CoSign", request(), None, remake=request)
            r, s2, s3 = (int.from_bytes(v, "big") for v in (answer.r, answer.s2, answer.s3))
            d1 = self.share.d1
            s = (d1 * k1 * s2 + d1 * s3 - r) % _sm2.N
            if s == 0 or (r + s) % _sm2.N == 0:
                continue  # GB/T 32918.2 clause 6.1 A6: draw again
            if not _sm2.verify(public, ei, r, s):
                raise CoSigningError("the server's partial signature does not complete a valid signature")
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        raise CoSigningError("no signature: s = 0 three times")

    def sign(self, client: Client, message: bytes, user_id: bytes = _sm2.DEFAULT_ID) -> bytes:
        """r || s over ``message`` with Z_A from ``user_id`` and the joint public key (GB/T 32918.2)."""
        e = _sm2.sm3(_sm2.za(_sm2.decode(self.public_key), user_id) + message)
        return self.sign_digest(client, e)

    def certificate_request(self, client: Client, subject: str, user_id: bytes = _sm2.DEFAULT_ID) -> bytes:
        """A DER PKCS#10 request (RFC 2986) for the joint key, co-signed (SM2 with SM3, GB/T 35276):
        the terminal's request to its CA, with neither share leaving its holder. ``subject`` is
        RFC 4514 text, e.g. ``CN=terminal-0001,O=Example Futures,C=CN``."""
        from cryptography import x509

        name = x509.Name.from_rfc4514_string(subject).public_bytes()
        # version 0, subject, SubjectPublicKeyInfo, attributes [0] (none).
        info = _tlv(0x30, b"\x02\x01\x00" + name + self.public_key_der + b"\xa0\x00")
        signature = signature_to_der(self.sign(client, info, user_id))
        return _tlv(0x30, info + _SM2_WITH_SM3 + _tlv(0x03, b"\x00" + signature))

    def decrypt(self, client: Client, ciphertext: bytes) -> bytes:
        """Plaintext of C1 || C3 || C2 (GB/T 32918.4-2016) under the joint key; one error for any fault."""
        if len(ciphertext) < 65 + 32 + 1:
            raise CoSigningError("does not decrypt")
        try:
            c1 = _sm2.decode(ciphertext[:65])
        except ValueError:
            raise CoSigningError("does not decrypt") from None
        c3, c2 = ciphertext[65:97], ciphertext[97:]
        t1 = _sm2.mul(pow(self.share.d1, -1, _sm2.N), c1)
        assert t1 is not None
        answer = client.cosigning.CoDecrypt(sig_pb.CoDecryptRequest(
            key=pb.KeyRef(key_id=self.key_id), client_point=_sm2.encode(t1)))
        try:
            t2 = _sm2.decode(bytes(answer.server_point))
        except ValueError:
            raise CoSigningError("does not decrypt") from None
        shared = _sm2.add(t2, _sm2.neg(c1))
        if shared is None:
            raise CoSigningError("does not decrypt")
        xy = shared[0].to_bytes(32, "big") + shared[1].to_bytes(32, "big")
        t = _sm2.kdf(xy, len(c2))
        plain = bytes(a ^ b for a, b in zip(c2, t))
        if not any(t) or not secrets.compare_digest(_sm2.sm3(xy[:32] + plain + xy[32:]), c3):
            raise CoSigningError("does not decrypt")
        return plain

    def to_bytes(self, *, passphrase: bytes) -> bytes:
        """The share as JSON, d1 under AES-256-GCM with a key from scrypt(passphrase); for wherever
        the application keeps it (a file, a keystore, a database row). The key id and the public
        key are authenticated with d1, so neither can be swapped in the file."""
        salt, nonce = os.urandom(16), os.urandom(12)
        kek = Scrypt(salt=salt, length=32, n=_SCRYPT_N, r=8, p=1).derive(passphrase)
        sealed = AESGCM(kek).encrypt(nonce, self.share.d1.to_bytes(32, "big"),
                                     _aad(self.key_id, self.public_key_der))
        return json.dumps({"format": _FORMAT, "key_id": self.key_id, "public_key": self.public_key_der.hex(),
                           "scrypt_n": _SCRYPT_N, "salt": salt.hex(), "nonce": nonce.hex(), "d1": sealed.hex()},
                          indent=1).encode()

    @classmethod
    def from_bytes(cls, data: bytes, *, passphrase: bytes) -> CoSigningKey:
        try:
            doc = json.loads(data)
            if doc["format"] != _FORMAT or not 1 <= int(doc["scrypt_n"]) <= 1 << 24:
                raise ValueError
            key_id, der = str(doc["key_id"]), bytes.fromhex(doc["public_key"])
            kek = Scrypt(salt=bytes.fromhex(doc["salt"]), length=32, n=int(doc["scrypt_n"]), r=8, p=1
                         ).derive(passphrase)
            d1 = AESGCM(kek).decrypt(bytes.fromhex(doc["nonce"]), bytes.fromhex(doc["d1"]), _aad(key_id, der))
            point = der[len(_SPKI_PREFIX):]
            if der[:len(_SPKI_PREFIX)] != _SPKI_PREFIX:
                raise ValueError
            _sm2.decode(point)
            key = cls(ClientShare(int.from_bytes(d1, "big")), key_id, point, der)
        except Exception:
            raise CoSigningError("not a share file, or a wrong passphrase") from None
        return key


def _aad(key_id: str, public_der: bytes) -> bytes:
    """What the share file authenticates beside d1: its format, key id and public key, each
    length-prefixed so no byte can move from one to the next."""
    parts = (_FORMAT.encode(), key_id.encode(), public_der)
    return b"".join(len(x).to_bytes(4, "big") + x for x in parts)


def enroll(client: Client, share: ClientShare, *, purpose: sig_pb.CoSigningPurpose = PURPOSE_SIGN, key_id: str = "",
           alias: str = "", zone: str = "", max_uses: int = 0, lifetime_seconds: int = 0) -> CoSigningKey:
    """Key generation's one round: send P1, check the joint key the server answers (d1^-1 P2 - G)."""
    answer = client.cosigning.CreateCoSigningKey(sig_pb.CreateCoSigningKeyRequest(
        key_id=key_id, alias=alias, zone=zone, purpose=purpose, client_share=share.public_share,
        max_uses=max_uses, lifetime_seconds=lifetime_seconds))
    try:
        p2 = _sm2.decode(bytes(answer.server_share))
    except ValueError:
        raise CoSigningError("the server's share is not a point on sm2p256v1") from None
    joint = _sm2.add(_sm2.mul(pow(share.d1, -1, _sm2.N), p2), _sm2.neg(_sm2.G))
    der = bytes(answer.public_key)
    if joint is None or der != _SPKI_PREFIX + _sm2.encode(joint):
        raise CoSigningError("the server's joint public key does not follow from the two shares")
    return CoSigningKey(share, answer.key.key_id, _sm2.encode(joint), der)


def _tlv(tag: int, body: bytes) -> bytes:
    """One DER TLV, definite length in the shortest form (X.690 clauses 8.1.3, 10.1)."""
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    width = (n.bit_length() + 7) // 8
    return bytes([tag, 0x80 | width]) + n.to_bytes(width, "big") + body


def signature_to_der(signature: bytes) -> bytes:
    """r || s as the DER SM2Signature of GB/T 35276-2017 (SEQUENCE of two INTEGERs)."""
    def integer(v: bytes) -> bytes:
        v = v.lstrip(b"\x00") or b"\x00"
        return _tlv(0x02, b"\x00" + v if v[0] & 0x80 else v)
    return _tlv(0x30, integer(signature[:32]) + integer(signature[32:]))
