"""MacService: MACs over gRPC."""

from __future__ import annotations

from hsmsvc.api import convert as cv
from hsmsvc.api.batch import count, item_error, verdicts
from hsmsvc.api.runner import Lane
from hsmsvc.api.status import Observed, rpc, stream_rpc
from hsmsvc.errors import HsmsvcError
from hsmsvc.service import mac as uc
from hsmsvc.service.context import Caller, Services
from hsmsvc_client.v1 import mac_service_pb2 as m
from hsmsvc_client.v1 import mac_service_pb2_grpc as g


class MacServicer(g.MacServiceServicer):
    def __init__(self, services: Services, observed: Observed) -> None:
        self.s = services
        self.observed = observed

    def _generate(self, r: m.GenerateMacRequest, c: Caller) -> m.GenerateMacResponse:
        tag, version, sign_on = uc.generate_mac(
            self.s, c, key=cv.key_ref(r.key, "key", r.HasField("key")),
            algorithm=cv.MAC_ALGORITHM.get(r.algorithm, "algorithm"),
            padding=cv.MAC_PADDING.optional(r.padding, "padding"), data=bytes(r.data), length=r.mac_length,
        )
        return m.GenerateMacResponse(mac=tag, key_version=version, sign_on_required=sign_on)

    GenerateMac = rpc("MacService.GenerateMac", Lane.INLINE)(_generate)
    StreamGenerateMac = stream_rpc("MacService.StreamGenerateMac", m.StreamGenerateMacResponse, Lane.INLINE)(_generate)

    def _verify(self, r: m.VerifyMacRequest, c: Caller) -> m.VerifyMacResponse:
        ok = uc.verify_mac(
            self.s, c, key=cv.key_ref(r.key, "key", r.HasField("key")),
            algorithm=cv.MAC_ALGORITHM.get(r.algorithm, "algorithm"),
            padding=cv.MAC_PADDING.optional(r.padding, "padding"), data=bytes(r.data), mac=bytes(r.mac),
        )
        return m.VerifyMacResponse(verified=ok)

    VerifyMac = rpc("MacService.VerifyMac", Lane.INLINE)(_verify)
    StreamVerifyMac = stream_rpc("MacService.StreamVerifyMac", m.StreamVerifyMacResponse, Lane.INLINE)(_verify)

    @rpc("MacService.GenerateMacBatch")
    def GenerateMacBatch(self, r: m.GenerateMacBatchRequest, c: Caller) -> m.GenerateMacBatchResponse:
        count(r.messages, "messages")
        results, version = uc.generate_mac_batch(
            self.s, c, key=cv.key_ref(r.key, "key", r.HasField("key")),
            algorithm=cv.MAC_ALGORITHM.get(r.algorithm, "algorithm"),
            padding=cv.MAC_PADDING.optional(r.padding, "padding"), messages=[bytes(x) for x in r.messages],
            length=r.mac_length,
        )
        macs, errs = [], []
        for i, res in enumerate(results):
            if isinstance(res, HsmsvcError):
                errs.append(item_error(i, res))
                macs.append(b"")
            else:
                macs.append(res)
        return m.GenerateMacBatchResponse(macs=macs, errors=errs, key_version=version)

    @rpc("MacService.VerifyMacBatch")
    def VerifyMacBatch(self, r: m.VerifyMacBatchRequest, c: Caller) -> m.VerifyMacBatchResponse:
        count(r.messages, "messages")
        results = uc.verify_mac_batch(
            self.s, c, key=cv.key_ref(r.key, "key", r.HasField("key")),
            algorithm=cv.MAC_ALGORITHM.get(r.algorithm, "algorithm"),
            padding=cv.MAC_PADDING.optional(r.padding, "padding"), messages=[bytes(x) for x in r.messages],
            macs=[bytes(x) for x in r.macs],
        )
        verified, errs = verdicts(results)
        return m.VerifyMacBatchResponse(verified=verified, errors=errs)
