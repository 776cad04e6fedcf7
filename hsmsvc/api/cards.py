"""CardService: card verification values and EMV cryptograms over gRPC (issue 35)."""

from __future__ import annotations

from typing import Final

from hsmsvc.api import convert as cv
from hsmsvc.api.batch import count, item_error, verdicts
from hsmsvc.api.runner import Lane
from hsmsvc.api.status import Observed, rpc
from hsmsvc.crypto.cvv import CvvKind
from hsmsvc.crypto.emv import MasterKeyOption, ScriptEncryption, ScriptKeyMethod, SessionKeyMethod
from hsmsvc.errors import HsmsvcError, InvalidInput
from hsmsvc.hsm.commands import ArpcMethod, ArqcData, CvvData, DynamicCvvData, DynamicKind, ScriptData
from hsmsvc.service import cardvalues as uc
from hsmsvc.service import emv as emv_uc
from hsmsvc.keys.model import KeyRef
from hsmsvc.service.context import Caller, Services
from hsmsvc_client.v1 import card_service_pb2 as m
from hsmsvc_client.v1 import card_service_pb2_grpc as g

_KINDS: Final = cv.EnumTable(m.CvvKind, "CVV_KIND_", CvvKind)
_DYNAMIC: Final = cv.EnumTable(m.DynamicCvvKind, "DYNAMIC_CVV_KIND_", DynamicKind)
_OPTIONS: Final = cv.EnumTable(m.MasterKeyDerivation, "MASTER_KEY_DERIVATION_OPTION_", MasterKeyOption)
_SESSION: Final = cv.EnumTable(m.SessionKeyDerivation, "SESSION_KEY_DERIVATION_", SessionKeyMethod)
_SCRIPT_KEYS: Final = cv.EnumTable(m.ScriptKeyDerivation, "SCRIPT_KEY_DERIVATION_", ScriptKeyMethod)
_SCRIPT_ENCRYPTION: Final = cv.EnumTable(m.ScriptEncryption, "SCRIPT_ENCRYPTION_", ScriptEncryption)


def _card(c: m.CardData, field: str = "card") -> CvvData:
    kind = _KINDS.get(c.kind, f"{field}.kind")
    return CvvData(kind=kind, pan=cv.text(c.pan, f"{field}.pan", 19), expiry=cv.text(c.expiry, f"{field}.expiry", 4),
                   service_code=cv.text(c.service_code, f"{field}.service_code", 3) or None)


def _card_key(c: m.CardKey) -> tuple[str, str, MasterKeyOption]:
    option = _OPTIONS.get(c.derivation, "card.derivation")
    return cv.text(c.pan, "card.pan", 19), cv.text(c.psn, "card.psn", 2) or "00", option


def _authorisation(a: m.Authorisation) -> ArqcData:
    pan, psn, option = _card_key(a.card)
    method = _SESSION.get(a.session_key, "session_key")
    arpc, arc, csu, prop = ArpcMethod.NONE, b"", b"", b""
    which = a.WhichOneof("arpc")
    if which == "arpc_method_1":
        arpc = ArpcMethod.METHOD_1_CARD_KEY if a.arpc_method_1.card_key else ArpcMethod.METHOD_1
        arc = bytes(a.arpc_method_1.arc)
    elif which == "arpc_method_2":
        arpc, csu, prop = ArpcMethod.METHOD_2, bytes(a.arpc_method_2.csu), bytes(a.arpc_method_2.proprietary_data)
    return ArqcData(pan=pan, psn=psn, option=option, method=method, atc=bytes(a.atc), data=bytes(a.transaction_data),
                    arqc=bytes(a.arqc), un=bytes(a.unpredictable_number) or None, arpc=arpc, arc=arc, csu=csu,
                    proprietary_data=prop)


def _script(sc: m.IssuerScript, present: bool, data: bytes = b"") -> ScriptData:
    if not present:
        raise InvalidInput("script", "required")
    pan, psn, option = _card_key(sc.card)
    return ScriptData(pan=pan, psn=psn, option=option, method=_SCRIPT_KEYS.get(sc.session_key, "script.session_key"),
                      atc=bytes(sc.atc), arqc=bytes(sc.arqc), command=bytes(sc.command), data=data,
                      encryption=_SCRIPT_ENCRYPTION.optional(sc.encryption, "script.encryption"),
                      mac_over_transaction=sc.mac_over_transaction, mac_length=sc.mac_length or 8)


def _optional_key(r: object, field: str) -> KeyRef | None:
    return cv.key_ref(getattr(r, field), field, True) if r.HasField(field) else None  # type: ignore[attr-defined]


