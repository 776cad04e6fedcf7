"""End to end over mTLS: every result checked against pyca/cryptography (tests/reference.py)."""

from __future__ import annotations

import json
import re
import secrets
import time
import urllib.request
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import pin_service_pb2 as pin_pb
from hsmsvc_client.v1 import types_pb2 as pb
from hsmsvc_client import Client, ClientTls
from tests import reference as ind
from tests.api.conftest import TABLE, Env, code_of, template
from tests.hsm.helpers import clear_key
from tests.reference import tdes_kcv, variant
from hsmsvc.types import Algorithm

PAN = "4012345678909"
PIN = "1234"
VDATA = "1234567890123445"
StatusCode = grpc.StatusCode


# -- PINs ---------------------------------------------------------------------------------


def test_translate_format0_zpk1_to_zpk2(core: Client, keys: dict[str, bytes]) -> None:
    block = ind.tdes_ecb(keys["zpk1"], ind.iso0(PIN, PAN))
    out = core.translate_pin("zpk1", "zpk2", block, pan=PAN)
    assert ind.decode_iso0(ind.tdes_ecb(keys["zpk2"], out, decrypt=True), PAN) == PIN
    assert out != block


def test_branch_translates_from_its_tpk_by_stream(server: Env, keys: dict[str, bytes]) -> None:
    branch = server.client("branch-0001")
    pan = "4000000000000036"  # its own card: the bad blocks below count against it
    block = ind.tdes_ecb(keys["branch-0001.tpk"], ind.iso0("987654", pan))
    reqs = [pin_pb.StreamTranslatePinRequest(correlation_id=i, request=pin_pb.TranslatePinRequest(
        source_key=pb.KeyRef(key_id="branch-0001.tpk"), source_format=pb.PIN_BLOCK_FORMAT_ISO_0,
        destination_key=pb.KeyRef(key_id="branch-0001.zpk"), destination_format=pb.PIN_BLOCK_FORMAT_ISO_0,
        pin_block=block if i % 2 == 0 else bytes(8), pan=pan)) for i in range(6)]
    ch = branch._channels[0]
    call = ch.stream_stream("/hsmsvc.v1.PinService/StreamTranslatePin",
                            request_serializer=pin_pb.StreamTranslatePinRequest.SerializeToString,
                            response_deserializer=pin_pb.StreamTranslatePinResponse.FromString)
    answers = {a.correlation_id: a for a in call(iter(reqs), timeout=10)}
    assert sorted(answers) == list(range(6))
    for i, a in answers.items():
        if i % 2 == 0:
            assert a.code == 0
            got = ind.tdes_ecb(keys["branch-0001.zpk"], a.response.pin_block, decrypt=True)
            assert ind.decode_iso0(got, pan) == "987654"
        else:
            assert (a.code, a.message) == (StatusCode.INVALID_ARGUMENT.value[0], "pin_block: PIN block invalid")


def test_translate_batch_packs_blocks_and_reports_bad_items(core: Client, keys: dict[str, bytes]) -> None:
    pans = [ind.luhn_pan(f"4012345678{i:02d}") for i in range(10)]
    blocks = [ind.tdes_ecb(keys["zpk1"], ind.iso0(f"{1000 + i}", p)) for i, p in enumerate(pans)]
    blocks[3] = secrets.token_bytes(8)
    r = core.pins.TranslatePinBatch(pin_pb.TranslatePinBatchRequest(
        source_key=pb.KeyRef(key_id="zpk1"), source_format=pb.PIN_BLOCK_FORMAT_ISO_0,
        destination_key=pb.KeyRef(key_id="zpk2"), destination_format=pb.PIN_BLOCK_FORMAT_ISO_0,
        pin_blocks=b"".join(blocks), pans=pans))
    assert [e.index for e in r.errors] == [3] and r.errors[0].message == "pin_block: PIN block invalid"
    for i, p in enumerate(pans):
        if i != 3:
            out = r.pin_blocks[8 * i:8 * i + 8]
            assert ind.decode_iso0(ind.tdes_ecb(keys["zpk2"], out, decrypt=True), p) == f"{1000 + i}"


