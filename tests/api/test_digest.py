"""DataService.Digest: SM3 and SHA-256 computed by the service (issue 33; GB/T 39786 asks that the
product compute the hash an application relies on).

Published vectors: GB/T 32905-2016 annex A.1 ("abc") and A.2 ("abcd" x 16) for SM3, FIPS 180-2
appendix B.1 ("abc") for SHA-256; random inputs against the standard library's SHA-256 and
pyca/cryptography's SM3 (OpenSSL's), neither of them hsmsvc's.
"""

from __future__ import annotations

import hashlib
import os

import grpc
import pytest
from cryptography.hazmat.primitives import hashes
from hsmsvc_client import Client

from hsmsvc_client.v1 import data_service_pb2 as data_pb
from hsmsvc_client.v1 import types_pb2 as pb
from tests.api.conftest import Env, code_of

SM3, SHA256 = pb.HASH_ALGORITHM_SM3, pb.HASH_ALGORITHM_SHA256


def _digest(c: Client, algorithm: int, data: bytes) -> bytes:
    return bytes(c.data.Digest(data_pb.DigestRequest(algorithm=algorithm, data=data)).digest)


@pytest.mark.parametrize(("algorithm", "data", "want"), [
    (SM3, b"abc", "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"),
    (SM3, b"abcd" * 16, "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"),
    (SHA256, b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
])
def test_published_vectors(core: Client, algorithm: int, data: bytes, want: str) -> None:
    assert _digest(core, algorithm, data).hex() == want


def test_random_inputs_against_independent_hashes(core: Client) -> None:
    for n in (0, 1, 55, 56, 64, 1000, 64 * 1024):
        data = os.urandom(n)
        sm3 = hashes.Hash(hashes.SM3())
        sm3.update(data)
        assert _digest(core, SM3, data) == sm3.finalize()
        assert _digest(core, SHA256, data) == hashlib.sha256(data).digest()


def test_bad_requests(server: Env, core: Client) -> None:
    for request in (data_pb.DigestRequest(data=b"x"), data_pb.DigestRequest(algorithm=99, data=b"x"),
                    data_pb.DigestRequest(algorithm=SM3, data=bytes(64 * 1024 + 1))):
        code, details = code_of(core.data.Digest, request)
        assert code is grpc.StatusCode.INVALID_ARGUMENT and "Traceback" not in details
    code, _ = code_of(server.client("auditor").data.Digest, data_pb.DigestRequest(algorithm=SM3, data=b"x"))
    assert code is grpc.StatusCode.PERMISSION_DENIED
