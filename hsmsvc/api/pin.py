"""PinService: PIN blocks over gRPC."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hsmsvc.api import convert as cv
from hsmsvc.api.batch import count, item_error, items, pans, split, split_even, texts, verdicts
from hsmsvc.api.runner import Lane
from hsmsvc.api.status import Observed, rpc, stream_rpc
from hsmsvc.errors import HsmsvcError, InvalidInput
from hsmsvc.hsm.model import StoredPin, StoredPinMethod
from hsmsvc.keys.model import KeyRef
from hsmsvc.service import issuance, storedpins
from hsmsvc.service import pin as uc
from hsmsvc.service import verification as vf
from hsmsvc.service.context import Caller, Services
from hsmsvc.service.routes import RouteRequest
from hsmsvc_client.v1 import pin_service_pb2 as m
from hsmsvc_client.v1 import pin_service_pb2_grpc as g
from hsmsvc_client.v1 import types_pb2 as pb

_METHOD: dict[int, StoredPinMethod] = {pb.STORED_PIN_METHOD_ENCRYPTED: StoredPinMethod.ENCRYPTED,
                                       pb.STORED_PIN_METHOD_DIGEST: StoredPinMethod.DIGEST}
_METHOD_PB: dict[StoredPinMethod, Any] = {v: k for k, v in _METHOD.items()}


def _method(value: int, field: str) -> StoredPinMethod:
    if value == 0:
        raise InvalidInput(field, "required")
    try:
        return _METHOD[value]
    except KeyError:
        raise InvalidInput(field, "unknown value") from None


def _pan(pan: str) -> str | None:
    return cv.text(pan, "pan", 19) or None


def _required_pan(pan: str, what: str) -> str:
    p = _pan(pan)
    if p is None:
        raise InvalidInput("pan", f"required for {what}")
    return p


def _one_time(k: m.OneTimeKey, field: str) -> uc.OneTimeKeyRef:
    return uc.OneTimeKeyRef(
        cv.key_ref(k.transport_key, f"{field}.transport_key", k.HasField("transport_key")),
        cv.ALGORITHM.get(k.algorithm, f"{field}.algorithm"),
        bytes(k.wrapped_key),
    )


def _dukpt(k: m.DukptKey, field: str) -> uc.DukptKeyRef:
    alg = k.pin_key_algorithm
    algorithm = None if alg == 0 else cv.ALGORITHM.get(alg, f"{field}.pin_key_algorithm")
    return uc.DukptKeyRef(cv.key_ref(k.bdk, f"{field}.bdk", k.HasField("bdk")), bytes(k.ksn), algorithm)


def _source(r: m.TranslatePinRequest | m.VerifyPinRequest, oneof: str, key: str, one_time: str,
            dukpt: str) -> uc.PinSource:
    which = r.WhichOneof(oneof)
    if which == one_time:
        return _one_time(getattr(r, one_time), one_time)
    if which == dukpt:
        return _dukpt(getattr(r, dukpt), dukpt)
    return cv.key_ref(getattr(r, key), key, which == key)


def _stored_check(c: m.StoredPinCheck, field: str) -> uc.StoredPinCheck:
    return uc.StoredPinCheck(
        cv.key_ref(c.psk, f"{field}.psk", c.HasField("psk")),
        cv.text(c.account, f"{field}.account", 19),
        StoredPin(_method(c.method, f"{field}.method"), bytes(c.stored_pin)),
    )


class PinServicer(g.PinServiceServicer):
    def __init__(self, services: Services, observed: Observed) -> None:
        self.s = services
        self.observed = observed

    def _translate(self, r: m.TranslatePinRequest, c: Caller) -> m.TranslatePinResponse:
        words: tuple[object, ...] | None = None
        if r.WhichOneof("source") == "source_key" and r.HasField("destination_key"):
            # The request's own fields, as sent: a route is only found again for the same words.
            src, dst = r.source_key, r.destination_key
            words = (src.key_id, src.alias, src.version, dst.key_id, dst.alias, dst.version,
                     r.source_format, r.destination_format)

        def request() -> RouteRequest:
            return (_source(r, "source", "source_key", "source_one_time_key", "source_dukpt"),
                    cv.PIN_FORMAT.get(r.source_format, "source_format"),
                    cv.key_ref(r.destination_key, "destination_key", r.HasField("destination_key")),
                    cv.PIN_FORMAT.get(r.destination_format, "destination_format"))

        route = self.s.routes.route(self.s, c, words, request)
        block, version, sign_on = uc.translate_routed(self.s, c, route=route, pin_block=bytes(r.pin_block),
                                                      pan=_pan(r.pan))
        return m.TranslatePinResponse(pin_block=block, destination_key_version=version, sign_on_required=sign_on)

    TranslatePin = rpc("PinService.TranslatePin", Lane.INLINE)(_translate)
    StreamTranslatePin = stream_rpc("PinService.StreamTranslatePin", m.StreamTranslatePinResponse,
                                    Lane.INLINE)(_translate)

    @rpc("PinService.TranslatePinBatch")
    def TranslatePinBatch(self, r: m.TranslatePinBatchRequest, c: Caller) -> m.TranslatePinBatchResponse:
        src_fmt = cv.PIN_FORMAT.get(r.source_format, "source_format")
        dst_fmt = cv.PIN_FORMAT.get(r.destination_format, "destination_format")
        blocks = bytes(r.pin_blocks)
        n = items(blocks, src_fmt.block_size, "pin_blocks")
        out, version = uc.translate_pin_batch(
            self.s, c, source=cv.key_ref(r.source_key, "source_key", r.HasField("source_key")), source_format=src_fmt,
            destination=cv.key_ref(r.destination_key, "destination_key", r.HasField("destination_key")),
            destination_format=dst_fmt, pin_blocks=blocks, pans=pans(r.pans, n),
        )
        return m.TranslatePinBatchResponse(pin_blocks=out.blocks, errors=[item_error(i, e) for i, e in out.errors],
                                           destination_key_version=version)

    def _verify(self, r: m.VerifyPinRequest, c: Caller) -> m.VerifyPinResponse:
        which = r.WhichOneof("check")
        check: uc.PinCheck
        if which == "stored":
            check = _stored_check(r.stored, "stored")
        elif which == "ibm3624":
            check = uc.OffsetCheck(cv.key_ref(r.ibm3624.pvk, "ibm3624.pvk", r.ibm3624.HasField("pvk")),
                                   cv.text(r.ibm3624.validation_data, "ibm3624.validation_data", 16),
                                   cv.text(r.ibm3624.offset, "ibm3624.offset", 12))
        elif which == "pvv":
            check = uc.PvvCheck(cv.key_ref(r.pvv.pvk, "pvv.pvk", r.pvv.HasField("pvk")), r.pvv.pvki,
                                cv.text(r.pvv.pvv, "pvv.pvv", 4))
        else:
            raise InvalidInput("check", "one of stored, ibm3624 or pvv")
        key, fmt = _source(r, "pin_key", "key", "one_time_key", "dukpt"), cv.PIN_FORMAT.get(r.format, "format")
        route = None
        if isinstance(check, uc.StoredPinCheck) and isinstance(key, KeyRef):
            k, psk = r.key, r.stored.psk
            # The request's own fields, as sent: a route is only found again for the same words.
            words = (k.key_id, k.alias, k.version, r.format, psk.key_id, psk.alias, psk.version)
            stored = check

            def build() -> vf.VerifyRoute:
                return vf.route_verification(self.s, c, key=key, fmt=fmt, psk=stored.psk)

            route = self.s.routes.verification(self.s, c, words, build)
        ev = vf.evaluate_pin(self.s, c, key=key, fmt=fmt, pin_block=bytes(r.pin_block), pan=_pan(r.pan), check=check,
                             route=route)
        return m.VerifyPinResponse(verified=vf.release_pin(self.s, c, ev))

    # Evaluated and released in one executor call: outcomes evaluated on the loop and released
    # later let a match's counters be read ahead of wrong guesses evaluated before it
    # (docs/performance.md, issue 34, "withdrawn").
    VerifyPin = rpc("PinService.VerifyPin", Lane.TRANSACTION)(_verify)
    StreamVerifyPin = stream_rpc("PinService.StreamVerifyPin", m.StreamVerifyPinResponse, Lane.TRANSACTION)(_verify)

    @rpc("PinService.VerifyPinBatch")
    def VerifyPinBatch(self, r: m.VerifyPinBatchRequest, c: Caller) -> m.VerifyPinBatchResponse:
        fmt = cv.PIN_FORMAT.get(r.format, "format")
        blocks = split(bytes(r.pin_blocks), fmt.block_size, "pin_blocks")
        method = _method(r.method, "method")
        n = len(blocks)
        stored = split_even(bytes(r.stored_pins), n, "stored_pins")
        verified, errs = verdicts(uc.verify_pin_batch(
            self.s, c, key=cv.key_ref(r.key, "key", r.HasField("key")), fmt=fmt, pin_blocks=blocks,
            pans=pans(r.pans, n), psk=cv.key_ref(r.psk, "psk", r.HasField("psk")),
            accounts=texts(r.accounts, n, "accounts"), stored=[StoredPin(method, x) for x in stored],
        ))
        return m.VerifyPinBatchResponse(verified=verified, errors=errs)

    @rpc("PinService.EncryptPinForStorage")
    def EncryptPinForStorage(self, r: m.EncryptPinForStorageRequest, c: Caller) -> m.EncryptPinForStorageResponse:
        stored, version = uc.encrypt_pin_for_storage(
            self.s, c, key=cv.key_ref(r.key, "key", r.HasField("key")), fmt=cv.PIN_FORMAT.get(r.format, "format"),
            pin_block=bytes(r.pin_block), pan=_pan(r.pan), psk=cv.key_ref(r.psk, "psk", r.HasField("psk")),
            account=cv.text(r.account, "account", 19),
        )
        return m.EncryptPinForStorageResponse(method=_METHOD_PB[stored.method], stored_pin=stored.value,
                                              psk_version=version)

    @rpc("PinService.ChangeStoredPin")
    def ChangeStoredPin(self, r: m.ChangeStoredPinRequest, c: Caller) -> m.ChangeStoredPinResponse:
        if not r.HasField("current"):
            raise InvalidInput("current", "required")
        stored, version = uc.change_stored_pin(
            self.s, c, key=cv.key_ref(r.key, "key", r.HasField("key")), fmt=cv.PIN_FORMAT.get(r.format, "format"),
            pan=_pan(r.pan), old_pin_block=bytes(r.old_pin_block), new_pin_block=bytes(r.new_pin_block),
            check=_stored_check(r.current, "current"),
        )
        if stored is None:
            return m.ChangeStoredPinResponse(verified=False)
        return m.ChangeStoredPinResponse(verified=True, stored_pin=stored.value, psk_version=version)

    @rpc("PinService.GeneratePinOffset")
    def GeneratePinOffset(self, r: m.GeneratePinOffsetRequest, c: Caller) -> m.GeneratePinOffsetResponse:
        if r.validation_data:
            # Deprecated field: caller-chosen validation data made offsets a PIN oracle (issue 27).
            raise InvalidInput("validation_data", "must be empty: the validation data is the PAN's")
        offset = issuance.generate_offset(
            self.s, c, key=cv.key_ref(r.key, "key", r.HasField("key")), fmt=cv.PIN_FORMAT.get(r.format, "format"),
            pin_block=bytes(r.pin_block), pan=_required_pan(r.pan, "an offset"),
            pvk=cv.key_ref(r.pvk, "pvk", r.HasField("pvk")),
        )
        return m.GeneratePinOffsetResponse(offset=offset)

    @rpc("PinService.GeneratePvv")
    def GeneratePvv(self, r: m.GeneratePvvRequest, c: Caller) -> m.GeneratePvvResponse:
        pvv = issuance.generate_pvv(
            self.s, c, key=cv.key_ref(r.key, "key", r.HasField("key")), fmt=cv.PIN_FORMAT.get(r.format, "format"),
            pin_block=bytes(r.pin_block), pan=_required_pan(r.pan, "a PVV"),
            pvk=cv.key_ref(r.pvk, "pvk", r.HasField("pvk")), pvki=r.pvki,
        )
        return m.GeneratePvvResponse(pvv=pvv)

    @rpc("PinService.ReEncryptStoredPins")
    def ReEncryptStoredPins(self, r: m.ReEncryptStoredPinsRequest, c: Caller) -> m.ReEncryptStoredPinsResponse:
        accounts = _accounts(r.accounts)
        pins = split_even(bytes(r.stored_pins), len(accounts), "stored_pins")
        old_psk, new_psk = _psks(r)
        results, version = storedpins.reencrypt_stored_pins(self.s, c, old_psk=old_psk, new_psk=new_psk,
                                                            accounts=accounts, stored=pins)
        width = max((len(x) for x in results if isinstance(x, bytes)), default=len(pins[0]))
        out, errs = bytearray(), []
        for i, res in enumerate(results):
            if isinstance(res, HsmsvcError):
                errs.append(item_error(i, res))
                out += bytes(width)
            else:
                out += res
        return m.ReEncryptStoredPinsResponse(stored_pins=bytes(out), errors=errs, psk_version=version)

    @rpc("PinService.CompareStoredPins")
    def CompareStoredPins(self, r: m.CompareStoredPinsRequest, c: Caller) -> m.CompareStoredPinsResponse:
        accounts = _accounts(r.accounts)
        old_psk, new_psk = _psks(r)
        same = storedpins.compare_stored_pins(
            self.s, c, old_psk=old_psk, new_psk=new_psk, accounts=accounts,
            old_stored=split_even(bytes(r.old_stored_pins), len(accounts), "old_stored_pins"),
            new_stored=split_even(bytes(r.new_stored_pins), len(accounts), "new_stored_pins"),
        )
        return m.CompareStoredPinsResponse(same=same)


def _accounts(values: Sequence[str]) -> list[str]:
    """A stored-PIN batch's accounts: at least one, at most the batch limit."""
    count(values, "accounts")
    if not values:
        raise InvalidInput("accounts", "at least one")
    return [cv.text(a, "accounts", 19) for a in values]


def _psks(r: m.ReEncryptStoredPinsRequest | m.CompareStoredPinsRequest) -> tuple[KeyRef, KeyRef]:
    return (cv.key_ref(r.old_psk, "old_psk", r.HasField("old_psk")),
            cv.key_ref(r.new_psk, "new_psk", r.HasField("new_psk")))
