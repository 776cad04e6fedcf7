"""KeyService: key management over gRPC."""

from __future__ import annotations

from hsmsvc.api import convert as cv
from hsmsvc.api.status import Observed, rpc
from hsmsvc.hsm.commands import Sm2Exchange, Sm2Role
from hsmsvc.keys.model import StoredKey
from hsmsvc.service import keys as uc
from hsmsvc.service import signatures as sig_uc
from hsmsvc.service.context import Caller, Services
from hsmsvc.service.keysync import SyncSettings
from hsmsvc.service.rotation import next_rotation
from hsmsvc_client.v1 import types_pb2 as pb
from hsmsvc_client.v1 import key_service_pb2 as m
from hsmsvc_client.v1 import key_service_pb2_grpc as g


def _template_id(t: m.KeyTemplate) -> str:
    return cv.text(t.key_id, "template.key_id", 64) or uc.new_key_id()


class KeyServicer(g.KeyServiceServicer):
    def __init__(self, services: Services, observed: Observed, rotation: SyncSettings | None = None) -> None:
        self.s = services
        self.observed = observed
        self.rotation = rotation
        """The server's rotation rules, for KeyInfo.next_rotation_time."""

    def _info(self, key: StoredKey) -> pb.KeyInfo:
        return cv.key_info(key, next_rotation=next_rotation(key, self.rotation))

    @rpc("KeyService.GenerateKey")
    def GenerateKey(self, r: m.GenerateKeyRequest, c: Caller) -> m.GenerateKeyResponse:
        t = r.template
        spec = cv.key_spec(t, _template_id(t))
        key = uc.generate_key(self.s, c, spec=spec, alias=cv.text(t.alias, "template.alias") or None,
                              lifetime_s=t.lifetime_seconds, max_uses=cv.uint63(t.max_uses, "template.max_uses"),
                              legacy_types=cv.legacy_types(t), legacy_form=cv.legacy_form(t))
        return m.GenerateKeyResponse(key=self._info(key))

    @rpc("KeyService.ImportKey")
    def ImportKey(self, r: m.ImportKeyRequest, c: Caller) -> m.ImportKeyResponse:
        t = r.template
        spec = cv.import_spec(t, _template_id(t))
        key = uc.import_key(self.s, c, kek=cv.key_ref(r.kek, "kek", r.HasField("kek")), wrapped=bytes(r.wrapped_key),
                            kcv=bytes(r.kcv) or None, spec=spec, alias=cv.text(t.alias, "template.alias") or None,
                            legacy_types=cv.legacy_types(t), legacy_form=cv.legacy_form(t),
                            lifetime_s=t.lifetime_seconds,
                            max_uses=cv.uint63(t.max_uses, "template.max_uses"),
                            kcv_method=cv.KCV_METHOD.optional(r.kcv_method, "kcv_method"))
        return m.ImportKeyResponse(key=self._info(key))

    @rpc("KeyService.ImportPublicKey")
    def ImportPublicKey(self, r: m.ImportPublicKeyRequest, c: Caller) -> m.ImportPublicKeyResponse:
        t = r.template
        key = sig_uc.import_public_key(
            self.s, c, spec=cv.key_spec(t, _template_id(t)), public_key=bytes(r.public_key),
            alias=cv.text(t.alias, "template.alias") or None, lifetime_s=t.lifetime_seconds,
            max_uses=cv.uint63(t.max_uses, "template.max_uses"))
        return m.ImportPublicKeyResponse(key=self._info(key))

    @rpc("KeyService.AgreeKey")
    def AgreeKey(self, r: m.AgreeKeyRequest, c: Caller) -> m.AgreeKeyResponse:
        t = r.template
        spec = cv.key_spec(t, _template_id(t))
        key, confirmation = uc.agree_key(
            self.s, c, kak=cv.key_ref(r.kak, "kak", r.HasField("kak")),
            peer_public_key=bytes(r.peer_public_key), peer_fingerprint=bytes(r.peer_fingerprint),
            shared_info=bytes(r.shared_info), spec=spec,
            alias=cv.text(t.alias, "template.alias") or None, legacy_types=cv.legacy_types(t),
            legacy_form=cv.legacy_form(t), lifetime_s=t.lifetime_seconds,
            max_uses=cv.uint63(t.max_uses, "template.max_uses"),
            sm2=_sm2_exchange(r) if r.HasField("sm2") else None)
        return m.AgreeKeyResponse(key=self._info(key), confirmation=confirmation)

    @rpc("KeyService.StartKeyAgreement")
    def StartKeyAgreement(self, r: m.StartKeyAgreementRequest, c: Caller) -> m.StartKeyAgreementResponse:
        started, public = uc.start_key_agreement(self.s, c, cv.key_ref(r.kak, "kak", r.HasField("kak")))
        return m.StartKeyAgreementResponse(agreement_id=started.agreement_id, ephemeral_public_key=public,
                                           expires_at=cv.ts(started.expires_at))

    @rpc("KeyService.ExportKey")
    def ExportKey(self, r: m.ExportKeyRequest, c: Caller) -> m.ExportKeyResponse:
        wrapped, kcv = uc.export_key(self.s, c, cv.key_ref(r.kek, "kek", r.HasField("kek")),
                                     cv.key_ref(r.key, "key", r.HasField("key")),
                                     cv.KCV_METHOD.optional(r.kcv_method, "kcv_method"))
        return m.ExportKeyResponse(wrapped_key=wrapped, kcv=kcv)

    @rpc("KeyService.DiversifyKey")
    def DiversifyKey(self, r: m.DiversifyKeyRequest, c: Caller) -> m.DiversifyKeyResponse:
        block, check, version = uc.diversify_key(
            self.s, c, master=cv.key_ref(r.master_key, "master_key", r.HasField("master_key")),
            kek=cv.key_ref(r.kek, "kek", r.HasField("kek")), data=bytes(r.diversification_data),
            key_type=cv.KEY_TYPE.get(r.key_type, "key_type"), usage=cv.KEY_USAGE.get(r.usage, "usage"),
            mode=cv.MODE_OF_USE.get(r.mode_of_use, "mode_of_use"))
        return m.DiversifyKeyResponse(key_block=block.decode("ascii"), kcv=check, master_version=version)

    @rpc("KeyService.ImportTr34Key")
    def ImportTr34Key(self, r: m.ImportTr34KeyRequest, c: Caller) -> m.ImportTr34KeyResponse:
        t = r.template
        spec = cv.key_spec(t, _template_id(t))
        key = uc.import_tr34_key(self.s, c, krd=cv.key_ref(r.krd_key, "krd_key", r.HasField("krd_key")),
                                 token=bytes(r.token), kdh_certificate=bytes(r.kdh_certificate),
                                 ca_certificate=bytes(r.ca_certificate), kcv=bytes(r.kcv) or None, spec=spec,
                                 alias=cv.text(t.alias, "template.alias") or None, lifetime_s=t.lifetime_seconds,
                                 max_uses=cv.uint63(t.max_uses, "template.max_uses"))
        return m.ImportTr34KeyResponse(key=self._info(key))

    @rpc("KeyService.ExportTr34Key")
    def ExportTr34Key(self, r: m.ExportTr34KeyRequest, c: Caller) -> m.ExportTr34KeyResponse:
        token, kcv = uc.export_tr34_key(self.s, c, kdh=cv.key_ref(r.kdh_key, "kdh_key", r.HasField("kdh_key")),
                                        kdh_certificate=bytes(r.kdh_certificate),
                                        key=cv.key_ref(r.key, "key", r.HasField("key")),
                                        krd_certificate=bytes(r.krd_certificate),
                                        ca_certificate=bytes(r.ca_certificate))
        return m.ExportTr34KeyResponse(token=token, kcv=kcv)

    @rpc("KeyService.GetKey")
    def GetKey(self, r: m.GetKeyRequest, c: Caller) -> m.GetKeyResponse:
        key = uc.get_key(self.s, c, cv.key_ref(r.key, "key", r.HasField("key")))
        return m.GetKeyResponse(key=self._info(key))

    @rpc("KeyService.ListKeys")
    def ListKeys(self, r: m.ListKeysRequest, c: Caller) -> m.ListKeysResponse:
        keys, token = uc.list_keys(
            self.s, c, key_type=cv.KEY_TYPE.optional(r.key_type, "key_type"), zone=cv.text(r.zone, "zone", 64) or None,
            page_size=r.page_size, page_token=cv.text(r.page_token, "page_token", 256),
        )
        return m.ListKeysResponse(keys=[self._info(k) for k in keys], next_page_token=token)

    @rpc("KeyService.RotateKey")
    def RotateKey(self, r: m.RotateKeyRequest, c: Caller) -> m.RotateKeyResponse:
        key, previous = uc.rotate_key(self.s, c, cv.key_ref(r.key, "key", r.HasField("key")),
                                      r.lifetime_seconds, cv.uint63(r.max_uses, "max_uses"))
        return m.RotateKeyResponse(key=self._info(key), previous_version=previous)

    @rpc("KeyService.UpdateKeyState")
    def UpdateKeyState(self, r: m.UpdateKeyStateRequest, c: Caller) -> m.UpdateKeyStateResponse:
        key = uc.update_key_state(self.s, c, cv.key_ref(r.key, "key", r.HasField("key")),
                                  cv.KEY_STATE.get(r.state, "state"), cv.text(r.reason, "reason", 200))
        return m.UpdateKeyStateResponse(key=self._info(key))

    @rpc("KeyService.GetKeyCheckValue")
    def GetKeyCheckValue(self, r: m.GetKeyCheckValueRequest, c: Caller) -> m.GetKeyCheckValueResponse:
        kcv, version = uc.key_check_value(self.s, c, cv.key_ref(r.key, "key", r.HasField("key")),
                                          cv.KCV_METHOD.optional(r.kcv_method, "kcv_method"))
        return m.GetKeyCheckValueResponse(kcv=kcv, version=version)

    @rpc("KeyService.GetPublicKey")
    def GetPublicKey(self, r: m.GetPublicKeyRequest, c: Caller) -> m.GetPublicKeyResponse:
        der, key = uc.public_key(self.s, c, cv.key_ref(r.key, "key", r.HasField("key")))
        spec = key.cryptogram.spec
        return m.GetPublicKeyResponse(
            public_key=der, algorithm=cv.ALGORITHM.to_pb[spec.algorithm], fingerprint=key.cryptogram.kcv,
            key_id=spec.key_id, version=spec.version,
        )


_SM2_ROLE = cv.EnumTable(m.Sm2KeyExchangeRole, "SM2_KEY_EXCHANGE_ROLE_", Sm2Role)


def _sm2_exchange(r: m.AgreeKeyRequest) -> tuple[str, Sm2Exchange]:
    x = r.sm2
    ids = {"own_id": bytes(x.own_id), "peer_id": bytes(x.peer_id)}
    return x.agreement_id, Sm2Exchange(
        role=_SM2_ROLE.get(x.role, "sm2.role"), peer_public_key=bytes(r.peer_public_key),
        peer_fingerprint=bytes(r.peer_fingerprint), peer_ephemeral_public_key=bytes(x.peer_ephemeral_public_key),
        peer_confirmation=bytes(x.peer_confirmation), **{k: v for k, v in ids.items() if v})
