"""The bench's keys and prepared request bodies, one per operation and form.

Keys are formed from random components in a fresh store, so the bench knows
their clear values and can build PIN blocks the server will accept. Nothing
here is for production: the store and LMK are thrown away after the run.

A body is what h2load sends as-is: gRPC length-prefixed messages. A unary or
batch body holds one message; a stream body holds ``stream_messages`` of them,
so one h2load request is one bidi stream of that many messages.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from hsmsvc.crypto import components, cvv, emv, pinblock
from hsmsvc.crypto._cipher import BlockCipher, ecb_encrypt
from hsmsvc.crypto.mac import generate_retail_mac
from hsmsvc.crypto.pinblock import encode_iso0
from hsmsvc.hsm.backend import Backend
from hsmsvc.hsm.model import KeySpec
from hsmsvc.keys.hierarchy import KeyManager
from hsmsvc.keys.store import KeyStore
from hsmsvc.service.cards import luhn_valid
from hsmsvc.types import Algorithm, Exportability, KeyType, KeyUsage, ModeOfUse, Padding, PinBlockFormat
from hsmsvc_client import sm2curve
from hsmsvc_client.v1 import card_service_pb2 as cm
from hsmsvc_client.v1 import data_service_pb2 as dm
from hsmsvc_client.v1 import mac_service_pb2 as mm
from hsmsvc_client.v1 import pin_service_pb2 as pm
from hsmsvc_client.v1 import signature_service_pb2 as sm
from hsmsvc_client.v1 import types_pb2 as pb

__all__ = ["Body", "CARD_OPERATIONS", "Form", "Keys", "OPERATIONS", "Op", "PAYMENT_OPERATIONS", "PinKeys", "body",
           "frame", "make_keys", "messages"]

PIN = "4321"
PAN = "6222020000000015"
ZONE = "bench"


class Form(Enum):
    UNARY = "unary"
    STREAM = "stream"
    BATCH = "batch"


class Op(Enum):
    TRANSLATE_PIN = "TranslatePin"
    VERIFY_PIN = "VerifyPin"
    GENERATE_MAC = "GenerateMac"
    VERIFY_MAC = "VerifyMac"
    ENCRYPT = "Encrypt"
    SIGN = "Sign"
    """SignatureService.Sign with an SM2 SIG over a 64-byte message (unary only)."""
    COSIGN = "CoSign"
    """The server's round of two-party SM2 signing: one (e, Q1) sent again and again (unary only;
    the end-to-end rate with the client's work is tools.bench.cosign's)."""
    VERIFY_CVV = "VerifyCvv"
    """CardService.VerifyCvv of a right CVV2 under a CVK (unary and batch: there is no stream form)."""
    VERIFY_ARQC = "VerifyArqc"
    """CardService.VerifyArqc of a right Visa CVN 18 ARQC with an ARPC method 2 (unary and batch)."""

    @property
    def unary_only(self) -> bool:
        return self in (Op.SIGN, Op.COSIGN)

    @property
    def forms(self) -> tuple[Form, ...]:
        """The forms the operation has."""
        if self.unary_only:
            return (Form.UNARY,)
        return (Form.UNARY, Form.BATCH) if self in CARD_OPERATIONS else tuple(Form)


CARD_OPERATIONS = (Op.VERIFY_CVV, Op.VERIFY_ARQC)
"""Issue 35's card functions: ``hsmsvc bench --ops VerifyCvv,VerifyArqc``."""
OPERATIONS = tuple(Op)
PAYMENT_OPERATIONS = tuple(op for op in Op if not op.unary_only and op not in CARD_OPERATIONS)
"""The default of ``hsmsvc bench --ops``: the payment families (issue 7's table)."""


class PinKeys(Enum):
    """The ZPK pair TranslatePin runs between, and its PIN block format."""

    TDES = "tdes"
    """Two-key TDES, ISO 9564-1 format 0."""
    AES = "aes"
    """AES-128, ISO 9564-1 format 4."""

    @property
    def describe(self) -> str:
        return {PinKeys.TDES: "two-key TDES ZPKs, format 0", PinKeys.AES: "AES-128 ZPKs, format 4"}[self]

