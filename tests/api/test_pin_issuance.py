"""Issue 27 items 1 and 4: PIN issuance and the stored-PIN sample check are no PIN oracle.

Against the real mTLS server of tests/api/conftest.py (policy POLICY there, attempt
limits per_pan 3 and per_principal 50); offsets and PVVs checked with pyca/cryptography.
"""

from __future__ import annotations

import threading

import grpc
import pytest
from sqlalchemy import create_engine, func, select

from hsmsvc.keys.schema import audit
from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import pin_service_pb2 as pin_pb
from hsmsvc_client.v1 import types_pb2 as pb
from hsmsvc_client import Client, ClientError
from tests import reference as ind
from tests.api.conftest import TABLE, Env, code_of, template

StatusCode = grpc.StatusCode
ISO0 = pb.PIN_BLOCK_FORMAT_ISO_0


def _offset_request(keys: dict[str, bytes], pin: str, pan: str, **kw: str) -> pin_pb.GeneratePinOffsetRequest:
    return pin_pb.GeneratePinOffsetRequest(
        key=pb.KeyRef(key_id="zpk1"), format=ISO0, pin_block=ind.tdes_ecb(keys["zpk1"], ind.iso0(pin, pan)),
        pan=pan, pvk=pb.KeyRef(key_id="pvk-ibm"), **kw)


def _pvv_request(keys: dict[str, bytes], pin: str, pan: str) -> pin_pb.GeneratePvvRequest:
    return pin_pb.GeneratePvvRequest(
        key=pb.KeyRef(key_id="zpk1"), format=ISO0, pin_block=ind.tdes_ecb(keys["zpk1"], ind.iso0(pin, pan)),
        pan=pan, pvk=pb.KeyRef(key_id="pvk-visa"), pvki=1)


def _vdata(pan: str) -> str:
    """hsmsvc's rule, written out: the 12 PAN digits before the check digit, padded with F."""
    return pan[-13:-1] + "FFFF"


def _audit_rows(server: Env, actor: str, action: str) -> int:
    engine = create_engine(server.store_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(audit).where(
                audit.c.actor == actor, audit.c.action == action)).scalar_one())
    finally:
        engine.dispose()


def test_operator_cannot_generate_offsets_or_pvvs(core: Client, keys: dict[str, bytes]) -> None:
    pan = ind.luhn_pan("400000271828182")
    assert code_of(core.pins.GeneratePinOffset, _offset_request(keys, "1234", pan))[0] is StatusCode.PERMISSION_DENIED
    assert code_of(core.pins.GeneratePvv, _pvv_request(keys, "1234", pan))[0] is StatusCode.PERMISSION_DENIED


def test_the_offset_arithmetic_recovers_nothing(server: Env, core: Client, keys: dict[str, bytes]) -> None:
    """The finding: offsets of a captured block and of a known-PIN block under the same chosen
    validation data give the captured PIN digit by digit. An operator cannot ask; an issuer
    cannot choose the validation data, so the two offsets are under different data."""
    issuer = server.client("pin-issuer")
    own_pin, own_pan = "0000", ind.luhn_pan("400000314159265")
    victims = [(f"{7 * i + 1:04d}"[-4:], ind.luhn_pan(f"40000011111{i:04d}")) for i in range(5)]
    # The attack as reported, with the caller's own validation data: refused before anything is deciphered.
    code, details = code_of(issuer.pins.GeneratePinOffset,
                            _offset_request(keys, own_pin, own_pan, validation_data="1234567890123445"))
    assert (code, details) == (StatusCode.INVALID_ARGUMENT,
                               "validation_data: must be empty: the validation data is the PAN's")
    own = issuer.pins.GeneratePinOffset(_offset_request(keys, own_pin, own_pan)).offset
    assert own == ind.ibm3624_offset(keys["pvk-ibm"], _vdata(own_pan), TABLE, own_pin)
    recovered = []
    for pin, pan in victims:
        victim = issuer.pins.GeneratePinOffset(_offset_request(keys, pin, pan)).offset
        assert victim == ind.ibm3624_offset(keys["pvk-ibm"], _vdata(pan), TABLE, pin)
        guess = "".join(str((int(p) - int(o) + int(v)) % 10) for p, o, v in zip(own_pin, own, victim))
        recovered.append(guess == pin)
        # What issuance made verifies for the operator with the same rule (empty validation data).
        assert core.verify_pin_offset("zpk1", _offset_request(keys, pin, pan).pin_block, pan, "pvk-ibm", "", victim)
    assert recovered == [False] * 5
    # The operator still may not generate, whatever it sends.
    assert (code_of(core.pins.GeneratePinOffset, _offset_request(keys, own_pin, own_pan))[0]
            is StatusCode.PERMISSION_DENIED)


def test_every_generation_counts_against_card_and_principal(server: Env, keys: dict[str, bytes]) -> None:
    issuer = server.client("pin-issuer")
    pan = ind.luhn_pan("400000577215664")
    before = _audit_rows(server, "pin-issuer", "pin.generate.failed")
    pvv = issuer.pins.GeneratePvv(_pvv_request(keys, "4321", pan)).pvv
    assert pvv == ind.visa_pvv(keys["pvk-visa"], pan, 1, "4321")
    # An offset counts under the PAN field, as its verification does; a PVV under its 11 digits.
    for pin in ("1111", "2222", "3333"):
        issuer.pins.GeneratePinOffset(_offset_request(keys, pin, pan))
    # per_pan = 3: the fourth offset for this card in the window is refused before decryption,
    # and so is one for a prefixed PAN: the same 12 digits, so the same card.
    refused = (StatusCode.RESOURCE_EXHAUSTED, "pan: too many failed PIN checks for this card")
    assert code_of(issuer.pins.GeneratePinOffset, _offset_request(keys, "4444", pan)) == refused
    prefixed = ind.luhn_pan("9" + pan[:-1])
    assert prefixed[-13:-1] == pan[-13:-1]
    assert code_of(issuer.pins.GeneratePinOffset, _offset_request(keys, "4444", prefixed)) == refused
    # Each answered generation is one counted attempt, audited under the issuer.
    assert _audit_rows(server, "pin-issuer", "pin.generate.failed") == before + 4



