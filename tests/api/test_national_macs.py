"""The national algorithms' MACs end to end (issue 33): the UnionPay POS MAC under an SM4 key, and
HMAC-SM3 under 32-byte keys (HMAC_SM3_256) as well as 16-byte ones (SM4), through the gRPC API.

The session's server (tests/api/conftest.py) holds zmk-core, an AES-256 ZMK the test formed; keys
of known value are imported under it in its legacy form, and every tag is checked against
tests/reference.py (pyca/cryptography's SM4, TDES and HMAC-SM3) and the published vectors each
test names. Tag lengths are pinned in tests/api/test_mac_lengths.py.
"""

from __future__ import annotations

import grpc
import pytest
from hsmsvc_client import Client
from hypothesis import given, settings
from hypothesis import strategies as st

from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import mac_service_pb2 as mac_pb
from hsmsvc_client.v1 import pin_service_pb2 as pin_pb
from hsmsvc_client.v1 import types_pb2 as pb
from tests import reference as ind
from tests.api.conftest import Env, code_of
from tests.national_vectors import GMT_0042_D3, UNIONPAY_SM4_DATA, UNIONPAY_SM4_KEY, UNIONPAY_SM4_MAC

H = bytes.fromhex
C = pb.MODE_OF_USE_MAC_GENERATE_VERIFY
M1, M7 = pb.KEY_USAGE_MAC_ISO9797_ALG1, pb.KEY_USAGE_MAC_HMAC
SM4, HMAC_SM3_256 = pb.ALGORITHM_SM4, pb.ALGORITHM_HMAC_SM3_256
UNIONPAY, HMAC_SM3 = pb.MAC_ALGORITHM_UNIONPAY_POS, pb.MAC_ALGORITHM_HMAC_SM3
# The published SM4 worked example (tests/national_vectors.py names it): key and data.
EXAMPLE_KEY, EXAMPLE_DATA = UNIONPAY_SM4_KEY, UNIONPAY_SM4_DATA
DATA = b"0200 6222020000000012 000000010000 20261207 national MACs"


def _template(key_id: str, kt: int, alg: int, usage: int, exportable: bool = False) -> key_pb.KeyTemplate:
    return key_pb.KeyTemplate(key_id=key_id, key_type=kt, algorithm=alg, usage=usage, mode_of_use=C, zone="core",
                              exportability=pb.EXPORTABILITY_EXPORTABLE if exportable
                              else pb.EXPORTABILITY_NON_EXPORTABLE)


def _import(server: Env, key_id: str, alg: int, usage: int, clear: bytes, kcv: bytes = b"") -> key_pb.ImportKeyResponse:
    """``clear`` as a MAK under zmk-core in its legacy form (AES-ECB under the ZMK's MAK variant)."""
    wrapped = ind.aes_ecb(ind.variant(server.clear["zmk"], "MAK"), clear)
    return server.client("key-manager").keys.ImportKey(key_pb.ImportKeyRequest(
        kek=pb.KeyRef(key_id="zmk-core"), wrapped_key=wrapped, kcv=kcv,
        template=_template(key_id, pb.KEY_TYPE_MAK, alg, usage)))


@pytest.fixture(scope="module")
def national(server: Env) -> dict[str, bytes]:
    """MAKs of known value: the worked example's SM4 key (usage M1, for the UnionPay MAC); GM/T 0042-2015
    D.3's 32-byte keys as HMAC_SM3_256 and its 16-byte key as SM4 (usage M7), each with the KCV the
    reference computes (SM4-ECB of a zero block; HMAC-SM3 of a 16-byte zero block)."""
    keys = {"nat-up-sm4": EXAMPLE_KEY}
    _import(server, "nat-up-sm4", SM4, M1, EXAMPLE_KEY, ind.kcv("SM4", EXAMPLE_KEY))
    for i, (key, _, _) in enumerate(GMT_0042_D3):
        clear = H(key)
        if len(clear) not in (16, 32):
            continue  # D.3's 37-byte key: hsmsvc's HMAC-SM3 keys are 16 or 32 bytes
        alg = SM4 if len(clear) == 16 else HMAC_SM3_256
        check = ind.kcv("SM4", clear) if alg == SM4 else ind.hmac_sm3(clear, bytes(16))[:3]
        r = _import(server, f"nat-d3-{i}", alg, M7, clear, check)
        assert bytes(r.key.kcv) == check and r.key.algorithm == alg
        keys[f"nat-d3-{i}"] = clear
    return keys


def _mac(c: Client, key: str, algorithm: int, data: bytes, length: int = 0) -> bytes:
    return bytes(c.macs.GenerateMac(mac_pb.GenerateMacRequest(
        key=pb.KeyRef(key_id=key), algorithm=algorithm, data=data, mac_length=length)).mac)