# (service, unary method, stream method, batch method)
_PATHS: dict[Op, tuple[str, str, str, str]] = {
    Op.TRANSLATE_PIN: ("PinService", "TranslatePin", "StreamTranslatePin", "TranslatePinBatch"),
    Op.VERIFY_PIN: ("PinService", "VerifyPin", "StreamVerifyPin", "VerifyPinBatch"),
    Op.GENERATE_MAC: ("MacService", "GenerateMac", "StreamGenerateMac", "GenerateMacBatch"),
    Op.VERIFY_MAC: ("MacService", "VerifyMac", "StreamVerifyMac", "VerifyMacBatch"),
    Op.ENCRYPT: ("DataService", "Encrypt", "StreamEncrypt", "EncryptBatch"),
    Op.SIGN: ("SignatureService", "Sign", "", ""),
    Op.COSIGN: ("CoSigningService", "CoSign", "", ""),
    Op.VERIFY_CVV: ("CardService", "VerifyCvv", "", "VerifyCvvBatch"),
    Op.VERIFY_ARQC: ("CardService", "VerifyArqc", "", "VerifyArqcBatch"),
}


@dataclass(frozen=True)
class Keys:
    """Clear values of the bench's keys (random, this run only) and a stored PIN under the PSK."""

    zpk_in: bytes
    zpk_out: bytes
    mak: bytes
    psk: bytes = b""
    stored_pin: bytes = b""
    pin_keys: PinKeys = PinKeys.TDES
    """What TranslatePin runs between: ``zpk_in`` and ``zpk_out`` (TDES), or the AES pair."""
    aes_in: bytes = b""
    aes_out: bytes = b""
    cosign_d1: int = 0
    """The client's share of ``bench.csk`` (the bench plays its client)."""
    cosign_public: bytes = b""
    """The joint public key of ``bench.csk``, SubjectPublicKeyInfo DER."""
    cvk: bytes = b""
    imk: bytes = b""


def _spec(key_id: str, kt: KeyType, alg: Algorithm, usage: KeyUsage, mode: ModeOfUse) -> KeySpec:
    return KeySpec(key_id, 1, kt, alg, usage, mode, Exportability.NON_EXPORTABLE, ZONE)


def _tdes_key() -> bytes:
    while True:
        k = components.adjust_odd_parity(secrets.token_bytes(16))
        if k[:8] != k[8:]:  # two distinct halves: a real two-key TDES key
            return k


