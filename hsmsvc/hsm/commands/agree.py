"""Key agreement: a zone's KEK derived at two sites from their KAKs.

Each site's KAK private half stays under its LMK; the officers exchange the
public halves out of band and compare fingerprints.

* P-521 (:class:`AgreeKey`): Z by ECDH (SP 800-56A rev. 3 clause 5.7.1.2), the key
  by the one-step KDF with SHA-512 (SP 800-56C rev. 2) over FixedInfo binding both
  public keys, the derived key's type, algorithm and usage, its length and the
  agreed shared info (nonce and context).
* SM2 (:class:`AgreeSm2Key`): the two-pass key exchange of GB/T 32918.3-2016
  clause 6.1 with each site's static KAK and an ephemeral key pair made for this
  one agreement (under the LMK, used once); the key is the exchange's own SM3 KDF
  output K_A = K_B, as any conforming partner computes it.

Neither Z nor the key leaves the backend; the KCVs are compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from hsmsvc.crypto import compare, ecdh, sm2ka
from hsmsvc.crypto.sm2 import DEFAULT_ID
from hsmsvc.errors import InvalidInput, KeyUsageViolation, VerificationFailed
from hsmsvc.hsm import policy
from hsmsvc.hsm.commands.base import STRENGTH, HsmCommand
from hsmsvc.hsm.model import Command, KeyCryptogram, KeySpec
from hsmsvc.hsm.policy import Operation
from hsmsvc.types import Algorithm

if TYPE_CHECKING:
    from hsmsvc.hsm.commands.core import CommandBackend

__all__ = [
    "AgreeKey", "AgreeSm2Key", "Sm2Exchange", "Sm2Result", "Sm2Role", "algorithm_id", "check_sm2_request",
    "check_template",
]

_LABEL = b"hsmsvc/agree/v1"
Sm2Role = sm2ka.Role


def algorithm_id(spec: KeySpec) -> bytes:
    """FixedInfo's AlgorithmID: hsmsvc's label and what the key will be, so a ZMK agreed as a KBPK
    is a different key from one agreed as a K0 KEK or of another length."""
    return _LABEL + f"|{spec.key_type.value}|{spec.algorithm.value}|{spec.usage.value}".encode("ascii")


def check_template(spec: KeySpec, kak: Algorithm = Algorithm.ECC_P521) -> None:
    """A P-521 KAK derives a ZMK (policy.AGREEABLE); an SM2 KAK also a terminal's session keys
    (policy.AGREEABLE_SM2); each in an algorithm its curve may derive."""
    table = policy.AGREEABLE_SM2 if kak is Algorithm.SM2 else policy.AGREEABLE
    usages = table.get(spec.key_type)
    if usages is None or spec.usage not in usages:
        if kak is Algorithm.SM2:
            raise InvalidInput("template.key_type", "SM2 key agreement derives a ZMK, TMK, TPK, TAK, MAK or DEK")
        raise InvalidInput("template.key_type", "key agreement derives a ZMK (K0 or K1)")
    allowed = policy.AGREEABLE_ALGORITHMS.get(kak, frozenset())
    if spec.algorithm not in allowed:
        names = ", ".join(sorted(a.value for a in allowed))
        raise InvalidInput("template.algorithm", f"an {kak.value} KAK derives {names}")


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
        check_template(spec)  # the P-521 path; an SM2 KAK is refused when it is used
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


@dataclass(frozen=True, kw_only=True, repr=False)
class Sm2Exchange:
    """The partner's side of an SM2 key exchange (GB/T 32918.3-2016 clause 6.1).

    ``own_id`` and ``peer_id`` are the distinguishing identifiers in Z_A and Z_B
    (default ``1234567812345678``, GB/T 35276-2017): each site gives the other's
    crosswise. ``peer_confirmation`` is optional: S_B for an initiator, S_A for a
    responder, from the site that agreed first.
    """

    role: Sm2Role
    peer_public_key: bytes
    peer_fingerprint: bytes
    peer_ephemeral_public_key: bytes
    own_id: bytes = DEFAULT_ID
    peer_id: bytes = DEFAULT_ID
    peer_confirmation: bytes = b""


@dataclass(frozen=True)
class Sm2Result:
    """The agreed key under the LMK and the confirmation hash this site sends (S_B or S_A)."""

    key: KeyCryptogram
    confirmation: bytes


@dataclass(frozen=True, kw_only=True, repr=False)
class AgreeSm2Key(HsmCommand[Sm2Result]):
    """Run the SM2 key exchange with ``kak`` and this agreement's ``ephemeral`` key pair.

    Every fault after the exchange is computed (a peer confirmation that differs)
    is one refusal; nothing is stored then. The ephemeral key is the caller's to
    have taken out of the store before this runs, so it is never used twice.
    """

    kak: KeyCryptogram
    ephemeral: KeyCryptogram
    exchange: Sm2Exchange
    spec: KeySpec

    def run(self, b: CommandBackend) -> Sm2Result:
        spec, x = self.spec, self.exchange
        b._capabilities.require(Command.KEY_AGREE, Algorithm.SM2, spec.algorithm)
        check_sm2_request(kak=self.kak, exchange=x, spec=spec)
        if self.ephemeral.spec.algorithm is not Algorithm.SM2:
            raise KeyUsageViolation("sm2.agreement_id", "not an SM2 ephemeral key")
        with b._guard():
            k = b._use(self.kak, Operation.KEY_AGREE)
            e = b._use(self.ephemeral, Operation.KEY_AGREE)
            if STRENGTH[spec.algorithm] > STRENGTH[k.algorithm]:
                raise KeyUsageViolation("kak", "weaker than the key it would agree (SP 800-57 part 1, table 2)")
            if compare.bytes_eq(b._public_key(k), x.peer_public_key):
                raise InvalidInput("peer_public_key", "this KAK's own public key: agree with the partner's")
            done = b._agree_sm2(k, e, x, length=spec.algorithm.key_length)
            mine, theirs = ((done.initiator_confirmation, done.responder_confirmation)
                            if x.role is sm2ka.Role.INITIATOR
                            else (done.responder_confirmation, done.initiator_confirmation))
            if x.peer_confirmation and not compare.bytes_eq(theirs, x.peer_confirmation):
                raise VerificationFailed("sm2", "key agreement failed")
            return Sm2Result(b._seal_clear(spec, done.key), mine)


def check_sm2_request(*, kak: KeyCryptogram, exchange: Sm2Exchange, spec: KeySpec) -> None:
    """Everything about an SM2 exchange that depends on nothing secret, checked before its
    agreement is taken from the store, so a typo does not spend it: the KAK's curve, the
    template, the role and IDs, both public keys on sm2p256v1, the fingerprint, not our own key."""
    x = exchange
    if kak.spec.algorithm is not Algorithm.SM2:
        raise InvalidInput("sm2", "only with an SM2 KAK: a P-521 KAK agrees in one AgreeKey call")
    check_template(spec, Algorithm.SM2)
    if not isinstance(x.role, sm2ka.Role):
        raise InvalidInput("sm2.role", "INITIATOR or RESPONDER")
    peer_der = _check_bytes(x.peer_public_key, "peer_public_key", 1, 1024)
    claimed = _check_bytes(x.peer_fingerprint, "peer_fingerprint", 8, 8)
    sm2ka.check_public_key(peer_der, "peer_public_key")
    sm2ka.check_public_key(_check_bytes(x.peer_ephemeral_public_key, "sm2.peer_ephemeral_public_key", 1, 1024),
                           "sm2.peer_ephemeral_public_key")
    _check_bytes(x.own_id, "sm2.own_id", 1, 256)
    _check_bytes(x.peer_id, "sm2.peer_id", 1, 256)
    if x.peer_confirmation:
        _check_bytes(x.peer_confirmation, "sm2.peer_confirmation", 32, 32)
    fingerprint = sm2ka.fingerprint(peer_der)
    if not compare.bytes_eq(fingerprint, claimed):
        raise VerificationFailed("peer_fingerprint", "the public key given does not have this fingerprint")
    if compare.bytes_eq(fingerprint, kak.kcv):  # a KAK's check value is its public key's fingerprint
        raise InvalidInput("peer_public_key", "this KAK's own public key: agree with the partner's")
