"""SignatureService and CoSigningService over gRPC; ImportPublicKey is KeyService's (api/keys.py)."""

from __future__ import annotations

from typing import Final

from hsmsvc.api import convert as cv
from hsmsvc.api.status import Observed, rpc
from hsmsvc.errors import InvalidInput
from hsmsvc.hsm.commands import SignedData
from hsmsvc.hsm.model import KeySpec
from hsmsvc.service import cosign as co
from hsmsvc.service import keys as key_uc
from hsmsvc.service import signatures as uc
from hsmsvc.service.context import Caller, Services
from hsmsvc.types import Algorithm, Exportability, KeyType, KeyUsage, ModeOfUse
from hsmsvc_client.v1 import signature_service_pb2 as m
from hsmsvc_client.v1 import signature_service_pb2_grpc as g

__all__ = ["CoSigningServicer", "SignatureServicer"]

_PURPOSE: Final = {
    m.CO_SIGNING_PURPOSE_SIGN: (KeyUsage.DIGITAL_SIGNATURE, ModeOfUse.SIGN_ONLY),
    m.CO_SIGNING_PURPOSE_DECRYPT: (KeyUsage.ASYMMETRIC_DATA_ENCRYPTION, ModeOfUse.DECRYPT_ONLY),
}


def _data(d: m.SignedData, has: bool) -> SignedData:
    if not has:
        raise InvalidInput("data", "required")
    which = d.WhichOneof("data")
    if which is None:
        raise InvalidInput("data", "a message or a digest")
    return SignedData(message=bytes(d.message) if which == "message" else None,
                      digest=bytes(d.digest) if which == "digest" else None, user_id=bytes(d.user_id) or None)


class SignatureServicer(g.SignatureServiceServicer):
    def __init__(self, services: Services, observed: Observed) -> None:
        self.s = services
        self.observed = observed

    @rpc("SignatureService.Sign")
    def Sign(self, r: m.SignRequest, c: Caller) -> m.SignResponse:
        sig, key = uc.sign(self.s, c, key=cv.key_ref(r.key, "key", r.HasField("key")),
                           data=_data(r.data, r.HasField("data")))
        return m.SignResponse(signature=sig, key_version=key.version,
                              algorithm=cv.ALGORITHM.to_pb[key.cryptogram.spec.algorithm])

    @rpc("SignatureService.Verify")
    def Verify(self, r: m.VerifyRequest, c: Caller) -> m.VerifyResponse:
        ok = uc.verify(self.s, c, key=cv.key_ref(r.key, "key", r.HasField("key")),
                       data=_data(r.data, r.HasField("data")), signature=bytes(r.signature))
        return m.VerifyResponse(verified=ok)

    @rpc("SignatureService.GenerateCsr")
    def GenerateCsr(self, r: m.GenerateCsrRequest, c: Caller) -> m.GenerateCsrResponse:
        der = uc.generate_csr(self.s, c, key=cv.key_ref(r.key, "key", r.HasField("key")),
                              subject=cv.text(r.subject, "subject", 1024), user_id=bytes(r.user_id) or None)
        return m.GenerateCsrResponse(csr=der)


class CoSigningServicer(g.CoSigningServiceServicer):
    """CoSign and CoDecrypt run on the use-case lane, not the two-thread transaction lane: their audit
    rows go through the group commit (service/auditqueue.py), which wants many callers at once."""

    def __init__(self, services: Services, observed: Observed) -> None:
        self.s = services
        self.observed = observed

    @rpc("CoSigningService.CreateCoSigningKey")
    def CreateCoSigningKey(self, r: m.CreateCoSigningKeyRequest,
                           c: Caller) -> m.CreateCoSigningKeyResponse:
        purpose = _PURPOSE.get(r.purpose)
        if purpose is None:
            raise InvalidInput("purpose", "SIGN or DECRYPT")
        usage, mode = purpose
        key_id = cv.text(r.key_id, "key_id", 64) or key_uc.new_key_id()
        spec = KeySpec(key_id, 1, KeyType.CSK, Algorithm.SM2, usage, mode, Exportability.NON_EXPORTABLE,
                       cv.text(r.zone, "zone", 64))
        key, share = co.create_key(self.s, c, spec=spec, client_share=bytes(r.client_share),
                                   alias=cv.text(r.alias, "alias") or None, lifetime_s=r.lifetime_seconds,
                                   max_uses=cv.uint63(r.max_uses, "max_uses"))
        return m.CreateCoSigningKeyResponse(key=cv.key_info(key), server_share=share.server_share,
                                            public_key=share.public_key)

    @rpc("CoSigningService.CoSign")
    def CoSign(self, r: m.CoSignRequest, c: Caller) -> m.CoSignResponse:
        partial, version = co.cosign(self.s, c, key=cv.key_ref(r.key, "key", r.HasField("key")),
                                     digest=bytes(r.digest), client_point=bytes(r.client_point))
        return m.CoSignResponse(r=partial[:32], s2=partial[32:64], s3=partial[64:], key_version=version)

    @rpc("CoSigningService.CoDecrypt")
    def CoDecrypt(self, r: m.CoDecryptRequest, c: Caller) -> m.CoDecryptResponse:
        out = co.codecrypt(self.s, c, key=cv.key_ref(r.key, "key", r.HasField("key")),
                           client_point=bytes(r.client_point))
        return m.CoDecryptResponse(server_point=out)