def make_keys(store: KeyStore, backend: Backend, full: bool = True, pin_keys: PinKeys = PinKeys.TDES) -> Keys:
    """Form the bench's keys from two components each; ``full=False`` forms the ZPKs only (SoftHSM).

    The TDES ZPKs are always formed (VerifyPin checks format 0 blocks under ``bench.zpk-in``);
    ``pin_keys=AES`` adds an AES pair for TranslatePin.
    """
    km = KeyManager(store, backend, "bench")
    B, C = ModeOfUse.ENCRYPT_DECRYPT, ModeOfUse.MAC_GENERATE_VERIFY
    plan: list[tuple[KeySpec, bytes]] = [
        (_spec("bench.zpk-in", KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION, B), _tdes_key()),
        (_spec("bench.zpk-out", KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION, B), _tdes_key()),
    ]
    if pin_keys is PinKeys.AES:
        plan += [(_spec(f"bench.zpk-aes-{d}", KeyType.ZPK, Algorithm.AES_128, KeyUsage.PIN_ENCRYPTION, B),
                  secrets.token_bytes(16)) for d in ("in", "out")]
    if full:
        plan += [
            (_spec("bench.mak", KeyType.MAK, Algorithm.TDES_2KEY, KeyUsage.MAC_ISO9797_ALG3, C), _tdes_key()),
            (_spec("bench.psk", KeyType.PSK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION, B), _tdes_key()),
            (_spec("bench.dek", KeyType.DEK, Algorithm.AES_256, KeyUsage.DATA, B), secrets.token_bytes(32)),
            (_spec("bench.cvk", KeyType.CVK, Algorithm.TDES_2KEY, KeyUsage.CVK, C), _tdes_key()),
            (_spec("bench.imk", KeyType.IMK, Algorithm.TDES_2KEY, KeyUsage.EMV_AC, ModeOfUse.DERIVE), _tdes_key()),
        ]
    clear: dict[str, bytes] = {}
    for spec, key in plan:
        km.form(spec, components.split(spec.algorithm, key, [secrets.token_bytes(len(key))]))
        clear[spec.key_id] = key
    d1, joint = 0, b""
    if full:
        km.generate(_spec("bench.sig-sm2", KeyType.SIG, Algorithm.SM2, KeyUsage.DIGITAL_SIGNATURE,
                          ModeOfUse.SIGN_ONLY))
        d1 = secrets.randbelow(sm2curve.N - 1) + 1
        p1 = sm2curve.mul_base(pow(d1, -1, sm2curve.N))
        assert p1 is not None
        _, share = km.create_share(_spec("bench.csk", KeyType.CSK, Algorithm.SM2, KeyUsage.DIGITAL_SIGNATURE,
                                         ModeOfUse.SIGN_ONLY), sm2curve.encode(p1))
        joint = share.public_key
    return Keys(clear["bench.zpk-in"], clear["bench.zpk-out"], clear.get("bench.mak", b""), clear.get("bench.psk", b""),
                pin_keys=pin_keys, aes_in=clear.get("bench.zpk-aes-in", b""),
                aes_out=clear.get("bench.zpk-aes-out", b""), cosign_d1=d1, cosign_public=joint,
                cvk=clear.get("bench.cvk", b""), imk=clear.get("bench.imk", b""))


def frame(message: bytes) -> bytes:
    """One gRPC length-prefixed message (uncompressed)."""
    return b"\0" + struct.pack(">I", len(message)) + message


def _ref(key_id: str) -> pb.KeyRef:
    return pb.KeyRef(key_id=key_id)


def _with_check_digit(body: str) -> str:
    """``body`` and the Luhn check digit that makes it a PAN the server accepts (ISO/IEC 7812-1)."""
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


def pin_block(keys: Keys, pan: str = PAN) -> bytes:
    return ecb_encrypt(Algorithm.TDES_2KEY, keys.zpk_in, encode_iso0(PIN, pan))


def storage_request(keys: Keys) -> pm.EncryptPinForStorageRequest:
    """What the bench sends once to obtain the stored PIN that VerifyPin compares with."""
    return pm.EncryptPinForStorageRequest(key=_ref("bench.zpk-in"), format=pb.PIN_BLOCK_FORMAT_ISO_0,
                                          pin_block=pin_block(keys), pan=PAN, psk=_ref("bench.psk"), account=PAN)


_MAC_DATA = b"0200 6222020000000012 000000010000 20261121093000 000123".ljust(64, b" ")
_FIELD = b"6222020000000012|000000010000|20261121093000"


def _translate(keys: Keys) -> pm.TranslatePinRequest:
    if keys.pin_keys is PinKeys.AES:
        block = pinblock.encipher(PinBlockFormat.ISO_4, BlockCipher(Algorithm.AES_128, keys.aes_in), PIN, PAN)
        return pm.TranslatePinRequest(
            source_key=_ref("bench.zpk-aes-in"), source_format=pb.PIN_BLOCK_FORMAT_ISO_4,
            destination_key=_ref("bench.zpk-aes-out"), destination_format=pb.PIN_BLOCK_FORMAT_ISO_4,
            pin_block=block, pan=PAN)
    return pm.TranslatePinRequest(
        source_key=_ref("bench.zpk-in"), source_format=pb.PIN_BLOCK_FORMAT_ISO_0,
        destination_key=_ref("bench.zpk-out"), destination_format=pb.PIN_BLOCK_FORMAT_ISO_0,
        pin_block=pin_block(keys), pan=PAN)


