"""Card values and EMV cryptograms end to end over gRPC (CardService, issue 35).

The keys are formed from components at the session server's set-up (tests/api/conftest.py,
CARD_KEYS), of the published values below. Each expected answer is a published one, named with
its source, or is computed by tests/reference.py (the standard library, pyca and gmssl only).
Each test checks cards of its own: failures on a card count for the whole session.
"""

from __future__ import annotations

import secrets

import grpc
import pytest

from hsmsvc_client import Client
from hsmsvc_client.v1 import card_service_pb2 as card_pb
from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import types_pb2 as pb
from tests import reference as ref
from tests.api.conftest import Env, code_of

H = bytes.fromhex
K0 = H("0123456789ABCDEFFEDCBA9876543210")
CVV, CVV2, ICVV = card_pb.CVV_KIND_CVV, card_pb.CVV_KIND_CVV2, card_pb.CVV_KIND_ICVV
OPTION_A = card_pb.MASTER_KEY_DERIVATION_OPTION_A
# pyemv tests/test_cvn_hsm.py (HSM-checked): PAN 1234567890123456, PSN 00, ATC 001C, IMK K0.
VISA_TX = H("000000004000" "000000000000" "0124" "8000048000" "0124" "191105" "01" "52BF4585" "1800" "001C")


def _key(name: str) -> pb.KeyRef:
    return pb.KeyRef(key_id=name)


def _card(pan: str, expiry: str, kind: int = CVV2, service_code: str = "") -> card_pb.CardData:
    return card_pb.CardData(kind=kind, pan=pan, expiry=expiry, service_code=service_code)  # type: ignore[arg-type]


def _verify(core: Client, card: card_pb.CardData, cvv: str, key: str = "card.cvk") -> bool:
    return bool(core.cards.VerifyCvv(card_pb.VerifyCvvRequest(key=_key(key), card=card, cvv=cvv)).verified)


def _fresh_pan() -> str:
    return "4" + "".join(secrets.choice("0123456789") for _ in range(15))


@pytest.fixture(scope="module")
def issuer(server: Env) -> Client:
    return server.client("pin-issuer")


def test_cvvs_by_the_published_data(server: Env, core: Client, issuer: Client) -> None:
    gen = issuer.cards.GenerateCvv
    # psec, psec/cvv.py generate_cvv docstring.
    r = gen(card_pb.GenerateCvvRequest(key=_key("card.cvk"), card=_card("1234567890123456", "9912", CVV, "220")))
    assert (r.cvv, r.key_version) == ("170", 1)
    # The CVV test data reproduced at http://fsou.com/html/text/chl/848/84828_4.html (CVK A||B = K0).
    for pan, expiry, code, value in (("4123456789012345", "8701", "101", "561"),
                                     ("4123456789012", "8701", "101", "370"),
                                     ("4999988887777000", "9105", "111", "245")):
        assert gen(card_pb.GenerateCvvRequest(key=_key("card.cvk"), card=_card(pan, expiry, CVV, code))).cvv == value
        assert _verify(core, _card(pan, expiry, CVV, code), value)
    pan = _fresh_pan()
    for kind, code in ((CVV2, "000"), (ICVV, "999")):
        for n in (3, 4, 5):
            got = gen(card_pb.GenerateCvvRequest(key=_key("card.cvk"), card=_card(pan, "2812", kind), length=n)).cvv
            assert got == ref.cvv_value(K0, pan, "2812", code, n)
    assert _verify(core, _card(pan, "2812", CVV2), ref.cvv_value(K0, pan, "2812", "000"), key="card.cvk-verify")