def _verify(c: Client, key: str, algorithm: int, data: bytes, tag: bytes) -> bool:
    return bool(c.macs.VerifyMac(mac_pb.VerifyMacRequest(
        key=pb.KeyRef(key_id=key), algorithm=algorithm, data=data, mac=tag)).verified)


# -- the UnionPay POS MAC under SM4 -------------------------------------------------------------


def test_unionpay_pos_mac_with_sm4_on_the_published_example(core: Client, national: dict[str, bytes]) -> None:
    """The published SM4 worked example's key and data (https://blog.csdn.net/weixin_36308404/article/
    details/115071206; tests/national_vectors.py): its blocks b) to e) are pinned in
    tests/test_reference.py; the MAC, steps f) to h), is the reference's 1E80F373, the 8 hex
    characters field 64 carries."""
    tag = _mac(core, "nat-up-sm4", UNIONPAY, EXAMPLE_DATA)
    assert tag == ind.unionpay_pos_mac("SM4", EXAMPLE_KEY, EXAMPLE_DATA) == UNIONPAY_SM4_MAC
    assert _verify(core, "nat-up-sm4", UNIONPAY, EXAMPLE_DATA, tag)
    assert not _verify(core, "nat-up-sm4", UNIONPAY, EXAMPLE_DATA + b"0", tag)
    assert not _verify(core, "nat-up-sm4", UNIONPAY, EXAMPLE_DATA, tag.lower())  # upper-case hex only


@settings(max_examples=25, deadline=None)
@given(data=st.binary(max_size=200))
def test_unionpay_pos_mac_with_sm4_matches_the_reference(core: Client, national: dict[str, bytes],
                                                         data: bytes) -> None:
    """Any message (empty: one zero block), against tests/reference.py written from the steps a) to h)."""
    tag = _mac(core, "nat-up-sm4", UNIONPAY, data)
    assert tag == ind.unionpay_pos_mac("SM4", EXAMPLE_KEY, data)
    assert _verify(core, "nat-up-sm4", UNIONPAY, data, tag)


def test_unionpay_pos_mac_needs_a_tdes_or_sm4_key_of_usage_m1(server: Env, core: Client,
                                                               national: dict[str, bytes]) -> None:
    mgr = server.client("key-manager")
    mgr.keys.GenerateKey(key_pb.GenerateKeyRequest(template=_template("nat-aes-m1", pb.KEY_TYPE_MAK,
                                                                      pb.ALGORITHM_AES_128, M1)))
    code, details = code_of(core.macs.GenerateMac, mac_pb.GenerateMacRequest(
        key=pb.KeyRef(key_id="nat-aes-m1"), algorithm=UNIONPAY, data=DATA))
    assert code is grpc.StatusCode.INVALID_ARGUMENT and details == "algorithm: TDES or SM4 for the UnionPay POS MAC"
    code, _ = code_of(core.macs.GenerateMac, mac_pb.GenerateMacRequest(
        key=pb.KeyRef(key_id="nat-d3-3"), algorithm=UNIONPAY, data=DATA))  # an SM4 key of usage M7
    assert code is grpc.StatusCode.FAILED_PRECONDITION


# -- HMAC-SM3 under 32-byte keys ----------------------------------------------------------------


@pytest.mark.parametrize("index", [0, 2, 3])
def test_hmac_sm3_gmt_0042_appendix_d3_end_to_end(core: Client, national: dict[str, bytes], index: int) -> None:
    """GM/T 0042-2015 appendix D.3 (OpenSSL's test/recipes/30-test_evp_data/evpmac_sm3.txt): its
    32-byte keys as HMAC_SM3_256 MAKs, its 16-byte key as an SM4-sized one; full tags and 16-byte
    prefixes."""
    _, data, expected = GMT_0042_D3[index]
    key = f"nat-d3-{index}"
    assert _mac(core, key, HMAC_SM3, data) == H(expected)
    assert _mac(core, key, HMAC_SM3, data, 16) == H(expected)[:16]
    assert _verify(core, key, HMAC_SM3, data, H(expected)[:20])
    assert not _verify(core, key, HMAC_SM3, data + b"!", H(expected))


def test_a_generated_hmac_sm3_256_key_is_32_bytes_of_hmac_sm3(server: Env, core: Client) -> None:
    """GenerateKey, then the key exported under zmk-core and deciphered here: its tags are the
    reference's HMAC-SM3 (RFC 2104 over GB/T 32905 SM3) and its KCV its HMAC of 16 zero bytes."""
    mgr = server.client("key-manager")
    r = mgr.keys.GenerateKey(key_pb.GenerateKeyRequest(template=_template(
        "nat-gen-sm3-256", pb.KEY_TYPE_MAK, HMAC_SM3_256, M7, exportable=True)))
    assert r.key.algorithm == HMAC_SM3_256 and r.key.kcv_method == pb.KCV_METHOD_HMAC
    out = mgr.keys.ExportKey(key_pb.ExportKeyRequest(kek=pb.KeyRef(key_id="zmk-core"),
                                                     key=pb.KeyRef(key_id="nat-gen-sm3-256")))
    clear = ind.ecb("AES", ind.variant(server.clear["zmk"], "MAK"), bytes(out.wrapped_key), decrypt=True)
    assert len(clear) == 32
    assert bytes(r.key.kcv) == bytes(out.kcv) == ind.hmac_sm3(clear, bytes(16))[:3]
    assert _mac(core, "nat-gen-sm3-256", HMAC_SM3, DATA) == ind.hmac_sm3(clear, DATA)