def _verify_pin(keys: Keys) -> pm.VerifyPinRequest:
    return pm.VerifyPinRequest(
        key=_ref("bench.zpk-in"), format=pb.PIN_BLOCK_FORMAT_ISO_0, pin_block=pin_block(keys), pan=PAN,
        stored=pm.StoredPinCheck(psk=_ref("bench.psk"), account=PAN, method=pb.STORED_PIN_METHOD_ENCRYPTED,
                                 stored_pin=keys.stored_pin or _stored(keys, PAN)))


def _stored(keys: Keys, account: str) -> bytes:
    """A PIN stored under the PSK as the server stores it: format 0 with the account as PAN."""
    return ecb_encrypt(Algorithm.TDES_2KEY, keys.psk, encode_iso0(PIN, account))


def _generate_mac() -> mm.GenerateMacRequest:
    return mm.GenerateMacRequest(key=_ref("bench.mak"), algorithm=pb.MAC_ALGORITHM_ISO9797_ALG3,
                                 padding=pb.MAC_PADDING_METHOD_1, data=_MAC_DATA)


def _verify_mac(keys: Keys) -> mm.VerifyMacRequest:
    return mm.VerifyMacRequest(key=_ref("bench.mak"), algorithm=pb.MAC_ALGORITHM_ISO9797_ALG3,
                               padding=pb.MAC_PADDING_METHOD_1, data=_MAC_DATA,
                               mac=generate_retail_mac(keys.mak, _MAC_DATA, Padding.METHOD_1))


def _encrypt() -> dm.EncryptRequest:
    return dm.EncryptRequest(key=_ref("bench.dek"),
                             cipher=dm.FieldCipher(mode=pb.CIPHER_MODE_GCM, padding=pb.DATA_PADDING_NONE),
                             plaintext=_FIELD)


def _sign() -> sm.SignRequest:
    return sm.SignRequest(key=_ref("bench.sig-sm2"), data=sm.SignedData(message=_MAC_DATA))


def _cosign(keys: Keys) -> sm.CoSignRequest:
    """One (e, Q1) for the server's round; the repeated k1 is harmless on a throw-away key, never in use."""
    q1 = sm2curve.mul_base(secrets.randbelow(sm2curve.N - 1) + 1)
    assert q1 is not None
    public = sm2curve.decode(keys.cosign_public[-65:])
    e = sm2curve.sm3(sm2curve.za(public) + _MAC_DATA)
    return sm.CoSignRequest(key=_ref("bench.csk"), digest=e, client_point=sm2curve.encode(q1))


_EXPIRY = "2912"
# A Visa CVN 18 cryptogram input: terminal data, AIP, ATC, then the whole 9F10 (pyemv's test layout).
_ARQC_DATA = bytes.fromhex("000000004000" "000000000000" "0124" "8000048000" "0124" "191105" "01" "52BF4585"
                           "1800" "001C" "06011203A0B800")


def _verify_cvv(keys: Keys, pan: str = PAN) -> cm.VerifyCvvRequest:
    card = cm.CardData(kind=cm.CVV_KIND_CVV2, pan=pan, expiry=_EXPIRY)
    return cm.VerifyCvvRequest(key=_ref("bench.cvk"), card=card,
                               cvv=cvv.generate_cvv(keys.cvk, kind=cvv.CvvKind.CVV2, pan=pan, expiry=_EXPIRY))


def _authorisation(keys: Keys) -> cm.Authorisation:
    mk = emv.derive_icc_master_key(keys.imk, pan=PAN, psn="00", option=emv.MasterKeyOption.A)
    arqc = emv.generate_ac(mk, method=emv.SessionKeyMethod.VISA_CVN18, atc=bytes.fromhex("001C"), data=_ARQC_DATA)
    return cm.Authorisation(card=cm.CardKey(pan=PAN, psn="00", derivation=cm.MASTER_KEY_DERIVATION_OPTION_A),
                            session_key=cm.SESSION_KEY_DERIVATION_VISA_CVN18, atc=bytes.fromhex("001C"),
                            transaction_data=_ARQC_DATA, arqc=arqc,
                            arpc_method_2=cm.ArpcMethod2(csu=bytes(4)))


