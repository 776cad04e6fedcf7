"""Random and malformed requests to every method: only documented codes, never a crash.

Messages are built field by field from the descriptors, with key references
drawn mostly from real keys (the fuzzer's own, under its own prefix, so it
cannot disturb other tests) and enum values both valid and out of range.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hsmsvc.v1 import ceremony_service_pb2, data_service_pb2, key_service_pb2, key_sync_service_pb2
from hsmsvc.v1 import mac_service_pb2, pin_service_pb2
from hsmsvc.v1 import key_service_pb2 as key_pb
from hsmsvc.v1 import types_pb2 as pb
from hsmsvc_client import ClientTls
from tests.api.conftest import Env

ALLOWED = {
    grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE,
}
KEY_IDS = ["fuzz-zpk", "fuzz-mak", "fuzz-dek", "fuzz-pvk", "fuzz-ctk", "zpk1", "no-such-key", ""]
FILES = (key_service_pb2, pin_service_pb2, mac_service_pb2, data_service_pb2, key_sync_service_pb2,
         ceremony_service_pb2)
METHODS = [(f.DESCRIPTOR.package, s, m) for f in FILES for s in f.DESCRIPTOR.services_by_name.values()
           for m in s.methods]

def _scalar(f: FieldDescriptor) -> st.SearchStrategy[Any]:
    t = f.type
    if t == FieldDescriptor.TYPE_ENUM:
        values = [v.number for v in f.enum_type.values]
        return st.one_of(st.sampled_from(values), st.integers(-5, 50))
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t == FieldDescriptor.TYPE_STRING:
        if f.name == "key_id":
            return st.sampled_from(KEY_IDS)
        return st.one_of(st.sampled_from(["", "4012345678909", "0123456789012345", "1234", "x" * 300]),
                         st.text(max_size=24))
    if t == FieldDescriptor.TYPE_BYTES:
        return st.one_of(st.binary(max_size=40), st.sampled_from([bytes(8), bytes(16), bytes(12)]))
    if t in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_UINT64):
        return st.one_of(st.integers(0, 20), st.integers(0, 2**32 - 1))
    if t in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64):
        return st.integers(-(2**31), 2**31 - 1)
    raise AssertionError(f"no strategy for {f.full_name}")


def message(desc: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    cls = desc._concrete_class

    @st.composite
    def build(draw: Any) -> Any:
        kw: dict[str, Any] = {}
        for f in desc.fields:
            if draw(st.integers(0, 4)) == 0:
                continue
            if f.type == FieldDescriptor.TYPE_MESSAGE:
                if depth > 2 or f.message_type.full_name.startswith("google.protobuf"):
                    continue
                sub = message(f.message_type, depth + 1)
                kw[f.name] = draw(st.lists(sub, max_size=3)) if f.is_repeated else draw(sub)
            else:
                kw[f.name] = draw(st.lists(_scalar(f), max_size=4)) if f.is_repeated else draw(_scalar(f))
        try:
            return cls(**kw)
        except (TypeError, ValueError):
            return cls()  # two members of one oneof were drawn: send an empty message

    return build()


@pytest.fixture(scope="module")
def fuzz_channel(server: Env) -> Any:
    """Channels as key-manager (KeyService) and core-banking (the rest), and the fuzzer's own keys."""
    mgr = server.client("key-manager")
    B, C = pb.MODE_OF_USE_ENCRYPT_DECRYPT, pb.MODE_OF_USE_MAC_GENERATE_VERIFY
    for kid, kt, alg, use, mode, extra in [
        ("fuzz-zpk", pb.KEY_TYPE_ZPK, pb.ALGORITHM_TDES_2KEY, pb.KEY_USAGE_PIN_ENCRYPTION, B, {}),
        ("fuzz-mak", pb.KEY_TYPE_MAK, pb.ALGORITHM_TDES_2KEY, pb.KEY_USAGE_MAC_ISO9797_ALG3, C, {}),
        ("fuzz-dek", pb.KEY_TYPE_DEK, pb.ALGORITHM_AES_256, pb.KEY_USAGE_DATA, B, {}),
        ("fuzz-pvk", pb.KEY_TYPE_PVK, pb.ALGORITHM_TDES_2KEY, pb.KEY_USAGE_PIN_VERIFICATION_IBM3624, C,
         {"decimalization_table": "0123456789012345"}),
        ("fuzz-ctk", pb.KEY_TYPE_CTK, pb.ALGORITHM_RSA_2048, pb.KEY_USAGE_ASYMMETRIC_KEY_WRAPPING,
         pb.MODE_OF_USE_DECRYPT_ONLY, {}),
    ]:
        mgr.keys.GenerateKey(key_pb.GenerateKeyRequest(template=key_pb.KeyTemplate(
            key_id=kid, key_type=kt, algorithm=alg, usage=use, mode_of_use=mode,
            exportability=pb.EXPORTABILITY_NON_EXPORTABLE, **extra)))
    channels = {}
    for who in ("key-manager", "core-banking"):
        ident = server.ids[who]
        creds = ClientTls(server.ca.ca_file, ident.cert, ident.key, "localhost").credentials()
        channels[who] = grpc.secure_channel(f"127.0.0.1:{server.port}", creds,
                                            (("grpc.ssl_target_name_override", "localhost"),))
    yield channels
    for ch in channels.values():
        ch.close()


@pytest.mark.parametrize("package,service,method", METHODS, ids=[f"{s.name}.{m.name}" for _, s, m in METHODS])
def test_fuzz_every_method(fuzz_channel: Any, server: Env, package: str, service: Any, method: Any) -> None:
    ch = fuzz_channel["key-manager" if service.name in ("KeyService", "CeremonyService") else "core-banking"]
    path = f"/{service.full_name}/{method.name}"
    req_cls = method.input_type._concrete_class
    resp_cls = method.output_type._concrete_class
    streaming = method.client_streaming
    call = (ch.stream_stream if streaming else ch.unary_unary)(
        path, request_serializer=req_cls.SerializeToString, response_deserializer=resp_cls.FromString)

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), derandomize=False)
    @given(message(method.input_type))
    def run(req: Any) -> None:
        try:
            if streaming:
                for out in call(iter([req, req]), timeout=10):
                    assert out.code in {c.value[0] for c in ALLOWED}, out
            else:
                call(req, timeout=10)
        except grpc.RpcError as e:
            assert e.code() in ALLOWED, (e.code(), e.details())
            assert "Traceback" not in (e.details() or "")

    run()


def test_server_still_healthy_after_fuzzing(fuzz_channel: Any) -> None:
    r = health_pb2_grpc.HealthStub(fuzz_channel["core-banking"]).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert r.status == health_pb2.HealthCheckResponse.SERVING