def test_a_kept_translation_route_follows_caller_state_and_expiry(server: Env, core: Client) -> None:
    """The server keeps each caller's checked route between two keys; a revocation, an expiry or
    another caller's request must still be refused at once."""
    mgr = server.client("key-manager")
    T2, B = pb.ALGORITHM_TDES_2KEY, pb.MODE_OF_USE_ENCRYPT_DECRYPT
    clear: dict[str, bytes] = {}
    for name, life in (("route-a", 2), ("route-b", 0), ("route-c", 0)):
        clear[name] = clear_key(Algorithm.TDES_2KEY)
        mgr.keys.ImportKey(key_pb.ImportKeyRequest(
            kek=pb.KeyRef(key_id="zmk-core"), wrapped_key=ind.aes_ecb(variant(server.clear["zmk"], "ZPK"), clear[name]),
            kcv=tdes_kcv(clear[name]), template=template(name, pb.KEY_TYPE_ZPK, T2, pb.KEY_USAGE_PIN_ENCRYPTION, B,
                                                          lifetime_seconds=life)))
    expires = time.monotonic() + 2
    ab = ind.tdes_ecb(clear["route-a"], ind.iso0(PIN, PAN))
    bc = ind.tdes_ecb(clear["route-b"], ind.iso0(PIN, PAN))
    for _ in range(3):
        out = core.translate_pin("route-a", "route-b", ab, pan=PAN)
        assert ind.decode_iso0(ind.tdes_ecb(clear["route-b"], out, decrypt=True), PAN) == PIN
        core.translate_pin("route-b", "route-c", bc, pan=PAN)
    # Same request words, another caller: its own access is checked.
    branch = server.client("branch-0001")
    assert code_of(branch.translate_pin, "route-b", "route-c", bc, PAN) == (
        StatusCode.NOT_FOUND, "source_key: no such key, alias or version")
    mgr.keys.UpdateKeyState(key_pb.UpdateKeyStateRequest(key=pb.KeyRef(key_id="route-c", version=1),
                                                         state=pb.KEY_STATE_SUSPENDED, reason="test"))
    assert code_of(core.translate_pin, "route-b", "route-c", bc, PAN)[0] == StatusCode.FAILED_PRECONDITION
    time.sleep(max(0.0, expires - time.monotonic()) + 0.2)
    assert code_of(core.translate_pin, "route-a", "route-b", ab, PAN) == (
        StatusCode.FAILED_PRECONDITION, "source_key: expired")


def test_verify_by_ibm3624_offset(server: Env, core: Client, keys: dict[str, bytes]) -> None:
    pan = "4000001234567899"
    block = ind.tdes_ecb(keys["zpk1"], ind.iso0(PIN, pan))
    # Issued by the issuer (not an operator) under the PAN's validation data.
    offset = ind.ibm3624_offset(keys["pvk-ibm"], pan[-13:-1] + "FFFF", TABLE, PIN)
    gen = server.client("pin-issuer").pins.GeneratePinOffset(pin_pb.GeneratePinOffsetRequest(
        key=pb.KeyRef(key_id="zpk1"), format=pb.PIN_BLOCK_FORMAT_ISO_0, pin_block=block, pan=pan,
        pvk=pb.KeyRef(key_id="pvk-ibm")))
    assert gen.offset == offset
    assert core.verify_pin_offset("zpk1", block, pan, "pvk-ibm", "", offset)
    # An offset issued elsewhere under other validation data still verifies when the data is named.
    legacy = ind.ibm3624_offset(keys["pvk-ibm"], VDATA, TABLE, PIN)
    assert core.verify_pin_offset("zpk1", block, pan, "pvk-ibm", VDATA, legacy)
    wrong = ind.tdes_ecb(keys["zpk1"], ind.iso0("9999", pan))
    assert not core.verify_pin_offset("zpk1", wrong, pan, "pvk-ibm", VDATA, legacy)


def test_verify_by_pvv(server: Env, core: Client, keys: dict[str, bytes]) -> None:
    pvv = ind.visa_pvv(keys["pvk-visa"], PAN, 1, PIN)
    block = ind.tdes_ecb(keys["zpk1"], ind.iso0(PIN, PAN))
    gen = server.client("pin-issuer").pins.GeneratePvv(pin_pb.GeneratePvvRequest(
        key=pb.KeyRef(key_id="zpk1"), format=pb.PIN_BLOCK_FORMAT_ISO_0, pin_block=block, pan=PAN,
        pvk=pb.KeyRef(key_id="pvk-visa"), pvki=1))
    assert gen.pvv == pvv
    assert core.verify_pin_pvv("zpk1", block, PAN, "pvk-visa", 1, pvv)
    pan2 = "4000001234567881"
    other = ind.tdes_ecb(keys["zpk1"], ind.iso0("4321", pan2))
    assert not core.verify_pin_pvv("zpk1", other, pan2, "pvk-visa", 1, pvv)


