"""Seeded random and malformed requests to every RPC: precise codes only, never INTERNAL or UNKNOWN.

Every method of every hsmsvc service is found from the generated descriptors.
Each gets ``STRUCTURED`` messages built field by field from its descriptor
(strings with control characters and NUL, 64-bit extremes, negative and
unknown enum numbers, bytes of odd lengths, nested messages and Timestamps out
of range) and ``RAW`` bodies sent through a generic channel call (random
bytes, bit-flipped and truncated encodings), so undecodable input is covered.
Key references mostly name real keys (the published demo keys and the
fuzzer's own), so calls get past lookup into the use cases.

The server is this module's own (``hsmsvc serve`` on PostgreSQL, over mTLS):
what the fuzzer does to keys and attempt counters touches no other test.
Everything is drawn from ``random.Random`` seeded per method: the same
requests in the same order on every run.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor, ServiceDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hsmsvc import devseed
from hsmsvc.hsm.model import KeySpec
from hsmsvc.hsm.soft.backend import SoftBackend
from hsmsvc.keys.hierarchy import KeyManager
from hsmsvc.keys.store import KeyStore
from hsmsvc.types import Algorithm, KeyType, KeyUsage, ModeOfUse
from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import pin_service_pb2 as pin_pb
from hsmsvc_client.v1 import types_pb2 as pb
from hsmsvc_client import Client, ClientTls
from tests import pg
from tests import reference as ind
from tests.api.conftest import ATTEMPTS, PASSPHRASE, POLICY, PRINCIPALS, _form, launch, seal_lmk, stop
from tests.api.methods import METHODS, who_may_call
from tools.bench.pki import ThrowawayCA as TestCA

SEED = 26
STRUCTURED = 200  # per method: messages built from the descriptor
RAW = 40  # per method: bodies that are mostly not the message at all
ALLOWED = frozenset({
    grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE,
})
ALLOWED_IN_BAND = frozenset(c.value[0] for c in ALLOWED)
KEY_IDS = ("demo-zpk-a", "demo-zpk-b", "demo-mak", "fuzz-zmk", "fuzz-dek", "fuzz-pvk", "fuzz-ctk", "no-such-key", "")
TEXT = ("", "demo", "fuzz", "4012345678909", "0123456789012347", "1234", "012345", "x" * 300, "\x00", "a\x00b",
        "tab\there", "line\nbreak", "\x7f", "\u202e", "\u00a0", "é", "🔑", "z" * 64, "-1", "%s%n", "' OR 1=1 --")
UINT64 = (0, 1, 2, 3, 255, 2**31, 2**32 - 1, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1)
INT64 = (0, 1, -1, 2**31 - 1, -(2**31), 2**63 - 1, -(2**63))
TS_SECONDS = (0, 1, -1, 1_700_000_000, 253_402_300_799, 253_402_300_800, -62_135_596_801, 2**62, -(2**62))
TS_NANOS = (0, 1, 999_999_999, 1_000_000_000, -1, 2**31 - 1, -(2**31))
CHECKER = """
[[principals]]
name = "checker"
roles = ["operator"]
keys = ["*"]
"""
# Plausible strings by field name (a repeated field's name without its plural s).
PLAUSIBLE_TEXT = {
    "key_id": KEY_IDS, "alias": ("", "demo-alias", "fuzz-alias"), "zone": ("", "demo", "fuzz"),
    "pan": ("4012345678909", "5399999999999999", "", "12"), "account": ("401234567899", "", "1"),
    "decimalization_table": ("0123456789012347", ""), "offset": ("1234", "0000", ""), "pvv": ("1234", "0000"),
    "validation_data": ("401234567899", "40123456789"), "reason": ("", "fuzz"), "terminal_id": ("t-1", ""),
    "ceremony_id": ("", "c-1"), "page_token": ("", "1"), "custodian": ("custodian-1", ""),
}
BYTE_LENGTHS = (0, 1, 3, 7, 8, 9, 12, 15, 16, 17, 24, 31, 32, 33, 64, 255, 300)


class Draw:
    """A message's fields from its descriptor, drawn from one seeded generator."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def message(self, desc: Descriptor, depth: int = 0) -> Any:
        msg = desc._concrete_class()
        if desc.full_name == "google.protobuf.Timestamp":
            msg.seconds, msg.nanos = self.rng.choice(TS_SECONDS), self.rng.choice(TS_NANOS)
            return msg
        for f in desc.fields:
            if self.rng.random() < 0.15:
                continue
            if f.type == FieldDescriptor.TYPE_MESSAGE:
                if depth >= 3:
                    continue
                if f.is_repeated:
                    for _ in range(self.rng.randrange(4)):
                        getattr(msg, f.name).add().CopyFrom(self.message(f.message_type, depth + 1))
                else:
                    # A oneof member set later replaces this one, as on the wire.
                    getattr(msg, f.name).CopyFrom(self.message(f.message_type, depth + 1))
            elif f.is_repeated:
                getattr(msg, f.name).extend(self.scalar(f) for _ in range(self.rng.randrange(5)))
            else:
                setattr(msg, f.name, self.scalar(f))
        return msg

    def scalar(self, f: FieldDescriptor) -> Any:
        # Most values are plausible, so that a request often gets past its first
        # check and into the use case; the rest are the extremes.
        return self.plausible(f) if self.rng.random() < 0.75 else self.extreme(f)

    def plausible(self, f: FieldDescriptor) -> Any:
        rng, t = self.rng, f.type
        if t == FieldDescriptor.TYPE_ENUM:
            return rng.choice([v.number for v in f.enum_type.values if v.number] or [0])
        if t == FieldDescriptor.TYPE_BOOL:
            return rng.random() < 0.5
        if t == FieldDescriptor.TYPE_STRING:
            return rng.choice(PLAUSIBLE_TEXT.get(f.name.removesuffix("s"), ("", "demo", "1234", "fuzz-1")))
        if t == FieldDescriptor.TYPE_BYTES:
            return rng.randbytes(rng.choice((8, 8, 16, 16, 3, 32)))
        if t in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED32,
                 FieldDescriptor.TYPE_FIXED64):
            return rng.randrange(17)
        return rng.randrange(-2, 17)

    def extreme(self, f: FieldDescriptor) -> Any:
        rng, t = self.rng, f.type
        if t == FieldDescriptor.TYPE_ENUM:
            return rng.choice((0, -1, -2, -(2**31), 2**31 - 1, 99, 1000))
        if t == FieldDescriptor.TYPE_BOOL:
            return rng.random() < 0.5
        if t == FieldDescriptor.TYPE_STRING:
            if rng.random() < 0.6:
                return rng.choice(TEXT)
            return "".join(chr(rng.choice((rng.randrange(0x20), rng.randrange(0x20, 0x7f),
                                           rng.randrange(0x80, 0xd800))))
                           for _ in range(rng.randrange(24)))
        if t == FieldDescriptor.TYPE_BYTES:
            n = rng.choice(BYTE_LENGTHS) if rng.random() < 0.8 else rng.randrange(2048)
            return bytes(n) if rng.random() < 0.2 else rng.randbytes(n)
        if t in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
            return rng.choice((2**31, 2**32 - 1, rng.randrange(2**32)))
        if t in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
            return rng.choice(UINT64) if rng.random() < 0.8 else rng.randrange(2**64)
        if t in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32):
            return rng.choice((-1, 2**31 - 1, -(2**31)))
        if t in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64):
            return rng.choice(INT64)
        raise AssertionError(f"no values drawn for {f.full_name}")

    def raw(self, desc: Descriptor) -> bytes:
        """Random bytes, or a message's encoding with bits flipped or cut short."""
        rng = self.rng
        kind = rng.randrange(3)
        if kind == 0:
            return rng.randbytes(rng.randrange(1, 96))
        data = bytearray(self.message(desc).SerializeToString() or b"\x08\x01")
        if kind == 1:
            for _ in range(rng.randrange(1, 4)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            return bytes(data)
        return bytes(data[:rng.randrange(len(data))]) + rng.randbytes(rng.randrange(3))


@dataclass
class FuzzEnv:
    port: int
    ca: TestCA
    ids: dict[str, Any]
    log: Path
    check_zpks: tuple[bytes, ...]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzEnv]:
    """``hsmsvc serve`` on a throw-away PostgreSQL database with the demo keys, a ZMK and a few keys of each kind."""
    d = tmp_path_factory.mktemp("fuzz")
    ca = TestCA(d)
    ids = {n: ca.issue(n) for n in (*PRINCIPALS, "checker")}
    sealed_file = seal_lmk(d)
    (d / "policy.toml").write_text(POLICY + CHECKER)
    with pg.throwaway_db() as url:
        backend = SoftBackend.from_sealed(sealed_file, PASSPHRASE.encode())
        store = KeyStore(url, backend)
        store.migrate()
        list(devseed.seed(store, backend))
        km = KeyManager(store, backend, "test-setup")
        _form(km, KeySpec("fuzz-zmk", 1, KeyType.ZMK, Algorithm.AES_256, KeyUsage.KEK, ModeOfUse.ENCRYPT_DECRYPT,
                          zone="fuzz"), frozenset({KeyType.ZPK, KeyType.PVK, KeyType.MAK, KeyType.DEK}))
        # Named by no request the fuzzer draws, so still ACTIVE for the last check.
        check = tuple(_form(km, KeySpec(f"check-zpk-{i}", 1, KeyType.ZPK, Algorithm.TDES_2KEY,
                                        KeyUsage.PIN_ENCRYPTION, ModeOfUse.ENCRYPT_DECRYPT)) for i in (1, 2))
        store.close()
        backend.close()
        proc, info = launch(d, url, sealed_file, ca.issue("hsmsvc-server", server=True), ca, ATTEMPTS)
        env = FuzzEnv(info["port"], ca, ids, d / "server.log", check)
        try:
            mgr = Client(f"127.0.0.1:{env.port}", ClientTls(ca.ca_file, ids["key-manager"].cert,
                                                             ids["key-manager"].key, "localhost"))
            C = pb.MODE_OF_USE_MAC_GENERATE_VERIFY
            for kid, kt, alg, use, mode, extra in [
                ("fuzz-dek", pb.KEY_TYPE_DEK, pb.ALGORITHM_AES_256, pb.KEY_USAGE_DATA,
                 pb.MODE_OF_USE_ENCRYPT_DECRYPT, {}),
                ("fuzz-pvk", pb.KEY_TYPE_PVK, pb.ALGORITHM_TDES_2KEY, pb.KEY_USAGE_PIN_VERIFICATION_IBM3624, C,
                 {"decimalization_table": "0123456789012347"}),
                ("fuzz-ctk", pb.KEY_TYPE_CTK, pb.ALGORITHM_RSA_2048, pb.KEY_USAGE_ASYMMETRIC_KEY_WRAPPING,
                 pb.MODE_OF_USE_DECRYPT_ONLY, {}),
            ]:
                mgr.keys.GenerateKey(key_pb.GenerateKeyRequest(template=key_pb.KeyTemplate(
                    key_id=kid, key_type=kt, algorithm=alg, usage=use, mode_of_use=mode, zone="fuzz",
                    exportability=pb.EXPORTABILITY_NON_EXPORTABLE, **extra)))
            mgr.close()
            yield env
        finally:
            stop(proc, env.log)


