"""Forming a ZMK or TMK from components entered at the backend, offline (ISO 11568-2 clause 5; X9.24-1).

The way in for a key stronger than the ceremony transport key (CTK) can carry:
``ceremony zmk form`` sends each component under the CTK, and under an RSA-3072
or SM2 key of 128-bit strength an AES-192 or AES-256 ZMK cannot travel that way
(X9.24-1: a key is never carried by a weaker one) unless the CTK is P-521. Here, as in the LMK
ceremony, the custodians type their components at the machine that holds the
LMK, each with echo off and checked against the KCV on their mailer, and no
network is involved.

All or nothing: every component is entered and checked first; the key is then
stored in one transaction with its ``key.form`` audit row (the officer as the
actor, the ceremony id and custodians in the detail), and the journal's
completion line follows. Any failure before the store leaves no key; a failure
to journal after it revokes the key just stored. Either way the journal says
the ceremony was abandoned, and why.
"""

from __future__ import annotations

from collections.abc import Sequence

from hsmsvc.ceremony.console import Console, zeroize
from hsmsvc.ceremony.entry import check_custodians, collect
from hsmsvc.ceremony.record import Record
from hsmsvc.crypto import compare, components, kcv
from hsmsvc.errors import AlreadyExists, VerificationFailed
from hsmsvc.hsm.backend import Backend
from hsmsvc.hsm.model import KeySpec, LegacyForm
from hsmsvc.keys.hierarchy import KeyManager
from hsmsvc.keys.model import StoredKey
from hsmsvc.keys.store import KeyStore
from hsmsvc.types import KeyType, KeyUsage

__all__ = ["form"]


def form(
    console: Console, *, store: KeyStore, backend: Backend, spec: KeySpec, n: int, record: Record,
    names: Sequence[str] = (), alias: str | None = None, legacy_types: frozenset[KeyType] = frozenset(),
    legacy_form: LegacyForm = LegacyForm.NONE,
) -> StoredKey:
    """Form ``spec`` from ``n`` custodians' components typed at this console and store it; returns the key."""
    check_custodians(n)
    # Refused before anyone types anything; the store refuses a racing duplicate again at the end.
    if store.versions(spec.key_id):
        raise AlreadyExists("key_id", "a key with this id is in the store already (nothing was changed)")
    kind = f"{spec.key_type.value.lower()}-form"
    with record.session(kind) as session:
        form_name = "K1, TR-31 key blocks" if spec.usage is KeyUsage.KBPK else "K0, legacy ECB"
        console.say(f"Ceremony {session.id}: forming {spec.key_type.value} {spec.key_id} v{spec.version} "
                    f"({spec.algorithm.value}, {form_name}{', zone ' + spec.zone if spec.zone else ''}) "
                    f"from {n} components, at the backend")
        parts, custodians = collect(console, n, spec.algorithm, names, may_generate=False, need_kcv=True)
        stored: list[StoredKey] = []
        try:
            # The ceremony's own KCV of the whole key, to hold the backend's result to.
            key_kcv = kcv.kcv(spec.algorithm, components.combine(spec.algorithm, parts))
            detail = {"ceremony": session.id, "custodians": ",".join(c.name for c in custodians)}
            manager = KeyManager(store, backend, record.officer)

            def keep() -> None:
                key, _ = manager.form(spec, parts, alias=alias, legacy_types=legacy_types, legacy_form=legacy_form,
                                      detail=detail)
                stored.append(key)
                if not compare.bytes_eq(key.cryptogram.kcv[: len(key_kcv)], key_kcv):
                    take_back()
                    raise VerificationFailed("key", "the backend formed a key with another KCV")

            def take_back() -> None:
                # Keys are never deleted (the audit chain names them): one not completed is revoked.
                for key in stored:
                    manager.revoke(key.key_id, key.version, f"ceremony {session.id} was not completed")

            session.complete("key.form", {
                "key_id": spec.key_id, "version": str(spec.version), "key_type": spec.key_type.value,
                "algorithm": spec.algorithm.value, "usage": spec.usage.value, "zone": spec.zone,
                "custodians": detail["custodians"],
                **{f"component_{i + 1}_kcv": c.kcv.hex().upper() for i, c in enumerate(custodians)},
                "key_kcv": key_kcv.hex().upper(),
            }, then=keep, undo=take_back)
        finally:
            for p in parts:
                zeroize(p)
    key = stored[0]
    console.say(f"{spec.key_type.value} {key.key_id} v{key.version} formed and stored under the LMK; "
                f"KCV {key.cryptogram.kcv.hex().upper()}")
    session.report(console.say)
    return key
