"""The national-only mode (GB/T 39786-2021; seed 000 clause 6.1 a): SM2, SM3 and SM4 at every level.

Under ``[crypto] national_only = true`` the LMK is SM4 (checked when the server starts), every key
generated, formed, imported, agreed or rotated is SM4, SM2 or HMAC-SM3, every key used is one of
those, every MAC is SM4- or SM3-based and every digest SM3. Anything else is refused with
FAILED_PRECONDITION naming the mode, before any work is done where the request names it, and at
the latest before a key is stored (:class:`hsmsvc.keys.hierarchy.KeyManager`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from hsmsvc.errors import ModeRefused
from hsmsvc.types import Algorithm, HashAlgorithm, MacAlgorithm

__all__ = ["NATIONAL_ALGORITHMS", "NATIONAL_HASHES", "NATIONAL_MACS", "CryptoMode"]

NATIONAL_ALGORITHMS: Final = frozenset({Algorithm.SM4, Algorithm.SM2, Algorithm.HMAC_SM3_256})
"""GB/T 32907 (SM4), GB/T 32918 (SM2), and HMAC keys for SM3 (GB/T 32905): an SM4-sized HMAC key
is an SM4 key, and is used only with SM3 because no other MAC is allowed."""
NATIONAL_MACS: Final = frozenset({MacAlgorithm.ISO9797_ALG1, MacAlgorithm.CMAC, MacAlgorithm.HMAC_SM3,
                                  MacAlgorithm.UNIONPAY_POS})
"""The block MACs run on the key's cipher (SM4 here); ISO 9797-1 algorithm 3 is DES by definition."""
NATIONAL_HASHES: Final = frozenset({HashAlgorithm.SM3})


@dataclass(frozen=True)
class CryptoMode:
    """The deployment's algorithm rule; the default allows every algorithm the backend has."""

    national_only: bool = False

    def require_key(self, algorithm: Algorithm, field: str = "key") -> None:
        """A key of ``algorithm`` may be made or used."""
        if self.national_only and algorithm not in NATIONAL_ALGORITHMS:
            raise ModeRefused(field, f"national-only mode: {algorithm.value} is not SM2, SM3 or SM4")

    def require_mac(self, algorithm: MacAlgorithm, field: str = "algorithm") -> None:
        if self.national_only and algorithm not in NATIONAL_MACS:
            raise ModeRefused(field, f"national-only mode: {algorithm.value} is not SM4- or SM3-based")

    def require_hash(self, algorithm: HashAlgorithm, field: str = "algorithm") -> None:
        if self.national_only and algorithm not in NATIONAL_HASHES:
            raise ModeRefused(field, f"national-only mode: {algorithm.value} is not SM3")

    def require_lmk(self, algorithm: Algorithm) -> None:
        """The server refuses to start on another LMK: the key hierarchy's root is SM4 too."""
        if self.national_only and algorithm is not Algorithm.SM4:
            raise ModeRefused("lmk", f"national-only mode needs an SM4 LMK, not {algorithm.value} "
                                     "(`hsmsvc ceremony lmk create --algorithm SM4`, then `ceremony lmk migrate`)")
