"""DataService: field encryption over gRPC."""

from __future__ import annotations

from hsmsvc.api import convert as cv
from hsmsvc.api.batch import count, item_error
from hsmsvc.api.runner import Lane
from hsmsvc.api.status import Observed, rpc, stream_rpc
from hsmsvc.errors import HsmsvcError, InvalidInput
from hsmsvc.service import data as uc
from hsmsvc.service.context import Caller, Services
from hsmsvc_client.v1 import data_service_pb2 as m
from hsmsvc_client.v1 import data_service_pb2_grpc as g


class DataServicer(g.DataServiceServicer):
    def __init__(self, services: Services, observed: Observed) -> None:
        self.s = services
        self.observed = observed

    def _encrypt(self, r: m.EncryptRequest, c: Caller) -> m.EncryptResponse:
        p = cv.field_params(r.cipher, "cipher", r.HasField("cipher"))
        ct, iv, version = uc.encrypt(self.s, c, key=cv.key_ref(r.key, "key", r.HasField("key")), mode=p.mode,
                                     padding=p.padding, iv=p.iv, aad=p.aad, data=bytes(r.plaintext))
        return m.EncryptResponse(ciphertext=ct, iv=iv, key_version=version)

    Encrypt = rpc("DataService.Encrypt", Lane.INLINE)(_encrypt)
    StreamEncrypt = stream_rpc("DataService.StreamEncrypt", m.StreamEncryptResponse, Lane.INLINE)(_encrypt)

    @rpc("DataService.Decrypt", Lane.INLINE)
    def Decrypt(self, r: m.DecryptRequest, c: Caller) -> m.DecryptResponse:
        p = cv.field_params(r.cipher, "cipher", r.HasField("cipher"))
        pt = uc.decrypt(self.s, c, key=cv.key_ref(r.key, "key", r.HasField("key")), mode=p.mode, padding=p.padding,
                        iv=p.iv, aad=p.aad, data=bytes(r.ciphertext))
        return m.DecryptResponse(plaintext=pt)

    @rpc("DataService.Digest")
    def Digest(self, r: m.DigestRequest, c: Caller) -> m.DigestResponse:
        algorithm = cv.HASH_ALGORITHM.get(r.algorithm, "algorithm")
        return m.DigestResponse(digest=uc.digest(self.s, algorithm, bytes(r.data)))

    @rpc("DataService.ReEncrypt")
    def ReEncrypt(self, r: m.ReEncryptRequest, c: Caller) -> m.ReEncryptResponse:
        src = cv.field_params(r.source_cipher, "source_cipher", r.HasField("source_cipher"))
        dst = cv.field_params(r.destination_cipher, "destination_cipher", r.HasField("destination_cipher"))
        ct, iv, version = uc.reencrypt(
            self.s, c, source=cv.key_ref(r.source_key, "source_key", r.HasField("source_key")), source_params=src,
            destination=cv.key_ref(r.destination_key, "destination_key", r.HasField("destination_key")), mode=dst.mode,
            padding=dst.padding, aad=dst.aad, data=bytes(r.ciphertext),
        )
        return m.ReEncryptResponse(ciphertext=ct, iv=iv, destination_key_version=version)

    @rpc("DataService.EncryptBatch")
    def EncryptBatch(self, r: m.EncryptBatchRequest, c: Caller) -> m.EncryptBatchResponse:
        p = cv.field_params(r.cipher, "cipher", r.HasField("cipher"))
        count(r.plaintexts, "plaintexts")
        if p.iv:
            raise InvalidInput("cipher.iv", "empty: each field gets a fresh IV")
        results, version = uc.encrypt_batch(self.s, c, key=cv.key_ref(r.key, "key", r.HasField("key")), mode=p.mode,
                                            padding=p.padding, aad=p.aad, fields=[bytes(x) for x in r.plaintexts])
        cts, ivs, errs = [], [], []
        for i, res in enumerate(results):
            if isinstance(res, HsmsvcError):
                errs.append(item_error(i, res))
                cts.append(b"")
                ivs.append(b"")
            else:
                cts.append(res[0])
                ivs.append(res[1])
        return m.EncryptBatchResponse(ciphertexts=cts, ivs=ivs, errors=errs, key_version=version)
