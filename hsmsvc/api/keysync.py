"""KeySyncService: key changes between sites and terminal sign-on over gRPC."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Mapping

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from hsmsvc.api import convert as cv
from hsmsvc.api.config import PeerConfig, TlsConfig
from hsmsvc.api.status import Observed, rpc
from hsmsvc.errors import BackendUnavailable, InvalidInput, KeyNotFound
from hsmsvc.service import keysync as uc
from hsmsvc.service.context import Caller, Services
from hsmsvc_client.v1 import key_sync_service_pb2 as m
from hsmsvc_client.v1 import key_sync_service_pb2_grpc as g

__all__ = ["KeySyncServicer", "PeerCourier", "confirmation_from_pb", "notice_from_pb", "notice_to_pb"]


def notice_to_pb(n: uc.KeyChangeNotice) -> m.KeyChangeNotice:
    issue, activate = Timestamp(), Timestamp()
    issue.FromDatetime(n.issued_at)
    activate.FromDatetime(n.activate_at)
    return m.KeyChangeNotice(
        zone=n.zone, sequence=n.sequence, issue_time=issue, activate_time=activate,
        grace_seconds=int(n.grace.total_seconds()), mac=n.mac,
        keys=[m.NoticeKey(key_id=k.key_id, version=k.version, key_type=cv.KEY_TYPE.to_pb[k.key_type],
                          algorithm=cv.ALGORITHM.to_pb[k.algorithm], usage=cv.KEY_USAGE.to_pb[k.usage],
                          mode_of_use=cv.MODE_OF_USE.to_pb[k.mode_of_use], wrapped_key=k.wrapped, kcv=k.kcv)
              for k in n.keys],
    )


def notice_from_pb(p: m.KeyChangeNotice, has: bool = True) -> uc.KeyChangeNotice:
    if not has:
        raise InvalidInput("notice", "required")
    keys = []
    for i, k in enumerate(p.keys):
        f = f"notice.keys[{i}]"
        keys.append(uc.NoticeKey(
            cv.text(k.key_id, f"{f}.key_id", 64), k.version, cv.KEY_TYPE.get(k.key_type, f"{f}.key_type"),
            cv.ALGORITHM.get(k.algorithm, f"{f}.algorithm"), cv.KEY_USAGE.get(k.usage, f"{f}.usage"),
            cv.MODE_OF_USE.get(k.mode_of_use, f"{f}.mode_of_use"), bytes(k.wrapped_key), bytes(k.kcv)))
    if len(keys) > 16:
        raise InvalidInput("notice.keys", "at most 16")
    return uc.KeyChangeNotice(
        cv.text(p.zone, "notice.zone", 64), cv.uint63(p.sequence, "notice.sequence"),
        cv.timestamp(p.issue_time, "notice.issue_time"), cv.timestamp(p.activate_time, "notice.activate_time"),
        timedelta(seconds=p.grace_seconds),
        tuple(keys), bytes(p.mac))


def confirmation_to_pb(c: uc.Confirmation) -> m.KeyChangeConfirmation:
    return m.KeyChangeConfirmation(zone=c.zone, sequence=c.sequence, kcvs=list(c.kcvs), mac=c.mac)


def acknowledgement_to_pb(a: uc.Acknowledgement) -> m.KeyChangeAcknowledgement:
    return m.KeyChangeAcknowledgement(zone=a.zone, sequence=a.sequence, mac=a.mac)


def acknowledgement_from_pb(p: m.KeyChangeAcknowledgement, has: bool = True) -> uc.Acknowledgement:
    if not has:
        raise InvalidInput("acknowledgement", "required")
    return uc.Acknowledgement(cv.text(p.zone, "acknowledgement.zone", 64), p.sequence, bytes(p.mac))


def confirmation_from_pb(p: m.KeyChangeConfirmation, has: bool = True) -> uc.Confirmation:
    if not has:
        raise InvalidInput("confirmation", "required")
    if len(p.kcvs) > 16:
        raise InvalidInput("confirmation.kcvs", "at most 16")
    return uc.Confirmation(cv.text(p.zone, "confirmation.zone", 64), cv.uint63(p.sequence, "confirmation.sequence"),
                           tuple(bytes(k) for k in p.kcvs), bytes(p.mac))


class PeerCourier:
    """Delivers notices to each zone's peer over mTLS, with this server's own certificate."""

    def __init__(self, peers: Mapping[str, PeerConfig], tls: TlsConfig | None, timeout: float = 5.0) -> None:
        self._peers = peers
        self._tls = tls
        self._timeout = timeout

    def deliver(self, notice: uc.KeyChangeNotice) -> uc.Confirmation:
        peer = self._peers.get(notice.zone)
        if peer is None:
            raise KeyNotFound("zone", "no peer configured for this zone")
        channel = self._channel(peer)
        try:
            r = g.KeySyncServiceStub(channel).ApplyKeyChange(
                m.ApplyKeyChangeRequest(notice=notice_to_pb(notice)), timeout=self._timeout)
        except grpc.RpcError as e:
            # A transport fault and the peer's refusal alike: the change is not confirmed
            # (service.keysync.start_key_change reports it in the answer).
            raise BackendUnavailable("peer", f"{peer.address}: {e.code().name}: {e.details()}") from None
        finally:
            channel.close()
        return confirmation_from_pb(r.confirmation)

    def acknowledge(self, ack: uc.Acknowledgement) -> None:
        peer = self._peers.get(ack.zone)
        if peer is None:
            raise KeyNotFound("zone", "no peer configured for this zone")
        channel = self._channel(peer)
        try:
            g.KeySyncServiceStub(channel).AcknowledgeKeyChange(
                m.AcknowledgeKeyChangeRequest(acknowledgement=acknowledgement_to_pb(ack)), timeout=self._timeout)
        except grpc.RpcError as e:
            raise BackendUnavailable("peer", f"{peer.address}: {e.code().name}: {e.details()}") from None
        finally:
            channel.close()

    def _channel(self, peer: PeerConfig) -> grpc.Channel:
        if self._tls is None:
            return grpc.insecure_channel(peer.address)
        creds = grpc.ssl_channel_credentials(
            Path(self._tls.client_ca).read_bytes(), Path(self._tls.key).read_bytes(),
            Path(self._tls.cert).read_bytes())
        opts = [("grpc.ssl_target_name_override", peer.server_name)] if peer.server_name else []
        return grpc.secure_channel(peer.address, creds, options=opts)


class KeySyncServicer(g.KeySyncServiceServicer):
    def __init__(self, services: Services, observed: Observed, settings: uc.SyncSettings,
                 courier: uc.Courier | None) -> None:
        self.s = services
        self.observed = observed
        self.settings = settings
        self.courier = courier

    @rpc("KeySyncService.StartKeyChange")
    def StartKeyChange(self, r: m.StartKeyChangeRequest, c: Caller) -> m.StartKeyChangeResponse:
        types = [cv.KEY_TYPE.get(t, "key_types") for t in r.key_types]
        if r.deliver and self.courier is None:
            raise InvalidInput("deliver", "no peers are configured on this server")
        notice, delivery = uc.start_key_change(self.s, c, settings=self.settings, zone=cv.text(r.zone, "zone", 64),
                                               key_types=types, courier=self.courier if r.deliver else None)
        return m.StartKeyChangeResponse(notice=notice_to_pb(notice), confirmed=delivery.confirmed,
                                        delivery_error=delivery.error)

    @rpc("KeySyncService.ApplyKeyChange")
    def ApplyKeyChange(self, r: m.ApplyKeyChangeRequest, c: Caller) -> m.ApplyKeyChangeResponse:
        conf = uc.apply_key_change(self.s, c, self.settings, notice_from_pb(r.notice, r.HasField("notice")))
        return m.ApplyKeyChangeResponse(confirmation=confirmation_to_pb(conf))

    @rpc("KeySyncService.ConfirmKeyChange")
    def ConfirmKeyChange(self, r: m.ConfirmKeyChangeRequest, c: Caller) -> m.ConfirmKeyChangeResponse:
        keys, ack = uc.confirm_key_change(self.s, c, self.settings,
                                          confirmation_from_pb(r.confirmation, r.HasField("confirmation")))
        return m.ConfirmKeyChangeResponse(keys=[cv.key_info(k) for k in keys],
                                          acknowledgement=acknowledgement_to_pb(ack))

    @rpc("KeySyncService.AcknowledgeKeyChange")
    def AcknowledgeKeyChange(self, r: m.AcknowledgeKeyChangeRequest, c: Caller) -> m.AcknowledgeKeyChangeResponse:
        keys = uc.acknowledge_key_change(self.s, c, self.settings, acknowledgement_from_pb(
            r.acknowledgement, r.HasField("acknowledgement")))
        return m.AcknowledgeKeyChangeResponse(keys=[cv.key_info(k) for k in keys])

    @rpc("KeySyncService.SignOn")
    def SignOn(self, r: m.SignOnRequest, c: Caller) -> m.SignOnResponse:
        out = uc.sign_on(self.s, c, self.settings, cv.key_ref(r.tmk, "tmk", r.HasField("tmk")),
                         cv.text(r.terminal_id, "terminal_id", 60))
        return m.SignOnResponse(keys=[
            m.SignOnKey(key_id=k.key_id, version=k.version, key_type=cv.KEY_TYPE.to_pb[k.cryptogram.spec.key_type],
                        wrapped_key=w, kcv=k.cryptogram.kcv, algorithm=cv.ALGORITHM.to_pb[k.cryptogram.spec.algorithm],
                        usage=cv.KEY_USAGE.to_pb[k.cryptogram.spec.usage]) for k, w in out])
