"""A tag GenerateMac makes, VerifyMac takes, and neither takes one shorter than the algorithm's
minimum (issue 33: HMAC tags of 4, 8 or 12 bytes were made, then refused as "16 to 32 bytes").

Minimums: 16 bytes for HMAC (nothing limits MAC guesses, so a short HMAC tag would be forged in
hours), 4 for the block-cipher MACs (ISO/IEC 9797-1 clause 5, m >= 32 bits, as payment messages
carry them). The UnionPay POS MAC is its 8 hex characters, never cut, under TDES and SM4 alike
(step h) of the scheme: the first 8 characters of the last block's hex form). HMAC tags are
checked against the standard library's HMAC-SHA256 (RFC 2104) with a key the test imports under
the session's ZMK; the national MACs' values in tests/api/test_national_macs.py.
"""

from __future__ import annotations

import hashlib
import hmac

import grpc
import pytest
from hsmsvc_client import Client

from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import mac_service_pb2 as mac_pb
from hsmsvc_client.v1 import types_pb2 as pb
from tests import reference as ind
from tests.api.conftest import Env, code_of, template

DATA = b"0200 6222020000000012 000000010000 20261207 short tags"
C = pb.MODE_OF_USE_MAC_GENERATE_VERIFY


@pytest.fixture(scope="module")
def hmac_keys(server: Env) -> dict[str, bytes]:
    """An HMAC-SHA256 key with a known value, imported under zmk-core as a peer would send it; HMAC-SM3
    keys of 16 (SM4) and 32 bytes (HMAC_SM3_256) and UnionPay POS MAC keys (TDES, SM4) generated here."""
    mgr = server.client("key-manager")
    clear = bytes(range(1, 33))
    wrapped = ind.aes_ecb(ind.variant(server.clear["zmk"], "MAK"), clear)
    mgr.keys.ImportKey(key_pb.ImportKeyRequest(kek=pb.KeyRef(key_id="zmk-core"), wrapped_key=wrapped, template=template(
        "mak-hmac-sha256", pb.KEY_TYPE_MAK, pb.ALGORITHM_AES_256, pb.KEY_USAGE_MAC_HMAC, C)))
    for key_id, alg, usage in (("mak-hmac-sm3", pb.ALGORITHM_SM4, pb.KEY_USAGE_MAC_HMAC),
                               ("mak-hmac-sm3-256", pb.ALGORITHM_HMAC_SM3_256, pb.KEY_USAGE_MAC_HMAC),
                               ("mak-unionpay-tdes", pb.ALGORITHM_TDES_2KEY, pb.KEY_USAGE_MAC_ISO9797_ALG1),
                               ("mak-unionpay-sm4", pb.ALGORITHM_SM4, pb.KEY_USAGE_MAC_ISO9797_ALG1)):
        mgr.keys.GenerateKey(key_pb.GenerateKeyRequest(template=template(key_id, pb.KEY_TYPE_MAK, alg, usage, C)))
    return {"mak-hmac-sha256": clear}


def _generate(c: Client, key: str, algorithm: int, length: int, padding: int = 0) -> bytes:
    return bytes(c.macs.GenerateMac(mac_pb.GenerateMacRequest(key=pb.KeyRef(key_id=key), algorithm=algorithm,
                                                              padding=padding, data=DATA, mac_length=length)).mac)


def _verify(c: Client, key: str, algorithm: int, mac: bytes, padding: int = 0) -> bool:
    return bool(c.macs.VerifyMac(mac_pb.VerifyMacRequest(key=pb.KeyRef(key_id=key), algorithm=algorithm,
                                                         padding=padding, data=DATA, mac=mac)).verified)


@pytest.mark.parametrize(("key", "algorithm", "low", "full", "padding"), [
    ("mak-hmac-sha256", pb.MAC_ALGORITHM_HMAC_SHA256, 16, 32, 0),
    ("mak-hmac-sm3", pb.MAC_ALGORITHM_HMAC_SM3, 16, 32, 0),
    ("mak-hmac-sm3-256", pb.MAC_ALGORITHM_HMAC_SM3, 16, 32, 0),
    ("mak-unionpay-tdes", pb.MAC_ALGORITHM_UNIONPAY_POS, 8, 8, 0),
    ("mak-unionpay-sm4", pb.MAC_ALGORITHM_UNIONPAY_POS, 8, 8, 0),
    ("mak-cmac", pb.MAC_ALGORITHM_CMAC, 4, 16, 0),
    ("mak-x919", pb.MAC_ALGORITHM_ISO9797_ALG3, 4, 8, pb.MAC_PADDING_METHOD_1),
])
def test_every_length_generated_is_verified(core: Client, keys: dict[str, bytes], hmac_keys: dict[str, bytes],
                                            key: str, algorithm: int, low: int, full: int, padding: int) -> None:
    for length in (low, low + 4, full):
        if length > full:
            continue
        tag = _generate(core, key, algorithm, length, padding)
        assert len(tag) == length
        assert _verify(core, key, algorithm, tag, padding), length
        bad = bytearray(tag)
        bad[-1] ^= 1
        assert not _verify(core, key, algorithm, bytes(bad), padding), length
    for wrong in (low - 1, full + 1):
        code, details = code_of(core.macs.VerifyMac, mac_pb.VerifyMacRequest(
            key=pb.KeyRef(key_id=key), algorithm=algorithm, padding=padding, data=DATA, mac=bytes(wrong)))
        assert code is grpc.StatusCode.INVALID_ARGUMENT and details == f"mac: {low} to {full} bytes", details
        code, details = code_of(core.macs.GenerateMac, mac_pb.GenerateMacRequest(
            key=pb.KeyRef(key_id=key), algorithm=algorithm, padding=padding, data=DATA, mac_length=wrong))
        assert code is grpc.StatusCode.INVALID_ARGUMENT and details.startswith(f"mac_length: {low} to {full}")


def test_short_hmac_tags_are_the_standard_hmac_prefix(core: Client, hmac_keys: dict[str, bytes]) -> None:
    want = hmac.new(hmac_keys["mak-hmac-sha256"], DATA, hashlib.sha256).digest()  # RFC 2104 / FIPS 198-1
    for length in (16, 20, 32):
        assert _generate(core, "mak-hmac-sha256", pb.MAC_ALGORITHM_HMAC_SHA256, length) == want[:length]
        assert _verify(core, "mak-hmac-sha256", pb.MAC_ALGORITHM_HMAC_SHA256, want[:length])
