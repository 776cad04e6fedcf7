"""Forming a ZMK or TMK through CeremonyService, and printing component mailers for a new key.

:func:`form` is the ceremony client: the first officer starts the ceremony,
the second approves it, and each custodian, authenticated by their own
certificate, types their component with echo off. The client checks the
component against the KCV on the custodian's mailer, enciphers it under the
CTK's public half (whose fingerprint the officers check against the ceremony
script) and sends only that. A mismatch or an interruption cancels the
ceremony, so no wrapped component is left behind.

:func:`print_components` draws the components of a new key (for example a
ZMK for a new zone) and writes one mailer per custodian; the same mailers then
form the key at both sites, which yields the same KCV at both.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hsmsvc.ceremony import mailer
from hsmsvc.ceremony.console import Console, zeroize
from hsmsvc.ceremony.entry import component, person
from hsmsvc.ceremony.record import Record
from hsmsvc.ceremony.steps import checked_ctk
from hsmsvc.crypto import components, kcv, keytransport
from hsmsvc.errors import HsmsvcError, InvalidInput, VerificationFailed
from hsmsvc.types import Algorithm, Exportability, KeyType, KeyUsage, ModeOfUse
from hsmsvc_client.v1 import ceremony_service_pb2 as cm
from hsmsvc_client.v1 import key_service_pb2 as km
from hsmsvc_client.v1 import types_pb2 as pb
from hsmsvc.wire import ALGORITHM, EXPORTABILITY, KEY_TYPE, KEY_USAGE, MODE_OF_USE
from hsmsvc_client import Client, ClientTls
from hsmsvc_client.client import ref

__all__ = ["form", "print_components", "template"]


def template(kind: KeyType, *, key_id: str, alias: str, algorithm: str, usage: str, mode_of_use: str, zone: str,
             legacy_types: Sequence[str] = (), legacy_form: str = "") -> km.KeyTemplate:
    """The template of a ZMK or TMK to form, from the names a ceremony script gives: ``usage`` K1
    (TR-31 key blocks) or K0 (the legacy ECB form, carrying ``legacy_types``); never exportable."""
    try:
        return km.KeyTemplate(
            key_id=key_id, alias=alias, key_type=KEY_TYPE.to_pb[kind],
            algorithm=ALGORITHM.to_pb[Algorithm[algorithm]],
            usage=KEY_USAGE.to_pb[KeyUsage.KBPK if usage == "K1" else KeyUsage.KEK],
            mode_of_use=MODE_OF_USE.to_pb[ModeOfUse(mode_of_use)],
            exportability=EXPORTABILITY.to_pb[Exportability.NON_EXPORTABLE],
            zone=zone,
            legacy_key_types=[KEY_TYPE.to_pb[KeyType(t)] for t in legacy_types],
            legacy_form=pb.LegacyForm.Value(f"LEGACY_FORM_{legacy_form or 'UNSPECIFIED'}"),
        )
    except (KeyError, ValueError):
        raise InvalidInput("template", "a known algorithm, mode of use, key types and legacy form") from None


def _custodian_component(console: Console, i: int, n: int, algorithm: Algorithm) -> tuple[bytearray, bytes]:
    """Entered with echo off and checked against the mailer's KCV; a typo is asked again (entry.py)."""
    part, check, _ = component(console, f"Custodian {i + 1} of {n}: your component (hex, hidden): ", algorithm, i,
                               may_generate=False, kcv_prompt=f"Custodian {i + 1}: the component KCV on your mailer: ")
    return part, check