@pytest.fixture(scope="module")
def channels(fuzz_server: FuzzEnv) -> Iterator[dict[str, grpc.Channel]]:
    out = {}
    for who in ("key-manager", "core-banking", "custodian-1", "checker", "pin-issuer", "pin-reencryptor",
                "auditor"):
        ident = fuzz_server.ids[who]
        creds = ClientTls(fuzz_server.ca.ca_file, ident.cert, ident.key, "localhost").credentials()
        out[who] = grpc.secure_channel(f"127.0.0.1:{fuzz_server.port}", creds,
                                       (("grpc.ssl_target_name_override", "localhost"),))
    yield out
    for ch in out.values():
        ch.close()


SEEN: dict[str, int] = {}  # status names over the module, for the summary line


def _send(ch: grpc.Channel, path: str, method: MethodDescriptor, bodies: list[bytes]) -> list[str]:
    """Sends one call with raw request bodies; what was wrong with its outcome, if anything."""
    wrong = []
    code = "OK"
    try:
        if method.client_streaming:
            resp = method.output_type._concrete_class
            for raw in ch.stream_stream(path)(iter(bodies), timeout=10):
                out = resp.FromString(raw)
                if out.code not in ALLOWED_IN_BAND:
                    wrong.append(f"in-band {out.code}: {out.message}")
        else:
            ch.unary_unary(path)(bodies[0], timeout=10)
    except grpc.RpcError as e:
        details = e.details() or ""
        code = e.code().name
        if e.code() not in ALLOWED:
            wrong.append(f"{e.code().name}: {details}")
        elif "Traceback" in details or "<class" in details:
            wrong.append(f"{e.code().name} naming Python internals: {details}")
    SEEN[code] = SEEN.get(code, 0) + 1
    return wrong


