"""Forming a ZMK or TMK one person at a time: each step its own process, with one credential.

:func:`hsmsvc.ceremony.forming.form` runs a whole ceremony at one console, and
so holds both officers' and every custodian's private keys in one process.
Here each person runs their own step from their own terminal with only their
own certificate, as dual control means it (ISO 11568-1 clause 4.4): the first
officer starts, a second officer reads what they approve and approves it, and
each custodian checks the CTK's fingerprint against the ceremony script, types
their component (echo off, asked again after a mistake) and sends it
enciphered under the CTK. The server (``CeremonyService``) enforces who may
take each step.
"""

from __future__ import annotations

from hsmsvc.ceremony.console import Console, zeroize
from hsmsvc.ceremony.entry import component
from hsmsvc.crypto import compare, keytransport
from hsmsvc.errors import InvalidInput, VerificationFailed
from hsmsvc.types import Algorithm
from hsmsvc_client.v1 import ceremony_service_pb2 as cm
from hsmsvc_client.v1 import key_service_pb2 as km
from hsmsvc_client.v1 import types_pb2 as pb
from hsmsvc.wire import ALGORITHM, KEY_TYPE
from hsmsvc_client import Client
from hsmsvc_client.client import ref

__all__ = ["add_component", "approve", "cancel", "checked_ctk", "describe", "start", "status"]


def checked_ctk(console: Console, client: Client, key: pb.KeyRef, fingerprint: bytes | None,
                ) -> tuple[Algorithm, bytes, km.GetPublicKeyResponse]:
    """The CTK's public half, its fingerprint recomputed here and checked against the ceremony
    script's (``fingerprint``), or shown and confirmed."""
    pub = client.keys.GetPublicKey(km.GetPublicKeyRequest(key=key))
    alg = ALGORITHM.get(pub.algorithm, "transport_key.algorithm")
    mine = keytransport.fingerprint(alg, pub.public_key)
    if not compare.bytes_eq(mine, pub.fingerprint):
        raise VerificationFailed("transport_key", "the server's fingerprint does not match its public key")
    if fingerprint is not None:
        if len(fingerprint) < 4 or not compare.bytes_eq(mine[: len(fingerprint)], fingerprint):
            raise VerificationFailed("transport_key", f"fingerprint {mine.hex().upper()} is not the "
                                                      f"ceremony script's {fingerprint.hex().upper()}")
    elif not console.confirm(f"CTK {pub.key_id} v{pub.version} ({alg.value}) fingerprint {mine.hex().upper()}: "
                             "does it match the ceremony script?"):
        raise VerificationFailed("transport_key", "its fingerprint was not accepted")
    return alg, pub.public_key, pub


def describe(f: cm.KeyFormation) -> str:
    kind = KEY_TYPE.get(f.key_type, "key_type").value
    alg = ALGORITHM.get(f.algorithm, "algorithm").value
    got = ", ".join(f"{c.position} from {c.custodian}" for c in f.components) or "none"
    return (f"ceremony {f.ceremony_id}: {kind} {f.key_id} v{f.version} ({alg}) under CTK {f.transport_key.key_id} "
            f"v{f.transport_key.version}; {cm.KeyFormationState.Name(f.state)}; started by {f.started_by}"
            f"{', approved by ' + f.approved_by if f.approved_by else ''}; components {len(f.components)} of "
            f"{f.components_required} ({got})")


def start(console: Console, client: Client, *, template: km.KeyTemplate, ctk: str, count: int,
          fingerprint: bytes | None) -> cm.KeyFormation:
    """The first officer's step: returns the ceremony, whose id the others are given."""
    if not 2 <= count <= 9:
        raise InvalidInput("components", "2 to 9 (dual control)")
    _, _, pub = checked_ctk(console, client, ref(ctk), fingerprint)
    f: cm.KeyFormation = client.ceremony.StartKeyFormation(cm.StartKeyFormationRequest(
        template=template, transport_key=ref(pub.key_id, pub.version), component_count=count)).formation
    console.say(describe(f))
    console.say(f"Give the ceremony id {f.ceremony_id} to the approving officer and to the custodians.")
    return f


def approve(console: Console, client: Client, ceremony_id: str, *, confirmed: bool) -> cm.KeyFormation:
    """The second officer's step: what is approved is shown first and confirmed."""
    f: cm.KeyFormation = client.ceremony.GetKeyFormation(cm.GetKeyFormationRequest(ceremony_id=ceremony_id)).formation
    console.say(describe(f))
    if not confirmed and not console.confirm("Approve this ceremony?"):
        raise VerificationFailed("ceremony", "not approved; nothing changed")
    r: cm.ApproveKeyFormationResponse = client.ceremony.ApproveKeyFormation(
        cm.ApproveKeyFormationRequest(ceremony_id=ceremony_id))
    console.say(f"Approved by {r.formation.approved_by} (dual control)")
    _formed(console, r)
    return r.formation


def add_component(console: Console, client: Client, ceremony_id: str, *, fingerprint: bytes | None,
                  ) -> cm.KeyFormation:
    """A custodian's step: their component, checked against their mailer's KCV, sent under the CTK."""
    f: cm.KeyFormation = client.ceremony.GetKeyFormation(cm.GetKeyFormationRequest(ceremony_id=ceremony_id)).formation
    console.say(describe(f))
    alg = ALGORITHM.get(f.algorithm, "algorithm")
    ctk_alg, public_key, _ = checked_ctk(console, client, f.transport_key, fingerprint)
    part, check, _ = component(console, "Your component (hex, hidden): ", alg, len(f.components),
                               may_generate=False, kcv_prompt="The component KCV on your mailer: ")
    try:
        wrapped = keytransport.encrypt(ctk_alg, public_key, part)
    finally:
        zeroize(part)
    r: cm.AddKeyComponentResponse = client.ceremony.AddKeyComponent(cm.AddKeyComponentRequest(
        ceremony_id=ceremony_id, wrapped_component=wrapped, kcv=check))
    mine = r.formation.components[-1]
    console.say(f"Component {mine.position} from {mine.custodian} accepted; KCV {check.hex().upper()}")
    _formed(console, r)
    return r.formation


def _formed(console: Console, r: cm.ApproveKeyFormationResponse | cm.AddKeyComponentResponse) -> None:
    if r.HasField("key"):
        console.say(f"{r.key.key_id} v{r.key.version} formed and stored under the LMK; KCV {r.key.kcv.hex().upper()}")


def status(console: Console, client: Client, ceremony_id: str) -> cm.KeyFormation:
    f: cm.KeyFormation = client.ceremony.GetKeyFormation(cm.GetKeyFormationRequest(ceremony_id=ceremony_id)).formation
    console.say(describe(f))
    return f


def cancel(console: Console, client: Client, ceremony_id: str, *, reason: str) -> cm.KeyFormation:
    f: cm.KeyFormation = client.ceremony.CancelKeyFormation(cm.CancelKeyFormationRequest(ceremony_id=ceremony_id,
                                                                        reason=reason)).formation
    console.say(describe(f))
    return f