def test_verify_against_stored_digest(core: Client, keys: dict[str, bytes]) -> None:
    account = "6222020200112233446"
    block = ind.tdes_ecb(keys["zpk1"], ind.iso0("246810", PAN))
    r = core.pins.EncryptPinForStorage(pin_pb.EncryptPinForStorageRequest(
        key=pb.KeyRef(key_id="zpk1"), format=pb.PIN_BLOCK_FORMAT_ISO_0, pin_block=block, pan=PAN,
        psk=pb.KeyRef(key_id="psk-digest"), account=account))
    assert r.method == pb.STORED_PIN_METHOD_DIGEST
    assert r.stored_pin == ind.pin_digest(keys["psk"], account, "246810")

    def verify(b: bytes, pan: str) -> bool:
        return bool(core.pins.VerifyPin(pin_pb.VerifyPinRequest(
            key=pb.KeyRef(key_id="zpk1"), format=pb.PIN_BLOCK_FORMAT_ISO_0, pin_block=b, pan=pan,
            stored=pin_pb.StoredPinCheck(psk=pb.KeyRef(key_id="psk-digest"), account=account,
                                         method=pb.STORED_PIN_METHOD_DIGEST, stored_pin=r.stored_pin))).verified)

    assert verify(block, PAN)
    pan3 = "4000001234567873"
    assert not verify(ind.tdes_ecb(keys["zpk1"], ind.iso0("246811", pan3)), pan3)


def test_attempt_limit_per_card(core: Client, keys: dict[str, bytes]) -> None:
    pan = "4000007777777779"  # this test's own card: it ends locked (4111111111111111 is a DUKPT vector's)
    pvv = ind.visa_pvv(keys["pvk-visa"], pan, 1, PIN)
    # A PVV is four digits: about one wrong PIN in 10,000 shares the right one's, and is right.
    guess = next(p for p in ("0000", "0001", "0002") if ind.visa_pvv(keys["pvk-visa"], pan, 1, p) != pvv)
    wrong = ind.tdes_ecb(keys["zpk1"], ind.iso0(guess, pan))
    right = ind.tdes_ecb(keys["zpk1"], ind.iso0(PIN, pan))
    for _ in range(3):
        assert not core.verify_pin_pvv("zpk1", wrong, pan, "pvk-visa", 1, pvv)
    code, msg = code_of(core.verify_pin_pvv, "zpk1", right, pan, "pvk-visa", 1, pvv)
    assert code is StatusCode.RESOURCE_EXHAUSTED and "pan" in msg and pan not in msg


def test_no_pin_oracle_one_message_for_every_fault(core: Client, keys: dict[str, bytes]) -> None:
    k = keys["zpk1"]
    bad_fill = bytearray(ind.iso0(PIN, PAN))
    bad_fill[7] ^= 0x01  # a fill nibble that is not F
    faults = {
        "random": secrets.token_bytes(8),
        "bad control": ind.tdes_ecb(k, bytes([0x5F]) + ind.iso0(PIN, PAN)[1:]),
        "bad fill": ind.tdes_ecb(k, bytes(bad_fill)),
        "other PAN": ind.tdes_ecb(k, ind.iso0(PIN, "5500000000000004")),
    }
    pan = "4222222222222220"
    for name, block in faults.items():
        code, msg = code_of(core.translate_pin, "zpk1", "zpk2", block, pan if name != "other PAN" else PAN)
        assert (code, msg) == (StatusCode.INVALID_ARGUMENT, "pin_block: PIN block invalid"), name
    code, msg = code_of(core.translate_pin, "zpk1", "zpk2", b"short", PAN)
    assert code is StatusCode.INVALID_ARGUMENT and msg.startswith("pin_block: 8 bytes")


def test_translate_refuses_losing_the_pan_binding(core: Client, keys: dict[str, bytes]) -> None:
    block = ind.tdes_ecb(keys["zpk1"], ind.iso0(PIN, PAN))
    code, msg = code_of(core.translate_pin, "zpk1", "zpk2", block, PAN, pb.PIN_BLOCK_FORMAT_ISO_0,
                        pb.PIN_BLOCK_FORMAT_ISO_1)
    assert code is StatusCode.INVALID_ARGUMENT and msg.startswith("destination_format")
    code, msg = code_of(core.translate_pin, "zpk1", "zpk2", block, PAN, pb.PIN_BLOCK_FORMAT_UNSPECIFIED)
    assert (code, msg) == (StatusCode.INVALID_ARGUMENT, "source_format: required")


# -- MACs and data --------------------------------------------------------------------------


def test_mac_x919_and_cmac(core: Client, keys: dict[str, bytes]) -> None:
    msg = b"0200|4012345678909|000000012345|20261121"
    tag = core.generate_mac("mak-x919", msg)
    assert tag == ind.retail_mac(keys["mak-x919"], msg)
    assert core.verify_mac("mak-x919", msg, tag)
    assert not core.verify_mac("mak-x919", msg + b"!", tag)
    tag = core.generate_mac("mak-cmac", msg, pb.MAC_ALGORITHM_CMAC)
    assert tag == ind.aes_cmac(keys["mak-cmac"], msg)
    assert core.verify_mac("mak-cmac", msg, tag[:8], pb.MAC_ALGORITHM_CMAC)
    assert not core.verify_mac("mak-cmac", msg, bytes(8), pb.MAC_ALGORITHM_CMAC)
    code, text = code_of(core.generate_mac, "mak-cmac", msg, pb.MAC_ALGORITHM_ISO9797_ALG3)
    assert code is StatusCode.FAILED_PRECONDITION and "ISO9797_ALG3" in text


