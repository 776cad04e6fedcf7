"""Key diversification inside the backend (issue 35; bank design 004 clause 6.2.2).

A KDK (TR-31 B3, mode X) derives a user's key from the user's code (``crypto/diversify.py``), and
the derived key leaves only as a TR-31 block under a K1 ZMK or TMK no weaker than it, for the
personalisation of the user's USB-Key: never in clear, never stored here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from hsmsvc.crypto import components, diversify
from hsmsvc.errors import InvalidInput
from hsmsvc.hsm import policy
from hsmsvc.hsm.commands.base import HsmCommand
from hsmsvc.hsm.commands.keys import derived_kek, export_derived
from hsmsvc.hsm.model import Command, KeyCryptogram, KeySpec
from hsmsvc.hsm.policy import Operation
from hsmsvc.types import Algorithm

if TYPE_CHECKING:
    from hsmsvc.hsm.commands.core import CommandBackend

__all__ = ["DiversifyKey", "derived_algorithm"]


def derived_algorithm(master: Algorithm) -> Algorithm:
    """The derived key's algorithm: two-key TDES from a TDES master (option A gives 16 bytes), SM4 from
    SM4, and from AES the master's own size."""
    return Algorithm.TDES_2KEY if master.is_tdes else master


@dataclass(frozen=True, kw_only=True, repr=False)
class DiversifyKey(HsmCommand[tuple[bytes, bytes]]):
    """The key ``derived`` describes, derived from the KDK ``master`` and ``data`` (the user's code),
    as a TR-31 block under the K1 KEK ``kek``, and its KCV."""

    master: KeyCryptogram
    kek: KeyCryptogram
    data: bytes
    derived: KeySpec

    def run(self, b: CommandBackend) -> tuple[bytes, bytes]:
        b._capabilities.require(Command.EXPORT_KEY, self.kek.spec.algorithm)
        spec = self.derived
        if not isinstance(spec, KeySpec) or spec.key_type not in policy.DIVERSIFIED:
            raise InvalidInput("key_type", "MAK, TAK or DEK: a user's authentication or data key")
        with b._guard():
            k = derived_kek(b, self.kek, "a derived key", spec.key_type)
            m = b._use(self.master, Operation.DIVERSIFY)
            alg = derived_algorithm(m.algorithm)
            if spec.algorithm is not alg:
                raise InvalidInput("algorithm", f"{alg.value}: what a {m.algorithm.value} KDK derives")
            purpose = f"{spec.key_type.value}/{spec.usage.value}".encode()
            if m.algorithm.is_aes:
                clear = diversify.sp800_108(b._clear(m), code=self.data, purpose=purpose, length=alg.key_length)
            else:
                # The master enciphers as a loaded key: its clear bytes never leave it (TDES and SM4).
                clear = m.encrypt(diversify.option_a_block(code=self.data, purpose=purpose))
                if alg.is_tdes:
                    clear = components.adjust_odd_parity(clear)
            return export_derived(b, k, spec, clear)
