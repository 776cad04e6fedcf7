"""Demo keys for the README and for development: their clear values are public.

``hsmsvc dev seed`` stores them once; a production store must never hold them.
Each is formed from two components like any key, so the audit log records it.
"""

from __future__ import annotations

from typing import Final, Iterator

from hsmsvc.errors import AlreadyExists, KeyNotFound
from hsmsvc.hsm.backend import Backend
from hsmsvc.hsm.model import KeySpec
from hsmsvc.keys.hierarchy import KeyManager
from hsmsvc.keys.store import KeyStore
from hsmsvc.types import Algorithm, Exportability, KeyType, KeyUsage, ModeOfUse

__all__ = ["DEMO_KEYS", "seed"]

_H = bytes.fromhex
# (spec, clear key). Values are published in README.md: demo only.
DEMO_KEYS: Final = (
    (KeySpec("demo-zpk-a", 1, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION,
             ModeOfUse.ENCRYPT_DECRYPT, Exportability.NON_EXPORTABLE, "demo"),
     _H("0123456789ABCDEFFEDCBA9876543210")),
    (KeySpec("demo-zpk-b", 1, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION,
             ModeOfUse.ENCRYPT_DECRYPT, Exportability.NON_EXPORTABLE, "demo"),
     _H("89ABCDEF01234567FEDCBA9876543210")),
    (KeySpec("demo-mak", 1, KeyType.MAK, Algorithm.TDES_2KEY, KeyUsage.MAC_ISO9797_ALG3,
             ModeOfUse.MAC_GENERATE_VERIFY, Exportability.NON_EXPORTABLE, "demo"),
     _H("FEDCBA98765432100123456789ABCDEF")),
)
_FIRST: Final = _H("1C1C1C1C1C1C1C1C2A2A2A2A2A2A2A2A")


def seed(store: KeyStore, backend: Backend) -> Iterator[str]:
    km = KeyManager(store, backend, "dev-seed")
    for spec, clear in DEMO_KEYS:
        try:
            store.get(spec.key_id, spec.version)
            yield f"{spec.key_id}: present"
            continue
        except KeyNotFound:
            pass
        second = bytes(a ^ b for a, b in zip(clear, _FIRST))
        try:
            key, _ = km.form(spec, [_FIRST, second])
        except AlreadyExists:
            yield f"{spec.key_id}: present"
            continue
        yield f"{spec.key_id}: stored, KCV {key.cryptogram.kcv.hex().upper()}"