def test_branch_macs_by_alias(server: Env, keys: dict[str, bytes]) -> None:
    branch = server.client("branch-0001")
    msg = b"teller 7 cash withdrawal"
    assert branch.generate_mac("alias:branch-0001-mac", msg) == ind.retail_mac(keys["branch-0001.mak"], msg)


def test_field_encryption_round_trip(core: Client, keys: dict[str, bytes]) -> None:
    account = b"6222020200112233446"
    ct, iv = core.encrypt("dek", account, aad=b"acct")
    assert len(iv) == 12 and ind.aes_gcm_decrypt(keys["dek"], iv, ct, b"acct") == account
    assert core.decrypt("dek", ct, iv, aad=b"acct") == account
    ct2, iv2 = core.encrypt("dek", b"000000012344", pb.CIPHER_MODE_CBC, pb.DATA_PADDING_PKCS7)
    assert ind.aes_cbc_pkcs7_decrypt(keys["dek"], iv2, ct2) == b"000000012344"
    assert core.decrypt("dek", ct2, iv2, pb.CIPHER_MODE_CBC, pb.DATA_PADDING_PKCS7) == b"000000012344"
    code, msg = code_of(core.decrypt, "dek", ct[:-1] + bytes([ct[-1] ^ 1]), iv, pb.CIPHER_MODE_GCM,
                        pb.DATA_PADDING_NONE, b"acct")
    assert (code, msg) == (StatusCode.INVALID_ARGUMENT, "ciphertext: ciphertext invalid")


# -- authorization, usage, errors -------------------------------------------------------------


def test_permission_denied(server: Env, keys: dict[str, bytes]) -> None:
    branch = server.client("branch-0001")
    code, _ = code_of(branch.keys.ExportKey, key_pb.ExportKeyRequest(
        kek=pb.KeyRef(key_id="zmk-core"), key=pb.KeyRef(key_id="branch-0001.zpk")))
    assert code is StatusCode.PERMISSION_DENIED
    block = ind.tdes_ecb(keys["zpk1"], ind.iso0(PIN, PAN))
    code, msg = code_of(branch.translate_pin, "zpk1", "zpk2", block, PAN)
    # Another zone's key answers as a missing one (issue 27).
    assert (code, msg) == (StatusCode.NOT_FOUND, "source_key: no such key, alias or version")
    code, _ = code_of(branch.encrypt, "branch-0001.zpk", b"x")  # DataService not granted
    assert code is StatusCode.PERMISSION_DENIED
    auditor = server.client("auditor")
    assert auditor.get_key("zpk1").kcv == tdes_kcv(keys["zpk1"])
    code, _ = code_of(auditor.keys.GenerateKey, key_pb.GenerateKeyRequest(template=template(
        "x", pb.KEY_TYPE_DEK, pb.ALGORITHM_AES_128, pb.KEY_USAGE_DATA, pb.MODE_OF_USE_ENCRYPT_DECRYPT)))
    assert code is StatusCode.PERMISSION_DENIED
    code, msg = code_of(server.client("stranger").get_key, "zpk1")
    assert code is StatusCode.PERMISSION_DENIED and "principal" in msg


def test_unknown_ca_is_refused(server: Env, tmp_path: Any) -> None:
    from tools.bench.pki import ThrowawayCA as TestCA

    rogue = TestCA(tmp_path, "rogue CA").issue("core-banking")
    c = Client(f"127.0.0.1:{server.port}", ClientTls(server.ca.ca_file, rogue.cert, rogue.key, "localhost"),
               retries=0, deadline=3)
    try:
        code, _ = code_of(c.get_key, "zpk1")
        assert code is StatusCode.UNAVAILABLE
    finally:
        c.close()


def test_wrong_usage_is_failed_precondition(core: Client, keys: dict[str, bytes]) -> None:
    code, msg = code_of(core.generate_mac, "zpk1", b"data")
    assert code is StatusCode.FAILED_PRECONDITION and msg == "key: a ZPK may not be used for MAC_GENERATE"
    code, _ = code_of(core.encrypt, "mak-cmac", b"data")
    assert code is StatusCode.FAILED_PRECONDITION
    code, msg = code_of(core.translate_pin, "zpk1", "nope", bytes(8), PAN)
    assert code is StatusCode.NOT_FOUND and msg.startswith("destination_key")