class CardServicer(g.CardServiceServicer):
    def __init__(self, services: Services, observed: Observed) -> None:
        self.s = services
        self.observed = observed

    @rpc("CardService.GenerateCvv", Lane.TRANSACTION)
    def GenerateCvv(self, r: m.GenerateCvvRequest, c: Caller) -> m.GenerateCvvResponse:
        value, version = uc.generate_cvv(self.s, c, key=cv.key_ref(r.key, "key", r.HasField("key")),
                                         data=_card(r.card), length=r.length or 3)
        return m.GenerateCvvResponse(cvv=value, key_version=version)

    @rpc("CardService.VerifyCvv", Lane.TRANSACTION)
    def VerifyCvv(self, r: m.VerifyCvvRequest, c: Caller) -> m.VerifyCvvResponse:
        ok = uc.verify_card_value(self.s, c, key=cv.key_ref(r.key, "key", r.HasField("key")), item=_card(r.card),
                                  value=cv.text(r.cvv, "cvv", 5))
        return m.VerifyCvvResponse(verified=ok)

    @rpc("CardService.VerifyCvvBatch")
    def VerifyCvvBatch(self, r: m.VerifyCvvBatchRequest, c: Caller) -> m.VerifyCvvBatchResponse:
        count(r.cards, "cards")
        if len(r.cvvs) != len(r.cards):
            raise InvalidInput("cvvs", "one per card")
        items: list[CvvData | HsmsvcError] = []
        for i, card in enumerate(r.cards):
            try:
                items.append(_card(card, f"cards[{i}]"))
            except HsmsvcError as e:
                items.append(e)
        good = [j for j, x in enumerate(items) if not isinstance(x, HsmsvcError)]
        results: list[bool | HsmsvcError] = [x if isinstance(x, HsmsvcError) else False for x in items]
        checked = uc.verify_card_value_batch(
            self.s, c, key=cv.key_ref(r.key, "key", r.HasField("key")),
            items=[items[j] for j in good],  # type: ignore[misc]
            values=[cv.text(r.cvvs[j], "cvvs", 5) for j in good])
        for j, res in zip(good, checked):
            results[j] = res
        verified, errs = verdicts(results)
        return m.VerifyCvvBatchResponse(verified=verified, errors=errs)

    @rpc("CardService.VerifyDynamicCvv", Lane.TRANSACTION)
    def VerifyDynamicCvv(self, r: m.VerifyDynamicCvvRequest, c: Caller) -> m.VerifyDynamicCvvResponse:
        kind = _DYNAMIC.get(r.kind, "kind")
        pan, psn, option = _card_key(r.card)
        item = DynamicCvvData(kind=kind, pan=pan, psn=psn, option=option, atc=bytes(r.atc),
                              expiry=cv.text(r.expiry, "expiry", 4), service_code=cv.text(r.service_code,
                                                                                        "service_code", 3),
                              track=bytes(r.track), unpredictable_number=bytes(r.unpredictable_number))
        ok = uc.verify_card_value(self.s, c, key=cv.key_ref(r.key, "key", r.HasField("key")), item=item,
                                  value=cv.text(r.value, "value", 5))
        return m.VerifyDynamicCvvResponse(verified=ok)

    def _arqc(self, r: m.VerifyArqcRequest, c: Caller) -> m.VerifyArqcResponse:
        arpc, version = emv_uc.verify_arqc(self.s, c, key=cv.key_ref(r.key, "key", r.HasField("key")),
                                           item=_authorisation(r.authorisation))
        return m.VerifyArqcResponse(verified=arpc is not None, arpc=arpc or b"", key_version=version)

    VerifyArqc = rpc("CardService.VerifyArqc", Lane.INLINE)(_arqc)

    @rpc("CardService.VerifyArqcBatch")
    def VerifyArqcBatch(self, r: m.VerifyArqcBatchRequest, c: Caller) -> m.VerifyArqcBatchResponse:
        count(r.authorisations, "authorisations")
        parsed: list[ArqcData | HsmsvcError] = []
        for a in r.authorisations:
            try:
                parsed.append(_authorisation(a))
            except HsmsvcError as e:
                parsed.append(e)
        good = [j for j, x in enumerate(parsed) if isinstance(x, ArqcData)]
        checked, version = emv_uc.verify_arqc_batch(self.s, c, key=cv.key_ref(r.key, "key", r.HasField("key")),
                                                    items=[parsed[j] for j in good])  # type: ignore[misc]
        results: list[bytes | None | HsmsvcError] = [x if isinstance(x, HsmsvcError) else None for x in parsed]
        for j, res in zip(good, checked):
            results[j] = res
        arpcs, verified, errs = [], [], []
        for i, res in enumerate(results):
            if isinstance(res, HsmsvcError):
                errs.append(item_error(i, res))
            verified.append(isinstance(res, bytes))
            arpcs.append(res if isinstance(res, bytes) else b"")
        return m.VerifyArqcBatchResponse(verified=verified, arpcs=arpcs, errors=errs, key_version=version)

    @rpc("CardService.GenerateIssuerScript", Lane.TRANSACTION)
    def GenerateIssuerScript(self, r: m.GenerateIssuerScriptRequest, c: Caller) -> m.GenerateIssuerScriptResponse:
        out = emv_uc.generate_issuer_script(
            self.s, c, integrity=cv.key_ref(r.integrity_key, "integrity_key", r.HasField("integrity_key")),
            script=_script(r.script, r.HasField("script"), bytes(r.data)))
        return m.GenerateIssuerScriptResponse(command=out)

    @rpc("CardService.GeneratePinChangeScript", Lane.TRANSACTION)
    def GeneratePinChangeScript(self, r: m.GeneratePinChangeScriptRequest,
                                c: Caller) -> m.GeneratePinChangeScriptResponse:
        out = emv_uc.generate_pin_change_script(
            self.s, c, integrity=cv.key_ref(r.integrity_key, "integrity_key", r.HasField("integrity_key")),
            confidentiality=cv.key_ref(r.confidentiality_key, "confidentiality_key", r.HasField("confidentiality_key")),
            script=_script(r.script, r.HasField("script")),
            pin_key=cv.key_ref(r.pin_key, "pin_key", r.HasField("pin_key")),
            fmt=cv.PIN_FORMAT.get(r.format, "format"), pin_block=bytes(r.pin_block),
            pan=cv.text(r.pan, "pan", 19) or None, ac=_optional_key(r, "ac_key"),
            current_pin_block=bytes(r.current_pin_block) or None)
        return m.GeneratePinChangeScriptResponse(command=out)
