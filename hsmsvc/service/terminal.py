"""DUKPT terminal use cases (issue 35): MACs and data under a transaction's keys, and initial keys.

The keys are derived inside the backend from the stored BDK and the KSN the terminal sent
(``hsm/commands/dukpt.py``). A wrong MAC is a result (``False``), as for VerifyMac: a MAC of 4
bytes or more is not a guess worth counting. Giving out an initial key is key management: the
manager role's, audited as an export of the BDK naming the terminal.
"""

from __future__ import annotations

from hsmsvc.hsm.commands import DecryptDukptData, DukptDirection, EncryptDukptData, GenerateDukptMac, VerifyDukptMac
from hsmsvc.hsm.model import DukptKey
from hsmsvc.hsm.policy import Operation
from hsmsvc.keys.model import KeyRef
from hsmsvc.service.context import Caller, Services
from hsmsvc.service.pinkeys import DukptKeyRef
from hsmsvc.types import Padding

__all__ = ["decrypt_data", "encrypt_data", "export_initial_key", "generate_mac", "verify_mac"]


def _key(s: Services, caller: Caller, ref: DukptKeyRef, op: Operation) -> DukptKey:
    if ref.algorithm is not None:
        s.mode.require_key(ref.algorithm, "transaction.key_algorithm")
    bdk = s.key(caller, ref.bdk, op, "transaction.bdk")
    s.observer.key_used(bdk)
    return DukptKey(bdk.cryptogram, bytes(ref.ksn), ref.algorithm)


def verify_mac(s: Services, caller: Caller, *, key: DukptKeyRef, direction: DukptDirection, padding: Padding | None,
               data: bytes, mac: bytes) -> bool:
    """Whether ``mac`` is the terminal's MAC of ``data`` (X9.24-1 A.4, X9.24-3 6)."""
    k = _key(s, caller, key, Operation.DUKPT_MAC_VERIFY)
    return s.backend.execute(VerifyDukptMac(key=k, direction=direction, data=data, mac=mac, padding=padding))


def generate_mac(s: Services, caller: Caller, *, key: DukptKeyRef, direction: DukptDirection,
                 padding: Padding | None, data: bytes) -> bytes:
    """The MAC of a response to the terminal."""
    k = _key(s, caller, key, Operation.DUKPT_MAC_GENERATE)
    return s.backend.execute(GenerateDukptMac(key=k, direction=direction, data=data, padding=padding))


def decrypt_data(s: Services, caller: Caller, *, key: DukptKeyRef, direction: DukptDirection, iv: bytes,
                 data: bytes) -> bytes:
    """Data the terminal enciphered, deciphered (CBC)."""
    k = _key(s, caller, key, Operation.DUKPT_DATA_DECRYPT)
    return s.backend.execute(DecryptDukptData(key=k, direction=direction, iv=iv, data=data))


def encrypt_data(s: Services, caller: Caller, *, key: DukptKeyRef, direction: DukptDirection, iv: bytes,
                 data: bytes) -> bytes:
    """Data for the terminal, enciphered (CBC)."""
    k = _key(s, caller, key, Operation.DUKPT_DATA_ENCRYPT)
    return s.backend.execute(EncryptDukptData(key=k, direction=direction, iv=iv, data=data))


def export_initial_key(s: Services, caller: Caller, *, bdk: KeyRef, kek: KeyRef,
                       initial: bytes) -> tuple[bytes, bytes, int]:
    """A terminal's initial key under ``kek`` (TR-31, B1), its KCV, and the BDK's version."""
    k = s.key(caller, kek, Operation.KEY_EXPORT_UNDER, "kek")
    b = s.key(caller, bdk, Operation.DUKPT_INITIAL_KEY_EXPORT, "bdk")
    block, check = s.manager(caller).export_initial_key(bdk=b, kek=k, initial=initial)
    return block, check, b.version
