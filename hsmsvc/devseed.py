"""Demo keys for the README and for development: their clear values are public.

``hsmsvc dev seed`` stores them once; a production store must never hold them.
Each is formed from two components like any key, so the audit log records it.

:func:`form_kek` is ``hsmsvc dev seed --zmk|--tmk``: a ZMK or TMK formed from components the
integrator holds in clear (a partner's test key sheet), so that the single development
principal can import the partner's test keys under it. Production forms these keys with
``hsmsvc ceremony zmk|tmk form`` under dual control.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Iterator

from hsmsvc.errors import AlreadyExists, InvalidInput, KeyNotFound
from hsmsvc.hsm.backend import Backend
from hsmsvc.hsm.model import KeySpec, LegacyForm
from hsmsvc.keys.hierarchy import KeyManager, kek_spec
from hsmsvc.keys.store import KeyStore
from hsmsvc.types import Algorithm, Exportability, KeyType, KeyUsage, ModeOfUse

__all__ = ["ACTOR", "DEMO_KEYS", "form_kek", "kek_spec", "seed"]

ACTOR: Final = "dev-seed"
"""The audit rows' actor, so that a store which holds a development key shows it."""

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
    km = KeyManager(store, backend, ACTOR)
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


def form_kek(store: KeyStore, backend: Backend, *, spec: KeySpec, components: Sequence[bytes | bytearray],
             alias: str | None = None, legacy_types: frozenset[KeyType] = frozenset(),
             legacy_form: LegacyForm = LegacyForm.NONE) -> list[str]:
    """Form ``spec`` from clear ``components`` and store it (a ``key.form`` audit row by
    :data:`ACTOR`); the lines to print: each component's KCV, then the key's."""
    if store.versions(spec.key_id):
        raise AlreadyExists("key_id", "a key with this id is in the store already (nothing was changed)")
    for i, part in enumerate(components, 1):
        if len(part) != spec.algorithm.key_length:
            raise InvalidInput(f"component {i}", f"{2 * spec.algorithm.key_length} hex digits for "
                                                 f"{spec.algorithm.value}")
    key, kcvs = KeyManager(store, backend, ACTOR).form(spec, components, alias=alias, legacy_types=legacy_types,
                                                        legacy_form=legacy_form)
    lines = [f"component {i} KCV {k.hex().upper()}" for i, k in enumerate(kcvs, 1)]
    carries = ",".join(sorted(t.value for t in legacy_types))
    form = "K1, TR-31" if spec.usage is KeyUsage.KBPK else f"K0, {legacy_form.value} for {carries}"
    lines.append(f"{spec.key_type.value} {spec.key_id} v{spec.version} ({spec.algorithm.value}, {form}"
                 f"{', zone ' + spec.zone if spec.zone else ''}) stored; KCV {key.cryptogram.kcv.hex().upper()}")
    return lines