def form(
    console: Console, *, address: str, officers: tuple[ClientTls, ClientTls], custodians: Sequence[ClientTls],
    template: km.KeyTemplate, ctk: str, fingerprint: bytes | None = None, interceptors: Sequence[Any] = (),
) -> pb.KeyInfo:
    """Form a key from ``len(custodians)`` components under dual control; returns the stored key."""
    if not 2 <= len(custodians) <= 9:
        raise InvalidInput("custodians", "2 to 9 (dual control)")
    algorithm = ALGORITHM.get(template.algorithm, "algorithm")
    kind = KEY_TYPE.get(template.key_type, "key_type").value
    first = Client(address, officers[0], interceptors=interceptors)
    second = Client(address, officers[1], interceptors=interceptors)
    ceremony_id = ""
    try:
        ctk_alg, _, pub = checked_ctk(console, first, ref(ctk), fingerprint)
        started = first.ceremony.StartKeyFormation(cm.StartKeyFormationRequest(
            template=template, transport_key=ref(pub.key_id, pub.version), component_count=len(custodians)))
        f = started.formation
        ceremony_id = f.ceremony_id
        console.say(f"Ceremony {ceremony_id}: forming {kind} {f.key_id} v{f.version} ({algorithm.value}) from "
                    f"{len(custodians)} components; started by {f.started_by}")
        approved = second.ceremony.ApproveKeyFormation(cm.ApproveKeyFormationRequest(ceremony_id=ceremony_id))
        console.say(f"Approved by {approved.formation.approved_by} (dual control)")
        key: pb.KeyInfo | None = None
        for i, tls in enumerate(custodians):
            part, check = _custodian_component(console, i, len(custodians), algorithm)
            try:
                wrapped = keytransport.encrypt(ctk_alg, pub.public_key, part)
            finally:
                zeroize(part)
            with Client(address, tls, interceptors=interceptors) as custodian:
                r = custodian.ceremony.AddKeyComponent(cm.AddKeyComponentRequest(
                    ceremony_id=ceremony_id, wrapped_component=wrapped, kcv=check))
            receipt = r.formation.components[-1]
            console.say(f"Component {receipt.position} from {receipt.custodian} accepted; KCV {check.hex().upper()}")
            if r.HasField("key"):
                key = r.key
        if key is None:
            raise VerificationFailed("ceremony", "every component was accepted but no key was formed")
        console.say(f"{kind} {key.key_id} v{key.version} formed and stored under the LMK; KCV {key.kcv.hex().upper()}")
        ceremony_id = ""
        return key
    finally:
        if ceremony_id:
            # Interrupted or refused: leave no wrapped component behind.
            try:
                first.ceremony.CancelKeyFormation(cm.CancelKeyFormationRequest(
                    ceremony_id=ceremony_id, reason="stopped at the ceremony console"))
                console.say(f"Ceremony {ceremony_id} cancelled; nothing was stored")
            except Exception:  # noqa: BLE001 (the original error is the one to report)
                console.say(f"Ceremony {ceremony_id} could not be cancelled; it expires unformed")
        first.close()
        second.close()


def print_components(
    console: Console, *, out: Path, label: str, key_type: KeyType, algorithm: Algorithm, names: Sequence[str],
    record: Record,
) -> bytes:
    """Draw a new key as one component per custodian and write their mailers; returns the key's KCV."""
    if not 2 <= len(names) <= 9 or len(set(names)) != len(names):
        raise InvalidInput("custodians", "2 to 9 distinct names (dual control)")
    if algorithm.is_asymmetric:
        raise InvalidInput("algorithm", "a key pair is generated in the backend, never printed")
    for name in (*names, label):
        person(console, "", name, "custodian" if name != label else "label")
    with record.session(f"print-{label}") as session:
        parts: list[bytearray] = []
        try:
            while True:
                parts = [bytearray(secrets.token_bytes(algorithm.key_length)) for _ in names]
                if algorithm.is_tdes:
                    for p in parts:
                        p[:] = components.adjust_odd_parity(bytes(p))
                try:
                    key_kcv = kcv.kcv(algorithm, components.combine(algorithm, parts))
                    break
                except HsmsvcError:
                    for p in parts:
                        zeroize(p)  # a weak TDES key: draw again
            now = datetime.now(timezone.utc)
            detail = {"label": label, "key_type": key_type.value, "algorithm": algorithm.value,
                      "custodians": ",".join(names), "key_kcv": key_kcv.hex().upper()}
            for i, (name, part) in enumerate(zip(names, parts)):
                check = kcv.kcv(algorithm, bytes(part))
                m = mailer.Mailer(name, i + 1, len(names), label, key_type.value, algorithm.value, part, check,
                                  key_kcv, session.id, now, record.officer)
                mailer.stage(session.staging, out, m)
                detail |= {f"component_{i + 1}_kcv": check.hex().upper(), f"envelope_{i + 1}": m.envelope}
        finally:
            for p in parts:
                zeroize(p)
        session.complete("component.print", detail)
    for path in session.staging.published:
        console.say(f"  mailer {path}")
    console.say(f"{key_type.value} {label} ({algorithm.value}): key KCV {key_kcv.hex().upper()}")
    session.report(console.say)
    return key_kcv
