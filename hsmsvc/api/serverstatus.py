"""StatusService: how a running server stands, for ``hsmsvc status --server`` (auditor role)."""

from __future__ import annotations

from datetime import datetime, timezone

from google.protobuf.timestamp_pb2 import Timestamp

from hsmsvc.api import convert as cv
from hsmsvc.api.status import Observed, rpc
from hsmsvc.service import status as uc
from hsmsvc.service.context import Caller, Services
from hsmsvc_client.v1 import status_service_pb2 as m
from hsmsvc_client.v1 import status_service_pb2_grpc as g


def _ts(value: datetime) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(value)
    return t


class StatusServicer(g.StatusServiceServicer):
    """``backend_kind`` and ``member_kinds`` name the configured backend (soft, pkcs11, pool)."""

    def __init__(self, services: Services, observed: Observed, *, backend_kind: str,
                 member_kinds: tuple[str, ...]) -> None:
        self.s = services
        self.observed = observed
        self.backend_kind = backend_kind
        self.member_kinds = member_kinds
        self.started_at = datetime.now(timezone.utc)

    @rpc("StatusService.GetServerStatus")
    def GetServerStatus(self, r: m.GetServerStatusRequest, c: Caller) -> m.GetServerStatusResponse:
        # The request has no fields to read, so nothing would notice an undecodable one: asked
        # here, which refuses it (INVALID_ARGUMENT) as every other method's first field read does.
        r.ListFields()
        st = uc.server_status(self.s, c, backend_kind=self.backend_kind, member_kinds=self.member_kinds,
                              started_at=self.started_at)
        head = st.audit_head
        return m.GetServerStatusResponse(
            version=st.version,
            backend=m.BackendStatus(kind=st.backend_kind, lmk_kcv=st.lmk_kcv, lmk_algorithm=st.lmk_algorithm, members=[
                m.BackendMember(index=b.index, kind=b.kind, healthy=b.healthy, restarts=b.restarts)
                for b in st.members]),
            store=m.StoreStatus(kind=st.store_kind, url=st.store_url, schema_revision=st.revision.current or "",
                                schema_head=st.revision.head),
            audit_head=m.AuditHead() if head is None else m.AuditHead(
                sequence=head.seq, hash=head.hash, time=_ts(datetime.fromisoformat(head.at))),
            key_counts=[m.KeyCount(key_type=cv.KEY_TYPE.to_pb[t], state=cv.KEY_STATE.to_pb[s], count=n)
                        for (t, s), n in sorted(st.key_counts.items(), key=lambda kv: (kv[0][0].value,
                                                                                        kv[0][1].value))],
            start_time=_ts(st.started_at),
            crypto=m.CryptoModeStatus(national_only=st.national_only, non_national_keys=st.non_national_keys),
        )