def _verify_arqc(keys: Keys) -> cm.VerifyArqcRequest:
    return cm.VerifyArqcRequest(key=_ref("bench.imk"), authorisation=_authorisation(keys))


@dataclass(frozen=True)
class Body:
    """A prepared request: its path, its bytes, and how many operations one request carries."""

    op: Op
    form: Form
    path: str
    data: bytes
    items: int
    check: Callable[[bytes], str | None]
    """Given the response's messages (framed, back to back), why it is not all OK, or None."""


def messages(data: bytes) -> list[bytes]:
    """The messages of a gRPC body (length-prefixed, back to back)."""
    out, i = [], 0
    while i + 5 <= len(data):
        n = struct.unpack(">I", data[i + 1:i + 5])[0]
        out.append(data[i + 5:i + 5 + n])
        i += 5 + n
    return out


def _unary_check(op: Op) -> Callable[[bytes], str | None]:
    def check(data: bytes) -> str | None:
        msgs = messages(data)
        if len(msgs) != 1:
            return f"{len(msgs)} response messages"
        if op is Op.VERIFY_PIN and not pm.VerifyPinResponse.FromString(msgs[0]).verified:
            return "PIN did not verify"
        if op is Op.VERIFY_MAC and not mm.VerifyMacResponse.FromString(msgs[0]).verified:
            return "MAC did not verify"
        if op is Op.VERIFY_CVV and not cm.VerifyCvvResponse.FromString(msgs[0]).verified:
            return "CVV did not verify"
        if op is Op.VERIFY_ARQC and not cm.VerifyArqcResponse.FromString(msgs[0]).verified:
            return "ARQC did not verify"
        return None
    return check


_STREAM_RESPONSE: dict[Op, Any] = {
    Op.TRANSLATE_PIN: pm.StreamTranslatePinResponse, Op.VERIFY_PIN: pm.StreamVerifyPinResponse,
    Op.GENERATE_MAC: mm.StreamGenerateMacResponse, Op.VERIFY_MAC: mm.StreamVerifyMacResponse,
    Op.ENCRYPT: dm.StreamEncryptResponse,
}
_BATCH_RESPONSE: dict[Op, Any] = {
    Op.TRANSLATE_PIN: pm.TranslatePinBatchResponse, Op.VERIFY_PIN: pm.VerifyPinBatchResponse,
    Op.GENERATE_MAC: mm.GenerateMacBatchResponse, Op.VERIFY_MAC: mm.VerifyMacBatchResponse,
    Op.ENCRYPT: dm.EncryptBatchResponse, Op.VERIFY_CVV: cm.VerifyCvvBatchResponse,
    Op.VERIFY_ARQC: cm.VerifyArqcBatchResponse,
}


def _stream_check(op: Op, n: int) -> Callable[[bytes], str | None]:
    def check(data: bytes) -> str | None:
        msgs = [_STREAM_RESPONSE[op].FromString(m) for m in messages(data)]
        if len(msgs) != n:
            return f"{len(msgs)} of {n} stream responses"
        bad = [m for m in msgs if m.code != 0]
        return f"{len(bad)} stream items failed: {bad[0].message}" if bad else None
    return check


def _batch_check(op: Op) -> Callable[[bytes], str | None]:
    def check(data: bytes) -> str | None:
        msgs = messages(data)
        if len(msgs) != 1:
            return f"{len(msgs)} response messages"
        r = _BATCH_RESPONSE[op].FromString(msgs[0])
        if r.errors:
            return f"{len(r.errors)} batch items failed: {r.errors[0].message}"
        if hasattr(r, "verified") and not all(r.verified):
            return "an item did not verify"
        return None
    return check


