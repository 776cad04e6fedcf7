"""DUKPT inside the backend: a transaction's PIN key from a stored BDK and the terminal's KSN.

ANSI X9.24-1:2009 annex A under a two-key TDES BDK, ANSI X9.24-3:2017 clause 6 under an
AES BDK (``crypto/dukpt.py``, ``crypto/aesdukpt.py``). The derived key is made for one
command and dropped; it deciphers PIN blocks only (the transient key's mode of use is D).
A KSN the standard forbids is INVALID_ARGUMENT before anything is deciphered: the KSN
travels in clear beside the block, so refusing it tells nothing secret.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hsmsvc.crypto import aesdukpt, components, dukpt
from hsmsvc.errors import InvalidInput
from hsmsvc.hsm.model import Command, DukptPinKey
from hsmsvc.hsm.policy import Operation
from hsmsvc.types import Algorithm

if TYPE_CHECKING:
    from hsmsvc.hsm.commands.core import CommandBackend

__all__ = ["pin_key"]


def pin_key(b: CommandBackend, key: DukptPinKey) -> tuple[Algorithm, bytes]:
    """The algorithm and clear bytes of ``key``'s PIN encryption key, for ``b._transient``."""
    b._capabilities.require(Command.DUKPT)
    if not isinstance(key.ksn, (bytes, bytearray)):
        raise InvalidInput("ksn", "bytes")
    if key.algorithm is not None and not isinstance(key.algorithm, Algorithm):
        raise InvalidInput("pin_key_algorithm", "an algorithm")
    bdk = b._use(key.bdk, Operation.DUKPT_PIN_DECRYPT)
    if bdk.algorithm.is_tdes:
        if key.algorithm is not None:
            raise InvalidInput("pin_key_algorithm", "unset under a TDES BDK: X9.24-1's PIN key is two-key TDES")
        tdes_ksn = dukpt.TdesKsn.parse(bytes(key.ksn))
        clear = dukpt.derive(bdk=b._clear(bdk), ksn=tdes_ksn, kind=dukpt.TdesDukptKey.PIN)
        # DES ignores parity; the transient key is checked as any TDES key is.
        return Algorithm.TDES_2KEY, components.adjust_odd_parity(clear)
    if key.algorithm is None:
        raise InvalidInput("pin_key_algorithm", "required under an AES BDK (X9.24-3 names the working key's type)")
    aes_ksn = aesdukpt.AesKsn.parse(bytes(key.ksn))
    clear = aesdukpt.derive(bdk=b._clear(bdk), ksn=aes_ksn, usage=aesdukpt.DukptKeyUsage.PIN_ENCRYPTION,
                            key_type=key.algorithm)
    return key.algorithm, components.adjust_odd_parity(clear) if key.algorithm.is_tdes else clear
