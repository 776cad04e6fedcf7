"""Client input that once reached INTERNAL or UNKNOWN gets a precise status (issue 26, item 7).

Against real servers over mTLS on loopback: the session's PostgreSQL-backed one
(NUL bytes, timestamps, undecodable messages) and one of this module's on
SQLite (64-bit counts beyond SQL's signed integers).
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from hsmsvc_client.v1 import mac_service_pb2
from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import key_sync_service_pb2 as sync_pb
from hsmsvc_client.v1 import types_pb2 as pb
from hsmsvc_client import Client, ClientTls
from tests.api.conftest import POLICY, Env, code_of, launch, seal_lmk, stop, template
from tests.api.methods import HOLDERS, METHODS, who_may_call
from tools.bench.pki import ThrowawayCA as TestCA

# A field 1 of wire type 2 whose length runs past the end: no message decodes from it.
UNDECODABLE = b"\x0a\x05ab"
B = pb.MODE_OF_USE_ENCRYPT_DECRYPT


def _channel(server: Env, who: str) -> grpc.Channel:
    ident = server.ids[who]
    creds = ClientTls(server.ca.ca_file, ident.cert, ident.key, "localhost").credentials()
    return grpc.secure_channel(f"127.0.0.1:{server.port}", creds, (("grpc.ssl_target_name_override", "localhost"),))


def _raw_call(ch: grpc.Channel, service: Any, method: Any, data: bytes) -> tuple[grpc.StatusCode, str]:
    """Sends ``data`` as the request bytes, as a generic client would; the status it ends with."""
    path = f"/{service.full_name}/{method.name}"
    try:
        if method.client_streaming:
            for _ in ch.stream_stream(path)(iter([data]), timeout=10):
                pass
        else:
            ch.unary_unary(path)(data, timeout=10)
    except grpc.RpcError as e:
        return e.code(), e.details() or ""
    return grpc.StatusCode.OK, ""


def _scrape(server: Env) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5).read().decode()


def test_undecodable_request_on_every_method_is_invalid_argument_logged_and_counted(server: Env) -> None:
    channels = {who: _channel(server, who) for who in HOLDERS.values()}
    try:
        for service, method in METHODS:
            code, details = _raw_call(channels[who_may_call(service, method)], service, method, UNDECODABLE)
            name = f"{service.name}.{method.name}"
            assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT, "request: cannot be decoded"), name
        # Still serving, and the same method answers a well-formed request.
        r = channels["key-manager"].unary_unary(
            "/hsmsvc.v1.KeyService/GetKey", request_serializer=key_pb.GetKeyRequest.SerializeToString,
            response_deserializer=key_pb.GetKeyResponse.FromString)
        with pytest.raises(grpc.RpcError) as e:
            r(key_pb.GetKeyRequest(key=pb.KeyRef(key_id="no-such-key")), timeout=5)
        assert e.value.code() is grpc.StatusCode.NOT_FOUND
    finally:
        for ch in channels.values():
            ch.close()
    metrics = _scrape(server)
    for method in ("KeyService.GetKey", "PinService.TranslatePin", "PinService.StreamTranslatePin"):
        assert f'hsmsvc_rpc_calls_total{{code="INVALID_ARGUMENT",method="{method}"}}' in metrics, method
    # Access lines are written in batches, at most 0.1 s after the call.
    deadline = time.monotonic() + 5
    while True:
        records = [json.loads(ln) for ln in server.log.read_text().splitlines() if ln.startswith("{")]
        seen = {r.get("method") for r in records
                if r.get("logger") == "hsmsvc.access" and r.get("code") == "INVALID_ARGUMENT"}
        if {"KeyService.GetKey", "PinService.TranslatePin", "PinService.StreamTranslatePin"} <= seen:
            break
        assert time.monotonic() < deadline, "no access-log line for an undecodable request"
        time.sleep(0.05)
    assert "Traceback" not in server.log.read_text()


def test_undecodable_message_after_good_ones_ends_the_stream_invalid_argument(server: Env) -> None:
    good = mac_service_pb2.StreamGenerateMacRequest(correlation_id=7).SerializeToString()
    ch = _channel(server, "core-banking")
    try:
        out: list[bytes] = []
        with pytest.raises(grpc.RpcError) as e:
            for reply in ch.stream_stream("/hsmsvc.v1.MacService/StreamGenerateMac")(
                    iter([good, UNDECODABLE, good]), timeout=10):
                out.append(reply)
        assert e.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert e.value.details() == "request: cannot be decoded"
        # The good message before it was answered in-band (no key given: its own refusal).
        first = mac_service_pb2.StreamGenerateMacResponse.FromString(out[0])
        assert first.correlation_id == 7 and first.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    finally:
        ch.close()


def _notice(**kw: Any) -> sync_pb.ApplyKeyChangeRequest:
    ok = Timestamp(seconds=int(time.time()))
    fields: dict[str, Any] = {"zone": "branch-0001", "sequence": 1, "issue_time": ok, "activate_time": ok,
                              "mac": bytes(16), **kw}
    return sync_pb.ApplyKeyChangeRequest(notice=sync_pb.KeyChangeNotice(**fields))


@pytest.mark.parametrize("field,ts", [
    ("issue_time", Timestamp(seconds=2**62)),
    ("issue_time", Timestamp(seconds=-2**62)),
    ("activate_time", Timestamp(seconds=253_402_300_800)),  # 10000-01-01
    ("activate_time", Timestamp(seconds=1, nanos=-1)),
    ("issue_time", Timestamp(seconds=1, nanos=1_000_000_000)),
])
def test_apply_key_change_with_an_invalid_timestamp_is_invalid_argument(server: Env, field: str,
                                                                        ts: Timestamp) -> None:
    code, details = code_of(server.client("key-manager").sync.ApplyKeyChange, _notice(**{field: ts}))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith(f"notice.{field}: not a valid timestamp"), details


NUL = "a\x00b"


@pytest.mark.parametrize("call,field", [
    (lambda c: c.sync.StartKeyChange(sync_pb.StartKeyChangeRequest(zone=NUL)), "zone"),
    (lambda c: c.sync.ApplyKeyChange(_notice(zone=NUL)), "notice.zone"),
    (lambda c: c.sync.ConfirmKeyChange(sync_pb.ConfirmKeyChangeRequest(
        confirmation=sync_pb.KeyChangeConfirmation(zone=NUL, sequence=1))), "confirmation.zone"),
    (lambda c: c.keys.ListKeys(key_pb.ListKeysRequest(zone=NUL)), "zone"),
    (lambda c: c.keys.GetKey(key_pb.GetKeyRequest(key=pb.KeyRef(alias=NUL))), "key"),
    (lambda c: c.keys.GetKey(key_pb.GetKeyRequest(key=pb.KeyRef(key_id="x\ty"))), "key"),
    (lambda c: c.keys.GenerateKey(key_pb.GenerateKeyRequest(template=template(
        "nul-1", pb.KEY_TYPE_DEK, pb.ALGORITHM_AES_128, pb.KEY_USAGE_DATA, B, zone=NUL))), "template.zone"),
    (lambda c: c.keys.GenerateKey(key_pb.GenerateKeyRequest(template=template(
        "nul-2", pb.KEY_TYPE_DEK, pb.ALGORITHM_AES_128, pb.KEY_USAGE_DATA, B, alias=NUL))), "template.alias"),
    (lambda c: c.keys.GenerateKey(key_pb.GenerateKeyRequest(template=template(
        NUL, pb.KEY_TYPE_DEK, pb.ALGORITHM_AES_128, pb.KEY_USAGE_DATA, B))), "template.key_id"),
    (lambda c: c.keys.UpdateKeyState(key_pb.UpdateKeyStateRequest(
        key=pb.KeyRef(key_id="dek"), state=pb.KEY_STATE_SUSPENDED, reason="line\nbreak")), "reason"),
    (lambda c: c.sync.SignOn(sync_pb.SignOnRequest(tmk=pb.KeyRef(key_id="branch-0001.tmk"),
                                                   terminal_id=NUL)), "terminal_id"),
])
def test_text_with_a_control_character_is_invalid_argument_naming_the_field(server: Env, call: Any,
                                                                           field: str) -> None:
    client = server.client("core-banking" if field == "terminal_id" else "key-manager")
    code, details = code_of(call, client)
    assert code is grpc.StatusCode.INVALID_ARGUMENT, (code, details)
    assert details.startswith(f"{field}:"), details
    assert "\x00" not in details


# -- 64-bit counts on SQLite ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    d: Path = tmp_path_factory.mktemp("sqlite-api")
    ca = TestCA(d)
    manager = ca.issue("key-manager")
    sealed_file = seal_lmk(d)
    (d / "policy.toml").write_text(POLICY)
    proc, info = launch(d, f"sqlite:///{d / 'keys.db'}", sealed_file, ca.issue("hsmsvc-server", server=True), ca)
    client = Client(f"127.0.0.1:{info['port']}", ClientTls(ca.ca_file, manager.cert, manager.key, "localhost"))
    try:
        yield client
    finally:
        client.close()
        stop(proc, d / "server.log")


RANGE = re.compile(r"max_uses: from 0 to 9223372036854775807$")


@pytest.mark.parametrize("max_uses", [2**63, 2**64 - 1])
def test_max_uses_beyond_a_signed_64_bit_integer_is_invalid_argument(sqlite_server: Client, max_uses: int) -> None:
    c = sqlite_server
    t = template(f"big-{max_uses}", pb.KEY_TYPE_DEK, pb.ALGORITHM_AES_128, pb.KEY_USAGE_DATA, B, max_uses=max_uses)
    code, details = code_of(c.keys.GenerateKey, key_pb.GenerateKeyRequest(template=t))
    assert code is grpc.StatusCode.INVALID_ARGUMENT and RANGE.search(details), details
    assert details.startswith("template.max_uses:")
    code, details = code_of(c.keys.ImportKey, key_pb.ImportKeyRequest(
        kek=pb.KeyRef(key_id="any-kek"), wrapped_key=bytes(16), template=t))
    assert code is grpc.StatusCode.INVALID_ARGUMENT and RANGE.search(details), details
    # Nothing was stored.
    assert code_of(c.keys.GetKey, key_pb.GetKeyRequest(key=pb.KeyRef(key_id=t.key_id)))[0] is grpc.StatusCode.NOT_FOUND
    ok = template(f"ok-{max_uses}", pb.KEY_TYPE_DEK, pb.ALGORITHM_AES_128, pb.KEY_USAGE_DATA, B, max_uses=2**63 - 1)
    assert c.keys.GenerateKey(key_pb.GenerateKeyRequest(template=ok)).key.max_uses == 2**63 - 1
    code, details = code_of(c.keys.RotateKey, key_pb.RotateKeyRequest(key=pb.KeyRef(key_id=ok.key_id),
                                                                      max_uses=max_uses))
    assert code is grpc.StatusCode.INVALID_ARGUMENT and details.startswith("max_uses:") and RANGE.search(details)
    assert c.get_key(ok.key_id).version == 1