def test_key_lifecycle_over_the_api(server: Env, keys: dict[str, bytes]) -> None:
    mgr = server.client("key-manager")
    g = mgr.keys.GenerateKey(key_pb.GenerateKeyRequest(template=template(
        "dek-rotating", pb.KEY_TYPE_DEK, pb.ALGORITHM_AES_128, pb.KEY_USAGE_DATA, pb.MODE_OF_USE_ENCRYPT_DECRYPT,
        alias="fields")))
    assert g.key.version == 1 and len(g.key.kcv) == 3
    code, _ = code_of(mgr.keys.GenerateKey, key_pb.GenerateKeyRequest(template=template(
        "dek-rotating", pb.KEY_TYPE_DEK, pb.ALGORITHM_AES_128, pb.KEY_USAGE_DATA, pb.MODE_OF_USE_ENCRYPT_DECRYPT)))
    assert code is StatusCode.ALREADY_EXISTS
    r = mgr.keys.RotateKey(key_pb.RotateKeyRequest(key=pb.KeyRef(alias="fields")))
    assert (r.key.version, r.previous_version) == (2, 1)
    v1 = mgr.keys.GetKey(key_pb.GetKeyRequest(key=pb.KeyRef(key_id="dek-rotating", version=1))).key
    assert v1.state == pb.KEY_STATE_RETIRING
    s = mgr.keys.UpdateKeyState(key_pb.UpdateKeyStateRequest(
        key=pb.KeyRef(key_id="dek-rotating", version=2), state=pb.KEY_STATE_SUSPENDED, reason="test"))
    assert s.key.state == pb.KEY_STATE_SUSPENDED
    code, _ = code_of(mgr.keys.UpdateKeyState, key_pb.UpdateKeyStateRequest(
        key=pb.KeyRef(key_id="dek-rotating", version=1), state=pb.KEY_STATE_ACTIVE))
    assert code is StatusCode.FAILED_PRECONDITION
    seen, token = [], ""
    while True:
        page = mgr.keys.ListKeys(key_pb.ListKeysRequest(page_size=4, page_token=token))
        seen += [(k.key_id, k.version) for k in page.keys]
        token = page.next_page_token
        if not token:
            break
    assert ("dek-rotating", 2) in seen and len(seen) == len(set(seen)) >= 14
    kcv = mgr.keys.GetKeyCheckValue(key_pb.GetKeyCheckValueRequest(key=pb.KeyRef(key_id="zpk2")))
    assert kcv.kcv == tdes_kcv(keys["zpk2"])
    code, msg = code_of(mgr.keys.ImportKey, key_pb.ImportKeyRequest(
        kek=pb.KeyRef(key_id="zmk-core"),
        wrapped_key=ind.aes_ecb(variant(server.clear["zmk"], "ZPK"), clear_key(Algorithm.TDES_2KEY)),
        kcv=b"\x00\x00\x00", template=template("zpk-badkcv", pb.KEY_TYPE_ZPK, pb.ALGORITHM_TDES_2KEY,
                                                pb.KEY_USAGE_PIN_ENCRYPTION, pb.MODE_OF_USE_ENCRYPT_DECRYPT)))
    # Under a K0 ZMK a KCV mismatch is found after deciphering: TR-31's one refusal (issue 30).
    assert (code, msg) == (StatusCode.INVALID_ARGUMENT, "key_block: key block invalid")
    code, _ = code_of(mgr.get_key, "zpk-badkcv")
    assert code is StatusCode.NOT_FOUND
    # The ZMK opted in to the legacy form for ZPK, PVK, MAK and DEK only; a ZMK
    # cannot carry a TPK at all, and the TMK not a TAK in legacy form.
    code, msg = code_of(mgr.keys.ImportKey, key_pb.ImportKeyRequest(
        kek=pb.KeyRef(key_id="branch-0001.tmk"), wrapped_key=bytes(16),
        template=template("branch-0001.tak", pb.KEY_TYPE_TAK, pb.ALGORITHM_TDES_2KEY,
                          pb.KEY_USAGE_MAC_ISO9797_ALG1, pb.MODE_OF_USE_MAC_GENERATE_VERIFY, zone="branch-0001")))
    assert code is StatusCode.FAILED_PRECONDITION and "legacy ECB form for TAK" in msg
    info = mgr.get_key("zmk-core")
    assert sorted(info.legacy_key_types) == sorted([pb.KEY_TYPE_ZPK, pb.KEY_TYPE_PVK, pb.KEY_TYPE_MAK, pb.KEY_TYPE_DEK])


# -- health, metrics, logs, audit ----------------------------------------------------------------


def test_list_keys_refuses_stray_bytes_before_the_database(server: Env) -> None:
    """Found by the fuzz test: a NUL in a zone or page token reached PostgreSQL (INTERNAL)."""
    import base64

    mgr = server.client("key-manager")
    token = base64.urlsafe_b64encode(b"zmk\x00core:1").decode()
    for req in (key_pb.ListKeysRequest(zone="core\x00"), key_pb.ListKeysRequest(page_token=token)):
        code, _ = code_of(mgr.keys.ListKeys, req)
        assert code is grpc.StatusCode.INVALID_ARGUMENT