def body(op: Op, form: Form, keys: Keys, stream_messages: int = 100, batch_size: int = 1000) -> Body:
    """The request h2load sends for ``op`` in ``form``."""
    service, unary, stream, batch = _PATHS[op]
    single: Any = {
        Op.TRANSLATE_PIN: lambda: _translate(keys), Op.VERIFY_PIN: lambda: _verify_pin(keys),
        Op.GENERATE_MAC: _generate_mac, Op.VERIFY_MAC: lambda: _verify_mac(keys), Op.ENCRYPT: _encrypt,
        Op.SIGN: _sign, Op.COSIGN: lambda: _cosign(keys), Op.VERIFY_CVV: lambda: _verify_cvv(keys),
        Op.VERIFY_ARQC: lambda: _verify_arqc(keys),
    }[op]()
    if form not in op.forms:
        raise ValueError(f"{op.value} has no {form.value} form")
    if form is Form.UNARY:
        return Body(op, form, f"/hsmsvc.v1.{service}/{unary}", frame(single.SerializeToString()), 1,
                    _unary_check(op))
    if form is Form.STREAM:
        wrapper: Any = {Op.TRANSLATE_PIN: pm.StreamTranslatePinRequest, Op.VERIFY_PIN: pm.StreamVerifyPinRequest,
                   Op.GENERATE_MAC: mm.StreamGenerateMacRequest, Op.VERIFY_MAC: mm.StreamVerifyMacRequest,
                   Op.ENCRYPT: dm.StreamEncryptRequest}[op]
        data = b"".join(frame(wrapper(correlation_id=i, request=single).SerializeToString())
                        for i in range(1, stream_messages + 1))
        return Body(op, form, f"/hsmsvc.v1.{service}/{stream}", data, stream_messages,
                    _stream_check(op, stream_messages))
    return Body(op, form, f"/hsmsvc.v1.{service}/{batch}",
                frame(_batch(op, keys, batch_size).SerializeToString()), batch_size, _batch_check(op))


def _batch(op: Op, keys: Keys, n: int) -> Any:
    if op is Op.TRANSLATE_PIN:
        r = _translate(keys)
        return pm.TranslatePinBatchRequest(source_key=r.source_key, source_format=r.source_format,
                                           destination_key=r.destination_key, destination_format=r.destination_format,
                                           pin_blocks=r.pin_block * n, pans=[PAN] * n)
    if op is Op.VERIFY_PIN:
        # n cards, each PIN stored under the PSK as the server stores it (format 0, account = PAN): a
        # card's attempt limit makes one card repeated a run of single checks, which no batch is for.
        cards = [_with_check_digit(f"{PAN[:-7]}{i:06d}") for i in range(n)]
        return pm.VerifyPinBatchRequest(
            key=_ref("bench.zpk-in"), format=pb.PIN_BLOCK_FORMAT_ISO_0,
            pin_blocks=b"".join(pin_block(keys, c) for c in cards), pans=cards, psk=_ref("bench.psk"),
            method=pb.STORED_PIN_METHOD_ENCRYPTED, accounts=cards,
            stored_pins=b"".join(_stored(keys, c) for c in cards))
    if op is Op.GENERATE_MAC:
        g = _generate_mac()
        return mm.GenerateMacBatchRequest(key=g.key, algorithm=g.algorithm, padding=g.padding,
                                          messages=[g.data] * n)
    if op is Op.VERIFY_MAC:
        v = _verify_mac(keys)
        return mm.VerifyMacBatchRequest(key=v.key, algorithm=v.algorithm, padding=v.padding,
                                        messages=[v.data] * n, macs=[v.mac] * n)
    if op is Op.VERIFY_CVV:
        # n cards: a card's attempt counters make one card repeated a run of single checks.
        reqs = [_verify_cvv(keys, _with_check_digit(f"{PAN[:-7]}{i:06d}")) for i in range(n)]
        return cm.VerifyCvvBatchRequest(key=_ref("bench.cvk"), cards=[r.card for r in reqs], cvvs=[r.cvv for r in reqs])
    if op is Op.VERIFY_ARQC:
        return cm.VerifyArqcBatchRequest(key=_ref("bench.imk"), authorisations=[_authorisation(keys)] * n)
    e = _encrypt()
    return dm.EncryptBatchRequest(key=e.key, cipher=e.cipher, plaintexts=[e.plaintext] * n)