def test_cvv_duties_and_key_usage(server: Env, core: Client, issuer: Client) -> None:
    req = card_pb.GenerateCvvRequest(key=_key("card.cvk"), card=_card(_fresh_pan(), "2812"))
    # An operator never makes a value: it would mint CVV2s for any card.
    assert code_of(core.cards.GenerateCvv, req)[0] == grpc.StatusCode.PERMISSION_DENIED
    assert code_of(issuer.cards.VerifyCvv, card_pb.VerifyCvvRequest(key=_key("card.cvk"), card=req.card,
                                                                    cvv="123"))[0] == grpc.StatusCode.PERMISSION_DENIED
    verify_only = card_pb.GenerateCvvRequest(key=_key("card.cvk-verify"), card=req.card)
    assert code_of(issuer.cards.GenerateCvv, verify_only)[0] == grpc.StatusCode.FAILED_PRECONDITION
    imk = card_pb.VerifyCvvRequest(key=_key("card.imk-ac"), card=req.card, cvv="123")
    assert code_of(core.cards.VerifyCvv, imk)[0] == grpc.StatusCode.FAILED_PRECONDITION
    for bad, field in ((_card("12345678901", "2812"), "pan"), (_card(_fresh_pan(), "281"), "expiry"),
                       (_card(_fresh_pan(), "2812", 0), "card.kind"),
                       (_card(_fresh_pan(), "2812", CVV), "service_code")):
        code, details = code_of(core.cards.VerifyCvv, card_pb.VerifyCvvRequest(key=_key("card.cvk"), card=bad,
                                                                               cvv="123"))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith(field), details


