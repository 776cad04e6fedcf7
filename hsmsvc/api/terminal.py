"""TerminalService: DUKPT terminals' MACs, data and initial keys over gRPC (issue 35)."""

from __future__ import annotations

from typing import Final

from hsmsvc.api import convert as cv
from hsmsvc.api.runner import Lane
from hsmsvc.api.status import Observed, rpc
from hsmsvc.errors import InvalidInput
from hsmsvc.hsm.commands import DukptDirection
from hsmsvc.service import terminal as uc
from hsmsvc.service.context import Caller, Services
from hsmsvc.service.pinkeys import DukptKeyRef
from hsmsvc_client.v1 import terminal_service_pb2 as m
from hsmsvc_client.v1 import terminal_service_pb2_grpc as g

_DIRECTION: Final = cv.EnumTable(m.DukptDirection, "DUKPT_DIRECTION_", DukptDirection)


def _transaction(r: m.DukptTransaction, present: bool) -> DukptKeyRef:
    if not present:
        raise InvalidInput("transaction", "required")
    return DukptKeyRef(cv.key_ref(r.bdk, "transaction.bdk", r.HasField("bdk")), bytes(r.ksn),
                       cv.ALGORITHM.optional(r.key_algorithm, "transaction.key_algorithm"))


class TerminalServicer(g.TerminalServiceServicer):
    def __init__(self, services: Services, observed: Observed) -> None:
        self.s = services
        self.observed = observed

    @rpc("TerminalService.VerifyDukptMac", Lane.TRANSACTION)
    def VerifyDukptMac(self, r: m.VerifyDukptMacRequest, c: Caller) -> m.VerifyDukptMacResponse:
        ok = uc.verify_mac(self.s, c, key=_transaction(r.transaction, r.HasField("transaction")),
                           direction=_DIRECTION.get(r.direction, "direction"),
                           padding=cv.MAC_PADDING.optional(r.padding, "padding"), data=bytes(r.data), mac=bytes(r.mac))
        return m.VerifyDukptMacResponse(verified=ok)

    @rpc("TerminalService.GenerateDukptMac", Lane.TRANSACTION)
    def GenerateDukptMac(self, r: m.GenerateDukptMacRequest, c: Caller) -> m.GenerateDukptMacResponse:
        tag = uc.generate_mac(self.s, c, key=_transaction(r.transaction, r.HasField("transaction")),
                              direction=_DIRECTION.get(r.direction, "direction"),
                              padding=cv.MAC_PADDING.optional(r.padding, "padding"), data=bytes(r.data))
        return m.GenerateDukptMacResponse(mac=tag)

    @rpc("TerminalService.DecryptDukptData", Lane.TRANSACTION)
    def DecryptDukptData(self, r: m.DecryptDukptDataRequest, c: Caller) -> m.DecryptDukptDataResponse:
        out = uc.decrypt_data(self.s, c, key=_transaction(r.transaction, r.HasField("transaction")),
                              direction=_DIRECTION.get(r.direction, "direction"), iv=bytes(r.iv),
                              data=bytes(r.ciphertext))
        return m.DecryptDukptDataResponse(plaintext=out)

    @rpc("TerminalService.EncryptDukptData", Lane.TRANSACTION)
    def EncryptDukptData(self, r: m.EncryptDukptDataRequest, c: Caller) -> m.EncryptDukptDataResponse:
        out = uc.encrypt_data(self.s, c, key=_transaction(r.transaction, r.HasField("transaction")),
                              direction=_DIRECTION.get(r.direction, "direction"), iv=bytes(r.iv),
                              data=bytes(r.plaintext))
        return m.EncryptDukptDataResponse(ciphertext=out)

    @rpc("TerminalService.ExportInitialKey")
    def ExportInitialKey(self, r: m.ExportInitialKeyRequest, c: Caller) -> m.ExportInitialKeyResponse:
        block, check, version = uc.export_initial_key(
            self.s, c, bdk=cv.key_ref(r.bdk, "bdk", r.HasField("bdk")), kek=cv.key_ref(r.kek, "kek", r.HasField("kek")),
            initial=bytes(r.initial_key_id))
        return m.ExportInitialKeyResponse(key_block=block.decode("ascii"), kcv=check, bdk_version=version)