def test_health_reports_serving_and_reflection_lists_services(server: Env) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    ident = server.ids["auditor"]
    creds = ClientTls(server.ca.ca_file, ident.cert, ident.key, "localhost").credentials()
    with grpc.secure_channel(f"127.0.0.1:{server.port}", creds,
                             (("grpc.ssl_target_name_override", "localhost"),)) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        for name in ("", "hsmsvc.v1.PinService", "hsmsvc.v1.KeyService"):
            r = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert r.status == health_pb2.HealthCheckResponse.SERVING
        answers = list(reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5))
        names = {s.name for s in answers[0].list_services_response.service}
        assert {"hsmsvc.v1.PinService", "hsmsvc.v1.KeyService", "hsmsvc.v1.CeremonyService",
                "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names


def test_metrics_count_methods(server: Env, core: Client, keys: dict[str, bytes]) -> None:
    core.generate_mac("mak-x919", b"count me")
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5).read().decode()
    assert 'hsmsvc_rpc_calls_total{code="OK",method="MacService.GenerateMac"}' in text
    assert 'hsmsvc_backend_healthy{member="0"} 1.0' in text
    assert 'hsmsvc_executor_busy{lane="transaction"}' in text and 'hsmsvc_executor_busy{lane="other"}' in text
    # Never by key id (tests/api/test_hardening.py): the label would grow with every terminal's key.
    assert re.search(r"^hsmsvc_key_uses_total [1-9]", text, re.M) and "key_id=" not in text
    assert PAN not in text


def test_logs_are_json_and_hold_no_secrets(server: Env, keys: dict[str, bytes], core: Client) -> None:
    block = ind.tdes_ecb(keys["zpk1"], ind.iso0(PIN, PAN))
    core.translate_pin("zpk1", "zpk2", block, pan=PAN)
    # Access lines are written in batches, at most 0.1 s after the call.
    deadline = time.monotonic() + 5
    while True:
        lines = [ln for ln in server.log.read_text().splitlines() if ln.startswith("{")]
        records = [json.loads(ln) for ln in lines]
        if any(r.get("method") == "PinService.TranslatePin" and r.get("request_id") not in (None, "-")
               and r.get("logger") == "hsmsvc.access" and r.get("code") == "OK" for r in records):
            break
        assert time.monotonic() < deadline, "no access log line for the call"
        time.sleep(0.05)
    text = server.log.read_text()
    secrets_hex = [k.hex() for k in keys.values()] + [block.hex()]
    for s in secrets_hex:
        assert s.lower() not in text.lower() and s.upper() not in text
    assert PAN not in text and "Traceback" not in text


def test_each_call_answers_with_its_own_request_id(server: Env, keys: dict[str, bytes]) -> None:
    """The id is set when the call's handler is looked up (api.status.Dispatch), in the call's
    own task: many calls in flight at once must each get back theirs, and the log must hold them."""
    from hsmsvc_client.v1 import pin_service_pb2_grpc as pin_grpc

    ident = server.ids["core-banking"]
    creds = ClientTls(server.ca.ca_file, ident.cert, ident.key, "localhost").credentials()
    block = ind.tdes_ecb(keys["zpk1"], ind.iso0(PIN, PAN))
    req = pin_pb.TranslatePinRequest(source_key=pb.KeyRef(key_id="zpk1"), destination_key=pb.KeyRef(key_id="zpk2"),
                                     source_format=pb.PIN_BLOCK_FORMAT_ISO_0,
                                     destination_format=pb.PIN_BLOCK_FORMAT_ISO_0, pin_block=block, pan=PAN)
    tag = secrets.token_hex(4)
    with grpc.secure_channel(f"127.0.0.1:{server.port}", creds,
                             (("grpc.ssl_target_name_override", "localhost"),)) as ch:
        call = pin_grpc.PinServiceStub(ch).TranslatePin
        ours = [f"rq-{tag}-{i}" for i in range(64)]
        futures = [call.future(req, timeout=10, metadata=(("x-request-id", rid),)) for rid in ours]
        futures += [call.future(req, timeout=10) for _ in range(8)]
        got = []
        for f in futures:
            assert f.result().pin_block
            got.append(dict(f.trailing_metadata())["x-request-id"])
        assert got[:64] == ours
        fresh = got[64:]
        assert len(set(fresh)) == 8 and not set(fresh) & set(ours) and "-" not in fresh
        # An id that is not a plain token is replaced; an error still carries the id back.
        _, trailer, _ = _answer(call, req, (("x-request-id", 'no "quotes"'),))
        assert trailer != 'no "quotes"' and trailer != "-"
        missing = pin_pb.TranslatePinRequest()
        missing.CopyFrom(req)
        missing.source_key.key_id = "no-such-key"
        code, trailer, _ = _answer(call, missing, (("x-request-id", f"rq-{tag}-missing"),))
        assert code is grpc.StatusCode.NOT_FOUND and trailer == f"rq-{tag}-missing"
    deadline = time.monotonic() + 5
    while True:
        logged = {json.loads(ln).get("request_id") for ln in server.log.read_text().splitlines()
                  if ln.startswith("{") and tag in ln}
        if logged >= {*ours, f"rq-{tag}-missing"}:
            break
        assert time.monotonic() < deadline, "access lines missing for some request ids"
        time.sleep(0.05)