def test_concurrent_generations_for_one_card_answer_exactly_the_limit(server: Env, keys: dict[str, bytes]) -> None:
    """Each generation is settled in the store before its offset is answered, so a burst
    of them for one card (across the server's transaction threads) yields per_pan offsets."""
    issuer = server.client("pin-issuer")
    pan = ind.luhn_pan("400000161803398")
    pins = [f"{1000 + 7 * i}" for i in range(12)]
    got: list[object] = [None] * len(pins)
    start = threading.Barrier(len(pins))

    def one(i: int) -> None:
        start.wait()
        try:
            got[i] = issuer.pins.GeneratePinOffset(_offset_request(keys, pins[i], pan)).offset
        except ClientError as e:
            got[i] = (e.code, e.details)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(pins))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    answered = [i for i, g in enumerate(got) if isinstance(g, str)]
    assert len(answered) == 3, got
    refused = (StatusCode.RESOURCE_EXHAUSTED, "pan: too many failed PIN checks for this card")
    assert all(got[i] == refused for i in range(len(pins)) if i not in answered), got
    for i in answered:  # and each answer is the offset pyca computes for its PIN
        assert got[i] == ind.ibm3624_offset(keys["pvk-ibm"], _vdata(pan), TABLE, pins[i])

def test_policy_refuses_an_issuer_or_reencryptor_that_operates() -> None:
    from hsmsvc.errors import InvalidInput
    from hsmsvc.service.authz import Policy

    for role in ("issuer", "reencryptor"):
        with pytest.raises(InvalidInput, match="separate duties"):
            Policy.from_dict({"principals": [{"name": "x", "roles": ["operator", role], "keys": ["*"]}]})
    p = Policy.from_dict({"principals": [{"name": "x", "roles": ["operator"], "keys": ["*"]}]}).principal("x")
    assert p.may_call("PinService.VerifyPin")
    for method in ("GeneratePinOffset", "GeneratePvv", "CompareStoredPins"):
        assert not p.may_call(f"PinService.{method}")


def test_compare_stored_pins_is_counted_and_refused_to_operators(server: Env, core: Client,
                                                                  keys: dict[str, bytes]) -> None:
    """The finding: 100 candidate PINs in one call found the match, uncounted, even once locked."""
    mgr = server.client("key-manager")
    mgr.keys.GenerateKey(key_pb.GenerateKeyRequest(template=template(
        "psk-sample-old", pb.KEY_TYPE_PSK, pb.ALGORITHM_AES_128, pb.KEY_USAGE_PIN_ENCRYPTION,
        pb.MODE_OF_USE_ENCRYPT_DECRYPT)))
    account, pan, pin = "6222020200998877", ind.luhn_pan("400000662607015"), "8642"
    stored = core.pins.EncryptPinForStorage(pin_pb.EncryptPinForStorageRequest(
        key=pb.KeyRef(key_id="zpk1"), format=ISO0, pin_block=ind.tdes_ecb(keys["zpk1"], ind.iso0(pin, pan)),
        pan=pan, psk=pb.KeyRef(key_id="psk-sample-old"), account=account)).stored_pin
    candidates = [f"{i * 97 % 10000:04d}" for i in range(99)] + [pin]  # the right PIN is the 100th

    def ask(who: Client, pins: list[str]) -> pin_pb.CompareStoredPinsResponse:
        return who.pins.CompareStoredPins(pin_pb.CompareStoredPinsRequest(
            old_psk=pb.KeyRef(key_id="psk-sample-old"), new_psk=pb.KeyRef(key_id="psk-digest"),
            accounts=[account] * len(pins), old_stored_pins=stored * len(pins),
            new_stored_pins=b"".join(ind.pin_digest(keys["psk"], account, p) for p in pins)))

    assert code_of(ask, core, candidates)[0] is StatusCode.PERMISSION_DENIED
    checker = server.client("sample-checker")
    assert list(ask(checker, [pin, "0000", "1111"]).same) == [True, False, False]
    assert _audit_rows(server, "sample-checker", "pin.compare.failed") == 1  # one row per run
    # 2 failures counted, 48 left: the first 48 candidates are compared and counted, then the call is refused.
    assert code_of(ask, checker, candidates) == (StatusCode.RESOURCE_EXHAUSTED,
                                                 "principal: too many failed PIN checks; try later")
    # Locked: even the right pair is no longer compared.
    assert code_of(ask, checker, [pin])[0] is StatusCode.RESOURCE_EXHAUSTED
    # Old and new PSK must differ: the check is of a move between keys.
    same_key = pin_pb.CompareStoredPinsRequest(
        old_psk=pb.KeyRef(key_id="psk-sample-old"), new_psk=pb.KeyRef(key_id="psk-sample-old"),
        accounts=[account], old_stored_pins=stored, new_stored_pins=stored)
    assert code_of(server.client("pin-reencryptor").pins.CompareStoredPins, same_key) == (
        StatusCode.INVALID_ARGUMENT, "new_psk: a different PSK from old_psk")
