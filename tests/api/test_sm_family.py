"""Working keys follow their parent key's family (issue 33, seen 3): a terminal signing on under an
SM4 TMK gets SM4 keys, not TDES; a zone's first key change under an SM4 ZMK makes SM4 keys.

A real server with an SM4 TMK formed from components the test knows (K0, the X9.17 plain ECB form
for TPKs and TAKs): the test deciphers each key it is sent with pyca/cryptography's SM4 (GB/T 32907)
and checks its KCV (SM4-ECB of a zero block), then uses the TPK through TranslatePin.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from hsmsvc_client import Client, ClientError, ClientTls

from hsmsvc.hsm.model import KeySpec, LegacyForm
from hsmsvc.types import Algorithm, KeyType, KeyUsage, ModeOfUse
from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import key_sync_service_pb2 as ks
from hsmsvc_client.v1 import mac_service_pb2 as mac_pb
from hsmsvc_client.v1 import pin_service_pb2 as pin_pb
from hsmsvc_client.v1 import types_pb2 as pb
from tests import pg
from tests import national_vectors as nv
from tests import reference as ind
from tests.api.conftest import POLICY, _form, forming, launch, seal_lmk, stop, template
from tools.bench.pki import ThrowawayCA as TestCA

PAN = "6222020000000015"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, Client, dict[str, bytes]]]:
    d = tmp_path_factory.mktemp("sm-family")
    ca = TestCA(d)
    srv = ca.issue("hsmsvc-server", server=True)
    sealed_file = seal_lmk(d)
    (d / "policy.toml").write_text(POLICY)
    with pg.throwaway_db() as url:
        with forming(url, sealed_file) as km:
            clear = {
                "tmk": _form(km, KeySpec("sm.tmk", 1, KeyType.TMK, Algorithm.SM4, KeyUsage.KEK,
                                         ModeOfUse.ENCRYPT_DECRYPT, zone="sm"),
                             frozenset({KeyType.TPK, KeyType.TAK}), LegacyForm.X917_ECB),
                "zpk": _form(km, KeySpec("sm.zpk", 1, KeyType.ZPK, Algorithm.SM4, KeyUsage.PIN_ENCRYPTION,
                                         ModeOfUse.ENCRYPT_DECRYPT, zone="sm")),
                # A zone with no working keys yet, under an SM4 ZMK that sends keys in the X9.17 form.
                "zmk": _form(km, KeySpec("zmk-smz", 1, KeyType.ZMK, Algorithm.SM4, KeyUsage.KEK,
                                         ModeOfUse.ENCRYPT_DECRYPT, zone="smz"),
                             frozenset({KeyType.ZPK, KeyType.MAK, KeyType.DEK}), LegacyForm.X917_ECB),
            }
        proc, info = launch(d, url, sealed_file, srv, ca)
        ident = ca.issue("core-banking")
        app = Client(f"127.0.0.1:{info['port']}", ClientTls(ca.ca_file, ident.cert, ident.key, "localhost"))
        mgr_id = ca.issue("key-manager")
        mgr = Client(f"127.0.0.1:{info['port']}", ClientTls(ca.ca_file, mgr_id.cert, mgr_id.key, "localhost"))
        try:
            yield app, mgr, clear
        finally:
            app.close()
            mgr.close()
            stop(proc, d / "server.log")


def test_sign_on_under_an_sm4_tmk_gives_sm4_keys(site: tuple[Client, Client, dict[str, bytes]]) -> None:
    app, mgr, clear = site
    r = app.sync.SignOn(ks.SignOnRequest(tmk=pb.KeyRef(key_id="sm.tmk"), terminal_id="sm.term-01"))
    assert [k.key_type for k in r.keys] == [pb.KEY_TYPE_TPK, pb.KEY_TYPE_TAK]
    got = {}
    for k in r.keys:
        info = mgr.keys.GetKey(key_pb.GetKeyRequest(key=pb.KeyRef(key_id=k.key_id))).key
        assert info.algorithm == k.algorithm == pb.ALGORITHM_SM4, info
        key = ind.ecb("SM4", clear["tmk"], bytes(k.wrapped_key), decrypt=True)  # X9.17: plain ECB under the TMK
        assert ind.kcv("SM4", key) == bytes(k.kcv)[:3]
        got[k.key_type] = key
    tak = mgr.keys.GetKey(key_pb.GetKeyRequest(key=pb.KeyRef(key_id="sm.term-01.tak"))).key
    assert tak.usage == pb.KEY_USAGE_MAC_ISO9797_ALG1
    # The new SM4 TPK carries a format 4 PIN block (ISO 9564-1 clause 9.3.6, SM4 in place of AES) to
    # the zone's SM4 ZPK, and the ZPK's block holds the same PIN field.
    field = ind.iso4_pin_field("1234", bytes(8))
    block = ind.iso4_encipher("SM4", got[pb.KEY_TYPE_TPK], field, PAN)
    out = app.pins.TranslatePin(pin_pb.TranslatePinRequest(
        source_key=pb.KeyRef(key_id="sm.term-01.tpk"), source_format=pb.PIN_BLOCK_FORMAT_ISO_4,
        destination_key=pb.KeyRef(key_id="sm.zpk"), destination_format=pb.PIN_BLOCK_FORMAT_ISO_4,
        pin_block=block, pan=PAN))
    assert ind.iso4_decipher("SM4", clear["zpk"], bytes(out.pin_block), PAN)[:8] == field[:8]


def test_a_zones_first_keys_under_an_sm4_zmk_are_sm4(site: tuple[Client, Client, dict[str, bytes]]) -> None:
    _, mgr, clear = site
    r = mgr.sync.StartKeyChange(ks.StartKeyChangeRequest(zone="smz"))
    keys = r.notice.keys
    assert sorted(k.key_type for k in keys) == sorted([pb.KEY_TYPE_ZPK, pb.KEY_TYPE_MAK, pb.KEY_TYPE_DEK])
    for k in keys:
        assert k.algorithm == pb.ALGORITHM_SM4, k
        key = ind.ecb("SM4", clear["zmk"], bytes(k.wrapped_key), decrypt=True)
        assert ind.kcv("SM4", key) == bytes(k.kcv)[:3]
    assert {k.key_type: k.usage for k in keys}[pb.KEY_TYPE_MAK] == pb.KEY_USAGE_MAC_ISO9797_ALG1


def test_an_sm4_kcv_is_ecb_by_default_and_cmac_when_the_partner_states_it(
        site: tuple[Client, Client, dict[str, bytes]]) -> None:
    """Issue 33, seen 1: one SM4 KCV rule (ECB of a zero block, as Chinese financial HSMs state it),
    and the CMAC form accepted where a partner states it so (kcv_method). Expected values by
    tests/reference.py (pyca's SM4 and CMAC)."""
    _, mgr, clear = site
    tpk = bytes(range(16))
    cmac_kcv = ind.cmac("SM4", tpk, bytes(16))[:3]
    r = mgr.keys.ImportKey(key_pb.ImportKeyRequest(
        kek=pb.KeyRef(key_id="sm.tmk"), wrapped_key=ind.ecb("SM4", clear["tmk"], tpk), kcv=cmac_kcv,
        kcv_method=pb.KCV_METHOD_CMAC, template=template("sm.term-09.tpk", pb.KEY_TYPE_TPK, pb.ALGORITHM_SM4,
                                                          pb.KEY_USAGE_PIN_ENCRYPTION, pb.MODE_OF_USE_ENCRYPT_DECRYPT,
                                                          zone="sm")))
    assert bytes(r.key.kcv) == ind.kcv("SM4", tpk) and r.key.kcv_method == pb.KCV_METHOD_ECB
    got = mgr.keys.GetKeyCheckValue(key_pb.GetKeyCheckValueRequest(
        key=pb.KeyRef(key_id="sm.term-09.tpk"), kcv_method=pb.KCV_METHOD_CMAC))
    assert bytes(got.kcv) == cmac_kcv


def test_a_terminal_signed_on_before_keeps_its_keys_algorithm(site: tuple[Client, Client, dict[str, bytes]]) -> None:
    """A terminal whose TDES keys were issued under this SM4 TMK before keys followed the TMK gets TDES
    again at its next sign-on (its software expects TDES); SignOnKey names the algorithm and usage."""
    app, mgr, clear = site
    T2, B, C = pb.ALGORITHM_TDES_2KEY, pb.MODE_OF_USE_ENCRYPT_DECRYPT, pb.MODE_OF_USE_MAC_GENERATE_VERIFY
    for key_type, usage, mode, name in ((pb.KEY_TYPE_TPK, pb.KEY_USAGE_PIN_ENCRYPTION, B, "tpk"),
                                        (pb.KEY_TYPE_TAK, pb.KEY_USAGE_MAC_ISO9797_ALG3, C, "tak")):
        key = ind.odd_parity(bytes(range(16 * (key_type % 5), 16 * (key_type % 5) + 16)))
        mgr.keys.ImportKey(key_pb.ImportKeyRequest(
            kek=pb.KeyRef(key_id="sm.tmk"), wrapped_key=ind.ecb("SM4", clear["tmk"], key), kcv=ind.tdes_kcv(key),
            template=template(f"sm.term-old.{name}", key_type, T2, usage, mode, zone="sm")))
    r = app.sync.SignOn(ks.SignOnRequest(tmk=pb.KeyRef(key_id="sm.tmk"), terminal_id="sm.term-old"))
    assert [(k.version, k.algorithm, k.usage) for k in r.keys] == [
        (2, T2, pb.KEY_USAGE_PIN_ENCRYPTION), (2, T2, pb.KEY_USAGE_MAC_ISO9797_ALG3)]
    for k in r.keys:
        key = ind.ecb("SM4", clear["tmk"], bytes(k.wrapped_key), decrypt=True)
        assert len(key) == 16 and ind.tdes_kcv(key) == bytes(k.kcv)[:3]


def test_an_sm4_zmk_carries_16_byte_hmac_sm3_keys_not_32_byte_ones(
        site: tuple[Client, Client, dict[str, bytes]]) -> None:
    """An SM4 ZMK (128 bits) carries an SM4-sized HMAC-SM3 key; a 32-byte one (HMAC_SM3_256, 256 bits)
    only an AES-256 KEK may carry (ANSI X9.24-1: no key under a weaker KEK), so a national-only zone
    generates its 32-byte HMAC keys. The tag is GM/T 0042-2015 appendix D.3's for its 16-byte key
    (tests/national_vectors.py)."""
    app, mgr, clear = site
    hex_key, data, expected = nv.GMT_0042_D3[3]
    key = bytes.fromhex(hex_key)
    M7, C = pb.KEY_USAGE_MAC_HMAC, pb.MODE_OF_USE_MAC_GENERATE_VERIFY
    mgr.keys.ImportKey(key_pb.ImportKeyRequest(
        kek=pb.KeyRef(key_id="zmk-smz"), wrapped_key=ind.ecb("SM4", clear["zmk"], key), kcv=ind.kcv("SM4", key),
        template=template("smz.mak-hmac", pb.KEY_TYPE_MAK, pb.ALGORITHM_SM4, M7, C, zone="smz")))
    tag = app.macs.GenerateMac(mac_pb.GenerateMacRequest(key=pb.KeyRef(key_id="smz.mak-hmac"),
                                                         algorithm=pb.MAC_ALGORITHM_HMAC_SM3, data=data)).mac
    assert tag == ind.hmac_sm3(key, data) == bytes.fromhex(expected)
    long_key = bytes(range(1, 33))
    with pytest.raises(ClientError) as e:
        mgr.keys.ImportKey(key_pb.ImportKeyRequest(
            kek=pb.KeyRef(key_id="zmk-smz"), wrapped_key=ind.ecb("SM4", clear["zmk"], long_key),
            kcv=ind.hmac_sm3(long_key, bytes(16))[:3],
            template=template("smz.mak-hmac-256", pb.KEY_TYPE_MAK, pb.ALGORITHM_HMAC_SM3_256, M7, C, zone="smz")))
    assert e.value.code is grpc.StatusCode.FAILED_PRECONDITION
    assert e.value.details == "kek: weaker than the key it would carry (X9.24-1)"
