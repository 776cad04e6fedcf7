"""Key agreement: a zone's KEK derived at two sites from their KAKs (ECDH P-521, NIST SP 800-56C rev. 2).

Each site's KAK private half stays under its LMK; the officers exchange the
public halves out of band and compare fingerprints. Both sites then derive the
same key: Z by ECDH (SP 800-56A rev. 3 clause 5.7.1.2), the key by the one-step
KDF with SHA-512 over FixedInfo binding both public keys, the derived key's
type, algorithm and usage, its length and the agreed shared info (nonce and
context). Neither Z nor the key leaves the backend; the KCVs are compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from hsmsvc.crypto import compare, ecdh
from hsmsvc.errors import InvalidInput, KeyUsageViolation, VerificationFailed
from hsmsvc.hsm import policy
from hsmsvc.hsm.commands.base import STRENGTH, HsmCommand
from hsmsvc.hsm.model import Command, KeyCryptogram, KeySpec
from hsmsvc.hsm.policy import Operation

if TYPE_CHECKING:
    from hsmsvc.hsm.commands.core import CommandBackend

__all__ = ["AgreeKey", "algorithm_id", "check_template"]

_LABEL = b"hsmsvc/agree/v1"


def algorithm_id(spec: KeySpec) -> bytes:
    """FixedInfo's AlgorithmID: hsmsvc's label and what the key will be, so a ZMK agreed as a KBPK
    is a different key from one agreed as a K0 KEK or of another length."""
    return _LABEL + f"|{spec.key_type.value}|{spec.algorithm.value}|{spec.usage.value}".encode("ascii")


def check_template(spec: KeySpec) -> None:
    """A KAK derives an AES ZMK only (policy.AGREEABLE), never a key stronger than the agreement."""
    usages = policy.AGREEABLE.get(spec.key_type)
    if usages is None or spec.usage not in usages:
        raise InvalidInput("template.key_type", "key agreement derives a ZMK (K0 or K1)")
    if spec.algorithm not in policy.AGREEABLE_ALGORITHMS:
        raise InvalidInput("template.algorithm", "key agreement derives AES_128, AES_192 or AES_256")


def _check_bytes(value: object, field: str, low: int, high: int) -> bytes:
    if not isinstance(value, (bytes, bytearray)) or not low <= len(value) <= high:
        raise InvalidInput(field, f"{low} to {high} bytes")
    return bytes(value)


@dataclass(frozen=True, kw_only=True, repr=False)
class AgreeKey(HsmCommand[KeyCryptogram]):
    """Derive ``spec``'s key from ``kak`` and the partner's public key; the key comes back under the LMK.

    ``peer_fingerprint`` is what the officers compared out of band: the key given
    must have it. ``shared_info`` (SP 800-56C SuppPubInfo) is the nonce and context
    both sites give, at least 16 bytes.
    """

    kak: KeyCryptogram
    peer_public_key: bytes
    peer_fingerprint: bytes
    shared_info: bytes
    spec: KeySpec

    def run(self, b: CommandBackend) -> KeyCryptogram:
        spec = self.spec
        b._capabilities.require(Command.KEY_AGREE, self.kak.spec.algorithm, spec.algorithm)
        check_template(spec)
        peer_der = _check_bytes(self.peer_public_key, "peer_public_key", 1, 1024)
        claimed = _check_bytes(self.peer_fingerprint, "peer_fingerprint", 8, 8)
        info = _check_bytes(self.shared_info, "shared_info", ecdh.MIN_SHARED_INFO, ecdh.MAX_SHARED_INFO)
        with b._guard():
            k = b._use(self.kak, Operation.KEY_AGREE)
            if STRENGTH[spec.algorithm] > STRENGTH[k.algorithm]:
                raise KeyUsageViolation("kak", "weaker than the key it would agree (SP 800-57 part 1, table 2)")
            peer = ecdh.load_public_key(peer_der)
            if not compare.bytes_eq(ecdh.fingerprint(peer_der), claimed):
                raise VerificationFailed("peer_fingerprint", "the public key given does not have this fingerprint")
            own = b._public_key(k)
            if compare.bytes_eq(own, peer_der):
                raise InvalidInput("peer_public_key", "this KAK's own public key: agree with the partner's")
            bits = 8 * spec.algorithm.key_length
            fixed = ecdh.fixed_info(algorithm_id=algorithm_id(spec), own_public=own, peer_public=peer_der,
                                    key_bits=bits, shared_info=info)
            clear = b._agree(k, peer, length=spec.algorithm.key_length, info=fixed)
            return b._seal_clear(spec, clear)
