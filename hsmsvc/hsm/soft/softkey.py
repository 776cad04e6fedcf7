"""A verified key in the soft backend's memory: a block cipher with its contexts, a loaded key pair,
or an HMAC-only key (HMAC_SM3_256), which has MACs and no cipher.

Which loader a key pair's private half goes through is decided by the key type
and mode of use bound in its LMK key block, never by the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from hsmsvc.crypto import cmac, ecdh, fields, keytransport, mac, signature, sm2coop, sm2ka
from hsmsvc.crypto._cipher import BlockCipher
from hsmsvc.errors import KeyUsageViolation
from hsmsvc.hsm.model import KeySpec
from hsmsvc.types import Algorithm, CipherMode, HashAlgorithm, KeyType, MacAlgorithm, ModeOfUse, Padding

__all__ = ["KeyPair", "SoftKey", "load_pair"]

_NOT_CIPHER: Final = "not a block cipher key"
KeyPair = (keytransport.TransportKey | ecdh.AgreementKey | sm2ka.AgreementKey | signature.SigningKey
           | signature.VerifyingKey | sm2coop.ServerShare)


def load_pair(spec: KeySpec, private: bytes) -> KeyPair:
    """A key pair's private half, in the encoding its crypto module holds, loaded and checked.

    A KAK agrees (ECDH or SM2 key exchange) and never decrypts; a KTK or CTK (a P-521 CTK
    included) decrypts and never agrees; a SIG signs (mode V: holds only a public key); a
    CSK is a two-party share: the key type bound in the LMK key block picks which.
    """
    if spec.key_type is KeyType.SIG:
        if spec.mode_of_use is ModeOfUse.MAC_VERIFY_ONLY:
            return signature.load_public_key(private, spec.algorithm)
        return signature.load_private_key(spec.algorithm, private)
    if spec.key_type is KeyType.CSK:
        return sm2coop.load_share(private)
    if spec.key_type is KeyType.KAK and spec.algorithm is Algorithm.SM2:
        return sm2ka.load_private_key(private)
    if spec.key_type is KeyType.KAK:
        return ecdh.load_private_key(private)
    return keytransport.load_private_key(spec.algorithm, private)


class SoftKey:
    """A verified key in memory, with cached ECB and MAC contexts (not thread-safe: used under the lock).

    A KTK holds its loaded private key instead; policy keeps it from every
    block-cipher command.
    """

    __slots__ = ("_ecb", "_field_key", "_key", "_macs", "_pair", "algorithm", "kcv", "spec")

    def __init__(self, spec: KeySpec, key: bytes, check_value: bytes) -> None:
        self.spec = spec
        self.algorithm = spec.algorithm
        self.kcv = check_value
        self._key = key
        # MACs with their OpenSSL state, made at the key's first MAC of each algorithm.
        self._macs: dict[MacAlgorithm, Callable[[Padding, bytes], bytes]] = {}
        self._field_key: fields.FieldKey | None = None
        self._pair: KeyPair | None = load_pair(spec, key) if spec.algorithm.is_asymmetric else None
        self._ecb: BlockCipher | None = BlockCipher(spec.algorithm, key) if spec.algorithm.is_block_cipher else None

    def __repr__(self) -> str:
        return f"SoftKey({self.spec.key_id} v{self.spec.version})"

    def encrypt(self, data: bytes) -> bytes:
        if self._ecb is None:
            raise KeyUsageViolation("key", _NOT_CIPHER)
        return self._ecb.encrypt(data)

    def decrypt(self, data: bytes) -> bytes:
        if self._ecb is None:
            raise KeyUsageViolation("key", _NOT_CIPHER)
        return self._ecb.decrypt(data)

    def pair(self) -> KeyPair:
        if self._pair is None:
            raise KeyUsageViolation("key", "not a key pair")
        return self._pair

    def transport(self) -> keytransport.TransportKey:
        pair = self.pair()
        if not isinstance(pair, keytransport.TransportKey):
            raise KeyUsageViolation("key", "not a key transport key pair")
        return pair

    def agreement(self) -> ecdh.AgreementKey:
        pair = self.pair()
        if not isinstance(pair, ecdh.AgreementKey):
            raise KeyUsageViolation("key", "not an ECDH key agreement key pair")
        return pair

    def sm2_agreement(self) -> sm2ka.AgreementKey:
        pair = self.pair()
        if not isinstance(pair, sm2ka.AgreementKey):
            raise KeyUsageViolation("key", "not an SM2 key agreement key pair")
        return pair

    def signer(self) -> signature.SigningKey:
        pair = self.pair()
        if not isinstance(pair, signature.SigningKey):
            raise KeyUsageViolation("key", "not a signature key pair")
        return pair

    def verifier(self) -> signature.VerifyingKey:
        pair = self.pair()
        if isinstance(pair, signature.SigningKey):
            return pair.verifier()
        if not isinstance(pair, signature.VerifyingKey):
            raise KeyUsageViolation("key", "not a signature key")
        return pair

    def share(self) -> sm2coop.ServerShare:
        pair = self.pair()
        if not isinstance(pair, sm2coop.ServerShare):
            raise KeyUsageViolation("key", "not a two-party key share")
        return pair

    def field_encrypt(self, mode: CipherMode, iv: bytes, data: bytes, aad: bytes) -> bytes:
        return self._fields().encrypt(mode, iv, data, aad)

    def field_decrypt(self, mode: CipherMode, iv: bytes, data: bytes, aad: bytes) -> bytes:
        return self._fields().decrypt(mode, iv, data, aad)

    def _fields(self) -> fields.FieldKey:
        if self._field_key is None:
            self._field_key = fields.FieldKey(self.algorithm, self._key)
        return self._field_key

    def mac(self, algorithm: MacAlgorithm, padding: Padding, data: bytes) -> bytes:
        generate = self._macs.get(algorithm)
        if generate is None:
            generate = self._macs[algorithm] = self._mac_for(algorithm)
        return generate(padding, data)

    def _mac_for(self, algorithm: MacAlgorithm) -> Callable[[Padding, bytes], bytes]:
        """``algorithm`` under this key, its OpenSSL state made once (the key's first MAC)."""
        if algorithm is MacAlgorithm.ISO9797_ALG1 or algorithm is MacAlgorithm.ISO9797_ALG3:
            cbc = mac.CbcMac(self.algorithm, self._key, retail=algorithm is MacAlgorithm.ISO9797_ALG3)
            return lambda padding, data: cbc.generate(data, padding)
        if algorithm is MacAlgorithm.CMAC:
            c = cmac.Cmac(self.algorithm, self._key)
            return lambda padding, data: c.generate(data)
        if algorithm is MacAlgorithm.HMAC_SHA256 or algorithm is MacAlgorithm.HMAC_SM3:
            h = mac.Hmac(HashAlgorithm.SHA256 if algorithm is MacAlgorithm.HMAC_SHA256 else HashAlgorithm.SM3,
                         self._key)
            return lambda padding, data: h.generate(data)
        # Closed over the key, not self: the key object in its own _macs would be a reference cycle.
        alg, key = self.algorithm, self._key
        return lambda padding, data: mac.generate_unionpay_pos_mac(alg, key, data)

    def raw(self) -> bytes:
        """Clear key bytes, for wrapping under a KEK inside this backend only."""
        return self._key