def test_cvv_failures_lock_the_card_and_what_its_data_binds(server: Env, core: Client) -> None:
    pan = _fresh_pan()
    right = ref.cvv_value(K0, pan, "8710", "000")
    wrong = [v for v in ("000", "111", "222", "333") if v != right][:3]
    for v in wrong:
        assert not _verify(core, _card(pan, "8710"), v)
    # The card's limit (3) is reached: the right value is refused too, as every outcome is.
    code, details = code_of(_verify, core, _card(pan, "8710"), right)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "card value checks for this card" in details
    # Another expiry of the card: its PAN's counter refuses it.
    assert code_of(_verify, core, _card(pan, "2901"), ref.cvv_value(K0, pan, "2901", "000"))[0] == \
        grpc.StatusCode.RESOURCE_EXHAUSTED
    # The same computation under another PAN text (one more digit taken from the expiry, which the
    # zero padding makes the same 32 digits): a fresh PAN counter, but its data's counter refuses it.
    shifted = _card(pan + "8", "7100")
    assert ref.cvv_value(K0, pan + "8", "7100", "000") == right
    assert code_of(_verify, core, shifted, right)[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
    # Another card is untouched, and so are the principal's PIN checks (counted apart).
    other = _fresh_pan()
    assert _verify(core, _card(other, "8710"), ref.cvv_value(K0, other, "8710", "000"))


def test_a_right_value_resets_its_computation_not_its_card(server: Env, core: Client) -> None:
    pan = _fresh_pan()
    right = ref.cvv_value(K0, pan, "3003", "000")
    bad = "999" if right != "999" else "998"
    for _ in range(2):
        assert not _verify(core, _card(pan, "3003"), bad)
    assert _verify(core, _card(pan, "3003"), right)
    # The card's counter stays at 2 (it ages out): one more failure, then the card is refused.
    assert not _verify(core, _card(pan, "3003"), bad)
    assert code_of(_verify, core, _card(pan, "3003"), right)[0] == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_a_value_known_under_another_key_buys_no_guesses(server: Env, core: Client) -> None:
    # An adversarial review's attack: guesses at a card's CVV2 under the production CVK, each followed by
    # a right value worked out under a CVK the caller knows (card.cvk, a published test key). The counters
    # are kept per key and a match resets only its own computation, so the fourth guess is refused.
    pan = _fresh_pan()
    prod = ref.cvv_value(H("89ABCDEF0123456776543210FEDCBA98"), pan, "2905", "000")
    guesses = [v for v in ("111", "222", "333", "444") if v != prod]
    known = ref.cvv_value(K0, pan, "2905", "000")
    for guess in guesses[:3]:
        assert not _verify(core, _card(pan, "2905"), guess, key="card.cvk-prod")
        assert _verify(core, _card(pan, "2905"), known)
    assert code_of(_verify, core, _card(pan, "2905"), prod, "card.cvk-prod")[0] == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_one_key_under_two_ids_shares_its_counters(server: Env, core: Client) -> None:
    # card.cvk and card.cvk-verify hold one value: guesses split between them count together (an
    # adversarial review had 6 answered at per_pan = 3 when counters named the key's id).
    pan = _fresh_pan()
    right = ref.cvv_value(K0, pan, "2704", "000")
    wrong = [v for v in ("101", "202", "303", "404") if v != right]
    for i, v in enumerate(wrong[:3]):
        assert not _verify(core, _card(pan, "2704"), v, key=("card.cvk", "card.cvk-verify")[i % 2])
    assert code_of(_verify, core, _card(pan, "2704"), wrong[3], "card.cvk-verify")[0] == \
        grpc.StatusCode.RESOURCE_EXHAUSTED


def test_cvv_batch(server: Env, core: Client) -> None:
    pans = [_fresh_pan() for _ in range(4)]
    cards = [_card(p, "2907") for p in pans] + [_card("123", "2907")]
    values = [ref.cvv_value(K0, p, "2907", "000") for p in pans] + ["123"]
    values[1] = "000" if values[1] != "000" else "001"
    r = core.cards.VerifyCvvBatch(card_pb.VerifyCvvBatchRequest(key=_key("card.cvk"), cards=cards, cvvs=values))
    assert list(r.verified) == [True, False, True, True, False]
    assert [(e.index, e.field) for e in r.errors] == [(4, "pan")]
    # The batch counted the wrong one against its card: two more, and the card is refused in a batch too.
    for _ in range(2):
        assert not _verify(core, cards[1], values[1])
    r = core.cards.VerifyCvvBatch(card_pb.VerifyCvvBatchRequest(
        key=_key("card.cvk"), cards=cards[:2], cvvs=[values[0], ref.cvv_value(K0, pans[1], "2907", "000")]))
    assert list(r.verified) == [True, False]
    assert [(e.index, e.code) for e in r.errors] == [(1, grpc.StatusCode.RESOURCE_EXHAUSTED.value[0])]


def test_dynamic_values(server: Env, core: Client) -> None:
    def check(kind: int, key: str, value: str, **kw: object) -> bool:
        return bool(core.cards.VerifyDynamicCvv(card_pb.VerifyDynamicCvvRequest(
            key=_key(key), kind=kind, value=value, **kw)).verified)  # type: ignore[arg-type]

    # gep3 tests/key_management_test.py and dsc_test.py: dCVV 369.
    dcvv = dict(card=card_pb.CardKey(pan="4012340000000016", psn="00", derivation=OPTION_A), atc=H("0001"),
                expiry="1228")
    assert check(card_pb.DYNAMIC_CVV_KIND_DCVV, "card.imk-dcvv", "369", **dcvv)
    # pyemv tests/test_cvv_hsm.py and its pyemv/cvv.py docstring: CVC3 29488, of which a track carries 488.
    cvc3 = dict(card=card_pb.CardKey(pan="5123456789012345", derivation=OPTION_A), atc=H("005E"),
                track=H("5123456789012345D35121010000000000000F"), unpredictable_number=H("00000899"))
    assert check(card_pb.DYNAMIC_CVV_KIND_CVC3, "card.imk-cvc3", "29488", **cvc3)
    assert check(card_pb.DYNAMIC_CVV_KIND_CVC3, "card.imk-cvc3", "488", **cvc3)
    assert not check(card_pb.DYNAMIC_CVV_KIND_CVC3, "card.imk-cvc3", "487", **cvc3)
    # A dCVV seen for one ATC buys no guesses at another's: the card's counter is not reset by a match.
    dcvv2 = dict(dcvv, atc=H("0002"))
    right2 = ref.cvv_value(ref.emv_card_key(H("01017391010101101320010101010101"), "4012340000000016", "00"),
                           "0002" + "340000000016", "1228", "000")
    wrong2 = next(v for v in ("100", "200", "300") if v != right2)
    for _ in range(2):
        assert not check(card_pb.DYNAMIC_CVV_KIND_DCVV, "card.imk-dcvv", wrong2, **dcvv2)
        assert check(card_pb.DYNAMIC_CVV_KIND_DCVV, "card.imk-dcvv", "369", **dcvv)
    assert not check(card_pb.DYNAMIC_CVV_KIND_DCVV, "card.imk-dcvv", wrong2, **dcvv2)
    assert code_of(lambda: check(card_pb.DYNAMIC_CVV_KIND_DCVV, "card.imk-dcvv", right2, **dcvv2))[0] == \
        grpc.StatusCode.RESOURCE_EXHAUSTED
    # A dCVV key never checks a CVC3; an application cryptogram key neither.
    for key in ("card.imk-dcvv", "card.imk-ac"):
        assert code_of(lambda: check(card_pb.DYNAMIC_CVV_KIND_CVC3, key, "488", **cvc3))[0] == \
            grpc.StatusCode.FAILED_PRECONDITION


def _auth(method: int, data: bytes, arqc: bytes, **kw: object) -> card_pb.Authorisation:
    return card_pb.Authorisation(card=card_pb.CardKey(pan="1234567890123456", psn="00", derivation=OPTION_A),
                                 session_key=method, atc=H("001C"), transaction_data=data, arqc=arqc,  # type: ignore
                                 **kw)


def test_arqc_and_arpc_by_pyemv(server: Env, core: Client) -> None:
    def verify(a: card_pb.Authorisation, key: str = "card.imk-ac") -> card_pb.VerifyArqcResponse:
        return core.cards.VerifyArqc(card_pb.VerifyArqcRequest(key=_key(key), authorisation=a))

    # pyemv tests/test_cvn_hsm.py test_visa_cvn18: ARQC 7A788EA6B8A3E733, ARPC method 2 (CSU 00000000) 9AF514C1.
    cvn18 = _auth(card_pb.SESSION_KEY_DERIVATION_VISA_CVN18, VISA_TX + H("06011203A0B800"), H("7A788EA6B8A3E733"),
                  arpc_method_2=card_pb.ArpcMethod2(csu=H("00000000")))
    r = verify(cvn18)
    assert (r.verified, r.arpc, r.key_version) == (True, H("9AF514C1"), 1)
    # test_visa_cvn10: padding method 1, ARPC method 1 under the card key with ARC 3030.
    cvn10 = _auth(card_pb.SESSION_KEY_DERIVATION_VISA_CVN10, VISA_TX + H("03A06010"), H("29CCA15AE665FA2E"),
                  arpc_method_1=card_pb.ArpcMethod1(arc=H("3030")))
    assert verify(cvn10).arpc == H("28993816AFAE4AEB")
    # A wrong cryptogram: verified = false and no ARPC, so none is ever made for a value the caller chose.
    wrong = _auth(card_pb.SESSION_KEY_DERIVATION_VISA_CVN18, VISA_TX + H("06011203A0B800"), H("7A788EA6B8A3E734"),
                  arpc_method_2=card_pb.ArpcMethod2(csu=H("00000000")))
    assert (verify(wrong).verified, verify(wrong).arpc) == (False, b"")
    assert code_of(verify, cvn18, "card.imk-dcvv")[0] == grpc.StatusCode.FAILED_PRECONDITION
    # No ARPC that is also a cryptogram: no short cryptogram input, no card-key ARPC outside the SKD
    # (an adversarial review chained ARPCs into CVN 10 cryptograms no card made).
    short = _auth(card_pb.SESSION_KEY_DERIVATION_VISA_CVN10, bytes(8), bytes(8),
                  arpc_method_1=card_pb.ArpcMethod1(arc=H("3030")))
    assert code_of(verify, short)[1].startswith("transaction_data")
    cvn10_card_key = _auth(card_pb.SESSION_KEY_DERIVATION_VISA_CVN10, VISA_TX + H("03A06010"), H("29CCA15AE665FA2E"),
                           arpc_method_1=card_pb.ArpcMethod1(arc=H("3030"), card_key=True))
    assert code_of(verify, cvn10_card_key)[1].startswith("arpc_method_1.card_key")
    assert code_of(verify, _auth(0, b"", bytes(8)))[0] == grpc.StatusCode.INVALID_ARGUMENT
    # The batch form, with a malformed item answered alone.
    short = _auth(card_pb.SESSION_KEY_DERIVATION_EMV_CSK, b"", H("0102"))
    r = core.cards.VerifyArqcBatch(card_pb.VerifyArqcBatchRequest(key=_key("card.imk-ac"),
                                                                  authorisations=[cvn18, wrong, short, cvn10]))
    assert list(r.verified) == [True, False, False, True]
    assert list(r.arpcs) == [H("9AF514C1"), b"", b"", H("28993816AFAE4AEB")]
    assert [(e.index, e.field) for e in r.errors] == [(2, "arqc")]


def test_sm4_arqc_against_an_independent_construction(server: Env, core: Client) -> None:
    # No PBOC vectors are published: the reference builds the card key, session key and cryptogram from
    # SM4 (pyca) and EMV Book 2's steps for a 16-byte block (tests/reference_cards.py).
    mk = ref.sm4_emv_card_key(K0, "1234567890123456", "00")
    sk = ref.sm4_emv_session_key(mk, H("001C"))
    data = secrets.token_bytes(37)
    a = _auth(card_pb.SESSION_KEY_DERIVATION_EMV_CSK, data, ref.sm4_emv_ac(sk, data))
    assert core.cards.VerifyArqc(card_pb.VerifyArqcRequest(key=_key("card.imk-ac-sm4"), authorisation=a)).verified
    a.arqc = bytes([a.arqc[0] ^ 1]) + a.arqc[1:]
    assert not core.cards.VerifyArqc(card_pb.VerifyArqcRequest(key=_key("card.imk-ac-sm4"), authorisation=a)).verified
    visa = _auth(card_pb.SESSION_KEY_DERIVATION_VISA_CVN18, data, bytes(8))
    assert code_of(core.cards.VerifyArqc, card_pb.VerifyArqcRequest(key=_key("card.imk-ac-sm4"),
                                                                    authorisation=visa))[0] == \
        grpc.StatusCode.INVALID_ARGUMENT


def test_card_keys_are_not_rotated_nor_carried_in_ecb(server: Env) -> None:
    mgr = server.client("key-manager")
    for name in ("card.cvk", "card.imk-ac"):
        code, details = code_of(mgr.keys.RotateKey, key_pb.RotateKeyRequest(key=_key(name)))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "cards issued anew" in details


def _script(command: str, arqc: str, session_key: int, **kw: object) -> card_pb.IssuerScript:
    return card_pb.IssuerScript(card=card_pb.CardKey(pan="1234567890123456", psn="00", derivation=OPTION_A),
                                session_key=session_key, atc=H("001C"), arqc=H(arqc), command=H(command),  # type: ignore
                                **kw)


def test_issuer_scripts_and_a_pin_change_by_pyemv(server: Env, core: Client, keys: dict[str, bytes]) -> None:
    # pyemv tests/test_cvn_hsm.py (HSM-checked): test_visa_cvn18's script MAC and VIS PIN change (PIN 9999),
    # test_mastercard_cvn16's PIN change; the card's PIN block arrives as the customer's under zpk1.
    visa = card_pb.SCRIPT_KEY_DERIVATION_VISA
    r = core.cards.GenerateIssuerScript(card_pb.GenerateIssuerScriptRequest(
        integrity_key=_key("card.imk-smi"), script=_script("84180000", "7A788EA6B8A3E733", visa,
                                                           mac_over_transaction=True)))
    assert r.command == H("8418000008" "04EDE90BC24CC35E")
    pan = "1234567890123456"  # the card's own: a PIN changes only on its card

    def change(script: card_pb.IssuerScript, pin: str = "9999", **kw: object) -> bytes:
        block = ref.tdes_ecb(keys["zpk1"], ref.iso0(pin, pan))
        return bytes(core.cards.GeneratePinChangeScript(card_pb.GeneratePinChangeScriptRequest(
            integrity_key=_key("card.imk-smi"), confidentiality_key=_key("card.imk-smc"), script=script,
            pin_key=_key("zpk1"), format=pb.PIN_BLOCK_FORMAT_ISO_0, pin_block=block, pan=pan,
            **kw)).command)  # type: ignore[arg-type]

    vis = _script("84240002", "7A788EA6B8A3E733", visa, encryption=card_pb.SCRIPT_ENCRYPTION_VISA,
                  mac_over_transaction=True)
    assert change(vis, ac_key=_key("card.imk-ac")) == H("8424000218BB221AF527377A2811D2B6EBC396A9391A22B480EF312F40")
    mc = _script("84240002", "24CCF3DEE3158C70", card_pb.SCRIPT_KEY_DERIVATION_EMV_CSK,
                 encryption=card_pb.SCRIPT_ENCRYPTION_MASTERCARD, mac_over_transaction=True)
    assert change(mc) == H("842400021000859B8FE53F316DEB4B64C36BF88E39")
    # A block that fails after decryption is the one generic error; a key of another usage is refused.
    code, details = code_of(lambda: core.cards.GeneratePinChangeScript(card_pb.GeneratePinChangeScriptRequest(
        integrity_key=_key("card.imk-smi"), confidentiality_key=_key("card.imk-smc"), script=mc,
        pin_key=_key("zpk1"), format=pb.PIN_BLOCK_FORMAT_ISO_0, pin_block=bytes(8), pan=pan)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details == "pin_block: PIN block invalid"
    assert code_of(lambda: change(mc, ac_key=_key("card.imk-smc")))[0] == grpc.StatusCode.FAILED_PRECONDITION
    # A PIN block for another card is refused, before it is deciphered.
    other = "4000001234567899"
    code, details = code_of(lambda: core.cards.GeneratePinChangeScript(card_pb.GeneratePinChangeScriptRequest(
        integrity_key=_key("card.imk-smi"), confidentiality_key=_key("card.imk-smc"), script=mc, pin_key=_key("zpk1"),
        format=pb.PIN_BLOCK_FORMAT_ISO_0, pin_block=ref.tdes_ecb(keys["zpk1"], ref.iso0("1234", other)), pan=other)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("pan")
    # Every PIN change counts against its card (per_pan = 3 here), in its own counter and in the card's
    # PIN-try counter: chosen PINs' blocks reach a ZPK through one-time keys, so unlimited PIN changes
    # onto a card were a codebook for its genuine one (a review recovered PINs so). Two changes and the
    # failed block above make three: a further change is refused, and the two made are audited.
    code, details = code_of(lambda: change(mc, pin="5678"))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and details.startswith("pan: too many PIN changes")
    from hsmsvc.hsm.soft.backend import SoftBackend
    from hsmsvc.keys.store import KeyStore
    from tests.api.conftest import PASSPHRASE

    b = SoftBackend.from_sealed(next(server.log.parent.glob("lmk.sealed")), PASSPHRASE.encode())
    st = KeyStore(server.store_url, b)
    try:
        rows = [x for x in st.audit_rows() if x.action == "card.pin_change" and x.key_id == "card.imk-smc"]
        assert len(rows) == 2 and all(pan not in x.detail for x in rows)  # the two made
    finally:
        st.close()
        b.close()
    # Script data is never enciphered: under the key a PIN change uses it was a codebook for PINs.
    code, details = code_of(lambda: core.cards.GenerateIssuerScript(card_pb.GenerateIssuerScriptRequest(
        integrity_key=_key("card.imk-smi"), script=mc, data=H("0824123FFFFFFFFF"))))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("encryption")
    assert code_of(lambda: core.cards.GenerateIssuerScript(card_pb.GenerateIssuerScriptRequest(
        integrity_key=_key("card.imk-smc"), script=mc)))[0] == grpc.StatusCode.FAILED_PRECONDITION