def _answer(call: Any, req: Any, metadata: Any) -> tuple[grpc.StatusCode, str, Any]:
    try:
        _, c = call.with_call(req, timeout=10, metadata=metadata)
    except grpc.RpcError as e:
        return e.code(), dict(e.trailing_metadata())["x-request-id"], None
    return grpc.StatusCode.OK, dict(c.trailing_metadata())["x-request-id"], c


def test_every_key_action_and_failed_check_is_audited(server: Env, keys: dict[str, bytes]) -> None:
    from hsmsvc.hsm.soft.backend import SoftBackend
    from hsmsvc.keys.store import KeyStore
    from tests.api.conftest import PASSPHRASE

    sealed = next(server.log.parent.glob("lmk.sealed"))
    b = SoftBackend.from_sealed(sealed, PASSPHRASE.encode())
    st = KeyStore(server.store_url, b)
    try:
        report = st.verify_audit()
        assert report.ok, report.problems
        rows = list(st.audit_rows())
        actions = {(r.actor, r.action) for r in rows}
        assert ("key-manager", "key.import") in actions
        assert ("core-banking", "pin.verify.failed") in actions
        failed = [r for r in rows if r.action == "pin.verify.failed"]
        assert all(PAN not in r.detail for r in failed)
        assert any("401234***8909" in r.detail or "400000" in r.detail for r in failed)
    finally:
        st.close()
        b.close()


def test_verify_pin_batch_against_stored_digests(core: Client, keys: dict[str, bytes]) -> None:
    accounts = ["6222020200000000014", "6222020200000000022", "6222020200000000030"]
    pans = ["4000001111111118", "4000001111111126", "4000001111111134"]
    stored = b"".join(ind.pin_digest(keys["psk"], a, "135790") for a in accounts)
    pins = ["135790", "135791", "135790"]
    blocks = [ind.tdes_ecb(keys["zpk1"], ind.iso0(p, pan)) for p, pan in zip(pins, pans)]
    blocks[2] = secrets.token_bytes(8)
    r = core.pins.VerifyPinBatch(pin_pb.VerifyPinBatchRequest(
        key=pb.KeyRef(key_id="zpk1"), format=pb.PIN_BLOCK_FORMAT_ISO_0, pin_blocks=b"".join(blocks), pans=pans,
        psk=pb.KeyRef(key_id="psk-digest"), method=pb.STORED_PIN_METHOD_DIGEST, accounts=accounts,
        stored_pins=stored))
    assert list(r.verified) == [True, False, False]
    assert [(e.index, e.message) for e in r.errors] == [(2, "pin_block: PIN block invalid")]


def test_verify_pin_mac_and_encrypt_streams_answer_in_band(core: Client, keys: dict[str, bytes]) -> None:
    from hsmsvc_client.v1 import data_service_pb2 as data_pb
    from hsmsvc_client.v1 import mac_service_pb2 as mac_pb

    ch = core._channels[0]
    account = "6222020200112233446"
    block = ind.tdes_ecb(keys["zpk1"], ind.iso0("246810", PAN))
    stored = core.pins.EncryptPinForStorage(pin_pb.EncryptPinForStorageRequest(
        key=pb.KeyRef(key_id="zpk1"), format=pb.PIN_BLOCK_FORMAT_ISO_0, pin_block=block, pan=PAN,
        psk=pb.KeyRef(key_id="psk-digest"), account=account)).stored_pin
    check = pin_pb.StoredPinCheck(psk=pb.KeyRef(key_id="psk-digest"), account=account,
                                  method=pb.STORED_PIN_METHOD_DIGEST, stored_pin=stored)
    pins = [pin_pb.StreamVerifyPinRequest(correlation_id=i, request=pin_pb.VerifyPinRequest(
        key=pb.KeyRef(key_id="zpk1"), format=pb.PIN_BLOCK_FORMAT_ISO_0, pan=PAN, stored=check,
        pin_block=block if i != 2 else ind.tdes_ecb(keys["zpk1"], ind.iso0("246811", PAN)))) for i in range(3)]
    call = ch.stream_stream("/hsmsvc.v1.PinService/StreamVerifyPin",
                            request_serializer=pin_pb.StreamVerifyPinRequest.SerializeToString,
                            response_deserializer=pin_pb.StreamVerifyPinResponse.FromString)
    got = {a.correlation_id: (a.code, a.response.verified) for a in call(iter(pins), timeout=10)}
    assert got == {0: (0, True), 1: (0, True), 2: (0, False)}

    msg = b"0200 stream me"
    tag = ind.retail_mac(keys["mak-x919"], msg)
    macs = [mac_pb.StreamVerifyMacRequest(correlation_id=i, request=mac_pb.VerifyMacRequest(
        key=pb.KeyRef(key_id="mak-x919" if i != 1 else "zpk1"), algorithm=pb.MAC_ALGORITHM_ISO9797_ALG3,
        padding=pb.MAC_PADDING_METHOD_1, data=msg, mac=tag if i != 2 else bytes(8))) for i in range(3)]
    call = ch.stream_stream("/hsmsvc.v1.MacService/StreamVerifyMac",
                            request_serializer=mac_pb.StreamVerifyMacRequest.SerializeToString,
                            response_deserializer=mac_pb.StreamVerifyMacResponse.FromString)
    got2 = {a.correlation_id: (a.code, a.response.verified) for a in call(iter(macs), timeout=10)}
    # A ZPK is no MAC key: that item alone fails, the stream goes on.
    assert got2 == {0: (0, True), 1: (grpc.StatusCode.FAILED_PRECONDITION.value[0], False), 2: (0, False)}

    fields = [data_pb.StreamEncryptRequest(correlation_id=i, request=data_pb.EncryptRequest(
        key=pb.KeyRef(key_id="dek"), cipher=data_pb.FieldCipher(mode=pb.CIPHER_MODE_GCM,
                                                                padding=pb.DATA_PADDING_NONE),
        plaintext=f"amount={i}".encode())) for i in range(3)]
    call = ch.stream_stream("/hsmsvc.v1.DataService/StreamEncrypt",
                            request_serializer=data_pb.StreamEncryptRequest.SerializeToString,
                            response_deserializer=data_pb.StreamEncryptResponse.FromString)
    answers = list(call(iter(fields), timeout=10))
    assert [a.code for a in answers] == [0, 0, 0]
    for a in answers:
        assert core.decrypt("dek", a.response.ciphertext, a.response.iv) == f"amount={a.correlation_id}".encode()