@pytest.mark.parametrize("service,method", METHODS, ids=[f"{s.name}.{m.name}" for s, m in METHODS])
def test_fuzz_every_method(channels: dict[str, grpc.Channel], service: ServiceDescriptor,
                           method: MethodDescriptor) -> None:
    path = f"/{service.full_name}/{method.name}"
    draw = Draw(random.Random(f"{SEED}:{path}"))
    ch = channels[who_may_call(service, method)]
    failures: list[str] = []
    for i in range(STRUCTURED + RAW):
        def body() -> bytes:
            if i < STRUCTURED:
                return bytes(draw.message(method.input_type).SerializeToString())
            return draw.raw(method.input_type)

        # A stream carries one to three messages, the last of which may be the bad one.
        bodies = [body() for _ in range(draw.rng.randrange(1, 4) if method.client_streaming else 1)]
        for w in _send(ch, path, method, bodies):
            failures.append(f"request {i} ({b''.join(bodies)[:48].hex()}): {w}")
    assert not failures, f"{len(failures)} wrong answers, first: " + "; ".join(failures[:5])


def test_server_still_answers_after_fuzzing(fuzz_server: FuzzEnv, channels: dict[str, grpc.Channel]) -> None:
    r = health_pb2_grpc.HealthStub(channels["checker"]).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert r.status == health_pb2.HealthCheckResponse.SERVING
    # A well-formed call gets the right answer, checked with pyca/cryptography.
    zpk_a, zpk_b = fuzz_server.check_zpks
    pan, pin = "4012345678909", "1234"
    # The checker has no failed attempts of its own: the fuzzer's may have used up core-banking's.
    translate = channels["checker"].unary_unary(
        "/hsmsvc.v1.PinService/TranslatePin", request_serializer=pin_pb.TranslatePinRequest.SerializeToString,
        response_deserializer=pin_pb.TranslatePinResponse.FromString)
    out = translate(pin_pb.TranslatePinRequest(
        source_key=pb.KeyRef(key_id="check-zpk-1"), source_format=pb.PIN_BLOCK_FORMAT_ISO_0,
        destination_key=pb.KeyRef(key_id="check-zpk-2"), destination_format=pb.PIN_BLOCK_FORMAT_ISO_0,
        pin_block=ind.tdes_ecb(zpk_a, ind.iso0(pin, pan)), pan=pan), timeout=5)
    assert bytes(out.pin_block) == ind.tdes_ecb(zpk_b, ind.iso0(pin, pan))
    print("fuzz outcomes:", dict(sorted(SEEN.items())))
    # Error lines are written as they happen (access lines in batches): nothing reached INTERNAL.
    text = fuzz_server.log.read_text()
    assert "unhandled error" not in text and "Traceback" not in text
