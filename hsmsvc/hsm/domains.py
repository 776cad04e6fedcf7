"""Domain separation for the LMK's own MACs, and the key-sync derivation label.

None of these can collide with the TR-31 KDF inputs (ANSI X9.143 / TR-31:2018
clause A.3), which begin with a counter byte 0x01-0x04, nor with a KCV's
all-zero block.
"""

from __future__ import annotations

from typing import Final, Mapping

from hsmsvc.types import Algorithm, MacAlgorithm

__all__ = [
    "ANCHOR_DOMAIN", "AUDIT_DOMAIN", "CARD_DOMAIN", "HMAC_FOR", "KEY_SYNC_LABEL", "PAN_DOMAIN", "STORE_ANCHOR_DOMAIN",
]

AUDIT_DOMAIN: Final = b"hsmsvc/audit/v1\x00"
ANCHOR_DOMAIN: Final = b"hsmsvc/audit-anchor/v1\x00"
STORE_ANCHOR_DOMAIN: Final = b"hsmsvc/audit-anchor/v2\x00"
"""An anchor bound to one store's id (v1 named no store, so two stores on one LMK clashed)."""
PAN_DOMAIN: Final = b"hsmsvc/pan-hash/v1\x00"
CARD_DOMAIN: Final = b"hsmsvc/card-hash/v1\x00"
"""What a card value check binds (its PAN, its data, its card key's input), for its counters."""
KEY_SYNC_LABEL: Final = b"hsmsvc/ks-mac/v1"
"""Derivation data for the key-change MAC key (never an exported key: ECB exports use variants)."""
HMAC_FOR: Final[Mapping[Algorithm, MacAlgorithm]] = {
    Algorithm.AES_256: MacAlgorithm.HMAC_SHA256,
    Algorithm.SM4: MacAlgorithm.HMAC_SM3,
    Algorithm.HMAC_SM3_256: MacAlgorithm.HMAC_SM3,
}
"""The one hash an HMAC key computes, by its size: HMAC-SHA256 under 32 bytes (AES_256), HMAC-SM3 under
16 (SM4) or 32 (HMAC_SM3_256, the SM3 output length GM/T 0042-2015 recommends)."""
