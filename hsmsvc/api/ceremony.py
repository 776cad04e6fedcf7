"""CeremonyService: keys formed from custodians' components under dual control, over gRPC."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from hsmsvc.api import convert as cv
from hsmsvc.api.status import Observed, rpc
from hsmsvc.errors import InvalidInput
from hsmsvc.keys.model import Ceremony, CeremonyState, StoredKey
from hsmsvc.service import ceremony as uc
from hsmsvc.service.keys import new_key_id
from hsmsvc.service.context import Caller, Services
from hsmsvc_client.v1 import ceremony_service_pb2 as m
from hsmsvc_client.v1 import ceremony_service_pb2_grpc as g
from hsmsvc_client.v1 import types_pb2 as pb

__all__ = ["CeremonyServicer"]

_STATE = {
    CeremonyState.OPEN: m.KEY_FORMATION_STATE_OPEN,
    CeremonyState.FORMED: m.KEY_FORMATION_STATE_FORMED,
    CeremonyState.CANCELLED: m.KEY_FORMATION_STATE_CANCELLED,
    CeremonyState.EXPIRED: m.KEY_FORMATION_STATE_EXPIRED,
}


def formation(c: Ceremony) -> m.KeyFormation:
    expires = Timestamp()
    expires.FromDatetime(c.expires_at)
    return m.KeyFormation(
        ceremony_id=c.ceremony_id, state=_STATE[c.state], key_id=c.spec.key_id, version=c.spec.version,
        key_type=cv.KEY_TYPE.to_pb[c.spec.key_type], algorithm=cv.ALGORITHM.to_pb[c.spec.algorithm],
        transport_key=pb.KeyRef(key_id=c.ctk_id, version=c.ctk_version),
        components_required=c.required,
        components=[m.ComponentReceipt(position=i + 1, custodian=who, kcv=bytes.fromhex(k))
                    for i, (who, k) in enumerate(c.components)],
        started_by=c.started_by, approved_by=c.approved_by or "", expire_time=expires,
        kcv=bytes.fromhex(c.kcv) if c.kcv else b"",
    )


def _key(key: StoredKey | None) -> pb.KeyInfo | None:
    return cv.key_info(key) if key is not None else None


def _id(value: str) -> str:
    return cv.text(value, "ceremony_id", 32)


class CeremonyServicer(g.CeremonyServiceServicer):
    def __init__(self, services: Services, observed: Observed) -> None:
        self.s = services
        self.observed = observed

    @rpc("CeremonyService.StartKeyFormation")
    def StartKeyFormation(self, r: m.StartKeyFormationRequest, c: Caller) -> m.StartKeyFormationResponse:
        if not r.HasField("template"):
            raise InvalidInput("template", "required")
        t = r.template
        spec = cv.key_spec(t, cv.text(t.key_id, "template.key_id", 64) or new_key_id())
        out = uc.start(self.s, c, spec=spec, alias=cv.text(t.alias, "template.alias") or None,
                       legacy_types=cv.legacy_types(t), legacy_form=cv.legacy_form(t),
                       ctk=cv.key_ref(r.transport_key, "transport_key", r.HasField("transport_key")),
                       required=r.component_count)
        return m.StartKeyFormationResponse(formation=formation(out))

    @rpc("CeremonyService.ApproveKeyFormation")
    def ApproveKeyFormation(self, r: m.ApproveKeyFormationRequest, c: Caller) -> m.ApproveKeyFormationResponse:
        out, key = uc.approve(self.s, c, _id(r.ceremony_id))
        return m.ApproveKeyFormationResponse(formation=formation(out), key=_key(key))

    @rpc("CeremonyService.AddKeyComponent")
    def AddKeyComponent(self, r: m.AddKeyComponentRequest, c: Caller) -> m.AddKeyComponentResponse:
        out, key = uc.add_component(self.s, c, _id(r.ceremony_id), bytes(r.wrapped_component), bytes(r.kcv))
        return m.AddKeyComponentResponse(formation=formation(out), key=_key(key))

    @rpc("CeremonyService.GetKeyFormation")
    def GetKeyFormation(self, r: m.GetKeyFormationRequest, c: Caller) -> m.GetKeyFormationResponse:
        return m.GetKeyFormationResponse(formation=formation(uc.get(self.s, c, _id(r.ceremony_id))))

    @rpc("CeremonyService.CancelKeyFormation")
    def CancelKeyFormation(self, r: m.CancelKeyFormationRequest, c: Caller) -> m.CancelKeyFormationResponse:
        out = uc.cancel(self.s, c, _id(r.ceremony_id), cv.text(r.reason, "reason", 200))
        return m.CancelKeyFormationResponse(formation=formation(out))