def test_mac_and_field_batches_checked_item_by_item(core: Client, keys: dict[str, bytes]) -> None:
    from hsmsvc_client.v1 import data_service_pb2 as data_pb
    from hsmsvc_client.v1 import mac_service_pb2 as mac_pb

    mak = pb.KeyRef(key_id="mak-x919")
    too_long = bytes((1 << 20) + 1)
    msgs = [f"0200|{i:06d}|000000012345".encode() for i in range(5)] + [too_long, b"x"]
    r = core.macs.GenerateMacBatch(mac_pb.GenerateMacBatchRequest(
        key=mak, algorithm=pb.MAC_ALGORITHM_ISO9797_ALG3, padding=pb.MAC_PADDING_METHOD_1, messages=msgs,
        mac_length=4), timeout=30)
    assert [(e.index, e.field) for e in r.errors] == [(5, "data")]
    for i, m in enumerate(msgs):
        assert r.macs[i] == (b"" if m is too_long else ind.retail_mac(keys["mak-x919"], m)[:4])
    tags = [ind.retail_mac(keys["mak-x919"], m) if m is not too_long else bytes(8) for m in msgs]
    tags[1] = bytes(8)  # wrong
    tags[2] = tags[2][:3]  # too short to verify
    v = core.macs.VerifyMacBatch(mac_pb.VerifyMacBatchRequest(
        key=mak, algorithm=pb.MAC_ALGORITHM_ISO9797_ALG3, padding=pb.MAC_PADDING_METHOD_1, messages=msgs,
        macs=tags), timeout=30)
    assert list(v.verified) == [True, False, False, True, True, False, True]
    assert [(e.index, e.field) for e in v.errors] == [(2, "mac"), (5, "data")]
    code, text = code_of(core.macs.GenerateMacBatch, mac_pb.GenerateMacBatchRequest(
        key=mak, algorithm=pb.MAC_ALGORITHM_ISO9797_ALG3, padding=pb.MAC_PADDING_METHOD_1, messages=msgs[:2],
        mac_length=9))
    assert code is StatusCode.INVALID_ARGUMENT and text.startswith("mac_length:")

    # More fields than one random call's worth of GCM IVs (4,096 bytes), each under its own IV.
    fields = [f"amount={i:012d}".encode() for i in range(700)]
    e = core.data.EncryptBatch(data_pb.EncryptBatchRequest(
        key=pb.KeyRef(key_id="dek"), cipher=data_pb.FieldCipher(mode=pb.CIPHER_MODE_GCM, padding=pb.DATA_PADDING_NONE,
                                                                aad=b"batch"),
        plaintexts=fields), timeout=30)
    assert not e.errors and len(set(e.ivs)) == len(fields) and {len(iv) for iv in e.ivs} == {12}
    for pt, ct, iv in zip(fields, e.ciphertexts, e.ivs):
        assert ind.aes_gcm_decrypt(keys["dek"], iv, ct, b"batch") == pt