def test_an_hmac_sm3_256_key_is_an_hmac_key_and_an_sm3_one_only(server: Env, core: Client,
                                                                national: dict[str, bytes]) -> None:
    mgr = server.client("key-manager")
    for usage in (M1, pb.KEY_USAGE_MAC_CMAC):
        code, details = code_of(mgr.keys.GenerateKey, key_pb.GenerateKeyRequest(template=_template(
            f"nat-bad-{usage}", pb.KEY_TYPE_MAK, HMAC_SM3_256, usage)))
        assert code is grpc.StatusCode.INVALID_ARGUMENT
        assert details == "algorithm: HMAC_SM3_256 is for HMAC keys (usage M7) only"
    code, details = code_of(core.macs.GenerateMac, mac_pb.GenerateMacRequest(
        key=pb.KeyRef(key_id="nat-d3-0"), algorithm=pb.MAC_ALGORITHM_HMAC_SHA256, data=DATA))
    assert code is grpc.StatusCode.FAILED_PRECONDITION and "does not permit HMAC_SHA256" in details
    code, details = code_of(mgr.keys.GetKeyCheckValue, key_pb.GetKeyCheckValueRequest(
        key=pb.KeyRef(key_id="nat-d3-0"), kcv_method=pb.KCV_METHOD_ECB))
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "HMAC only" in details


def test_an_hmac_sm3_256_import_is_held_to_its_kcv(server: Env, national: dict[str, bytes]) -> None:
    """A stated KCV that is not the key's HMAC-SM3 of 16 zero bytes (here the SM4 rule's, and one
    in the CMAC form) refuses the key."""
    clear = bytes(range(100, 132))
    code, _ = code_of(_import, server, "nat-bad-kcv", HMAC_SM3_256, M7, clear, ind.hmac_sm3(clear, bytes(16))[1:4])
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    code, details = code_of(server.client("key-manager").keys.ImportKey, key_pb.ImportKeyRequest(
        kek=pb.KeyRef(key_id="zmk-core"), wrapped_key=ind.aes_ecb(ind.variant(server.clear["zmk"], "MAK"), clear),
        kcv=b"\x00\x00\x00", kcv_method=pb.KCV_METHOD_CMAC,
        template=_template("nat-bad-kcv", pb.KEY_TYPE_MAK, HMAC_SM3_256, M7)))
    assert code is grpc.StatusCode.INVALID_ARGUMENT and details.startswith("kcv_method: an HMAC_SM3_256 key's KCV")


def test_an_hmac_sm3_256_psk_keeps_stored_pin_digests(server: Env, core: Client, keys: dict[str, bytes]) -> None:
    """A PIN storage key of 32 bytes (usage M7): the keyed digest of bank design 004 clause 6.2.4,
    HMAC-SM3 here, 32 bytes, and a check against it. The PSK's value never leaves (no test KEK may
    carry a PSK), so this is the round trip; the HMAC-SM3 itself is checked above."""
    server.client("key-manager").keys.GenerateKey(key_pb.GenerateKeyRequest(template=_template(
        "nat-psk-sm3-256", pb.KEY_TYPE_PSK, HMAC_SM3_256, M7)))
    pan, account = ind.luhn_pan("622202000000010"), "6222020200119988776"
    block = ind.tdes_ecb(keys["zpk1"], ind.iso0("731904", pan))
    r = core.pins.EncryptPinForStorage(pin_pb.EncryptPinForStorageRequest(
        key=pb.KeyRef(key_id="zpk1"), format=pb.PIN_BLOCK_FORMAT_ISO_0, pin_block=block, pan=pan,
        psk=pb.KeyRef(key_id="nat-psk-sm3-256"), account=account))
    assert r.method == pb.STORED_PIN_METHOD_DIGEST and len(r.stored_pin) == 32
    assert core.pins.VerifyPin(pin_pb.VerifyPinRequest(
        key=pb.KeyRef(key_id="zpk1"), format=pb.PIN_BLOCK_FORMAT_ISO_0, pin_block=block, pan=pan,
        stored=pin_pb.StoredPinCheck(psk=pb.KeyRef(key_id="nat-psk-sm3-256"), account=account,
                                     method=pb.STORED_PIN_METHOD_DIGEST, stored_pin=r.stored_pin))).verified
