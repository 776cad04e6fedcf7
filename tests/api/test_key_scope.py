"""Key patterns decide on a key's id and zone, never its alias (issue 27, item 3 and the first
"Low" bullet): a real ``hsmsvc serve`` over mTLS on PostgreSQL.

A manager limited to ``branch-0001.*`` and ``zone:branch-0001`` once made a key in zone
branch-0002 by giving it the alias ``branch-0001.x``, exported it under its own ZMK and so
read what the core later translated to it. Here that route, and its id and sign-on variants,
are refused; and a key outside a caller's patterns answers on every path byte for byte as a
key that does not exist. PIN answers are checked with pyca/cryptography.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from hsmsvc.errors import InvalidInput
from hsmsvc.hsm.model import KeySpec
from hsmsvc.service.authz import Policy
from hsmsvc.types import Algorithm, KeyType, KeyUsage, ModeOfUse
from hsmsvc_client.v1 import ceremony_service_pb2 as cer_pb
from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import key_sync_service_pb2 as ks
from hsmsvc_client.v1 import mac_service_pb2 as mac_pb
from hsmsvc_client.v1 import types_pb2 as pb
from hsmsvc_client import Client, ClientError, ClientTls
from tests import pg
from tests import reference as ind
from tests.api.conftest import ATTEMPTS, _form, code_of, forming, launch, seal_lmk, stop, template
from tools.bench.pki import ThrowawayCA

PAN = "4012345678909"
PIN = "4821"
NAMES = ("admin", "branch-mgr", "branch-op", "zone-op", "core-banking")
POLICY = """
[[principals]]
name = "admin"
roles = ["manager"]
keys = ["*"]

[[principals]]
name = "branch-mgr"
roles = ["manager"]
keys = ["branch-0001.*", "zone:branch-0001"]

[[principals]]
name = "branch-op"
roles = ["operator"]
keys = ["branch-0001.*", "zone:branch-0001"]

[[principals]]
name = "zone-op"
roles = ["operator"]
keys = ["zone:branch-0001"]

[[principals]]
name = "core-banking"
roles = ["operator"]
keys = ["*"]
"""
E, G = ModeOfUse.ENCRYPT_DECRYPT, ModeOfUse.MAC_GENERATE_VERIFY
T2 = Algorithm.TDES_2KEY


@dataclass
class Site:
    clients: dict[str, Client]
    clear: dict[str, bytes]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    d = tmp_path_factory.mktemp("scope")
    ca = ThrowawayCA(d)
    ids = {n: ca.issue(n) for n in NAMES}
    cert = ca.issue("hsmsvc-server", server=True)
    sealed_file = seal_lmk(d)
    (d / "policy.toml").write_text(POLICY)
    with pg.throwaway_db() as url:
        with forming(url, sealed_file) as km:
            clear: dict[str, bytes] = {}
            for zone in ("branch-0001", "branch-0002"):
                def form(name: str, kt: KeyType, alg: Algorithm, usage: KeyUsage, mode: ModeOfUse,
                         legacy: frozenset[KeyType] = frozenset()) -> None:
                    kid = f"{zone}.{name}"
                    clear[kid] = _form(km, KeySpec(kid, 1, kt, alg, usage, mode, zone=zone), legacy)
                form("zmk", KeyType.ZMK, Algorithm.AES_256, KeyUsage.KEK, E, frozenset({KeyType.ZPK}))
                form("tmk", KeyType.TMK, Algorithm.TDES_3KEY, KeyUsage.KEK, E, frozenset({KeyType.TPK, KeyType.TAK}))
                form("tpk", KeyType.TPK, T2, KeyUsage.PIN_ENCRYPTION, E)
                form("zpk", KeyType.ZPK, T2, KeyUsage.PIN_ENCRYPTION, E)
                form("pvk", KeyType.PVK, T2, KeyUsage.PIN_VERIFICATION_VISA_PVV, G)
                form("mak", KeyType.MAK, T2, KeyUsage.MAC_ISO9797_ALG3, G)
                form("dek", KeyType.DEK, Algorithm.AES_256, KeyUsage.DATA, E)
                for kid, alg in ((f"{zone}.kak", Algorithm.ECC_P521), (f"{zone}.kak-sm2", Algorithm.SM2)):
                    km.generate(KeySpec(kid, 1, KeyType.KAK, alg, KeyUsage.ASYMMETRIC_KEY_WRAPPING,
                                        ModeOfUse.DERIVE, zone=zone))
        proc, info = launch(d, url, sealed_file, cert, ca, ATTEMPTS)
        clients = {n: Client(f"127.0.0.1:{info['port']}", ClientTls(ca.ca_file, i.cert, i.key, "localhost"),
                             deadline=30.0, retries=0) for n, i in ids.items()}
        try:
            yield Site(clients, clear)
        finally:
            for c in clients.values():
                c.close()
            stop(proc, d / "server.log")


def _zpk(kid: str, zone: str, alias: str = "") -> key_pb.KeyTemplate:
    return template(kid, pb.KEY_TYPE_ZPK, pb.ALGORITHM_TDES_2KEY, pb.KEY_USAGE_PIN_ENCRYPTION,
                    pb.MODE_OF_USE_ENCRYPT_DECRYPT, zone=zone, alias=alias)


def test_an_alias_pattern_is_refused_at_load() -> None:
    with pytest.raises(InvalidInput, match="an alias grants nothing"):
        Policy.from_dict({"principals": [{"name": "m", "roles": ["manager"], "keys": ["alias:branch-0001.*"]}]})


def test_the_alias_route_is_refused_and_its_export_cannot_happen(site: Site) -> None:
    mgr, admin, core = site.clients["branch-mgr"], site.clients["admin"], site.clients["core-banking"]
    # The finding: a branch-0002 key named with a branch-0001 alias.
    code, msg = code_of(mgr.keys.GenerateKey, key_pb.GenerateKeyRequest(
        template=_zpk("branch-0002.zpk-x", "branch-0002", alias="branch-0001.x")))
    assert (code, msg) == (grpc.StatusCode.PERMISSION_DENIED, "template: branch-mgr may not create this key")
    # Its variants: an id of the caller's in another zone, a made-up id in the caller's zone
    # (each kind of pattern must hold), and the import and key formation routes.
    for t in (_zpk("branch-0001.x", "branch-0002"), _zpk("", "branch-0001", alias="branch-0001.y"),
              _zpk("branch-0002.zpk-y", "branch-0002", alias="branch-0001.y")):
        assert code_of(mgr.keys.GenerateKey, key_pb.GenerateKeyRequest(template=t))[0] \
            is grpc.StatusCode.PERMISSION_DENIED
        assert code_of(mgr.keys.ImportKey, key_pb.ImportKeyRequest(
            kek=pb.KeyRef(key_id="branch-0001.zmk"), wrapped_key=bytes(16), template=t))[0] \
            is grpc.StatusCode.PERMISSION_DENIED
        assert code_of(mgr.ceremony.StartKeyFormation, cer_pb.StartKeyFormationRequest(
            template=t, transport_key=pb.KeyRef(key_id="branch-0001.ctk"), component_count=2))[0] \
            is grpc.StatusCode.PERMISSION_DENIED
    # Nothing was made, so nothing can be exported under branch-0001's ZMK nor translated to.
    for kid in ("branch-0002.zpk-x", "branch-0001.x", "branch-0002.zpk-y"):
        assert code_of(admin.get_key, kid)[0] is grpc.StatusCode.NOT_FOUND
    assert code_of(mgr.keys.ExportKey, key_pb.ExportKeyRequest(
        kek=pb.KeyRef(key_id="branch-0001.zmk"), key=pb.KeyRef(alias="branch-0001.x")))[0] is grpc.StatusCode.NOT_FOUND
    block = ind.tdes_ecb(site.clear["branch-0001.tpk"], ind.iso0(PIN, PAN))
    assert code_of(core.translate_pin, "branch-0001.tpk", "branch-0002.zpk-x", block, PAN)[0] \
        is grpc.StatusCode.NOT_FOUND
    # An existing branch-0002 key reached by a branch-0001 alias on an export: hidden as well.
    assert code_of(mgr.keys.ExportKey, key_pb.ExportKeyRequest(
        kek=pb.KeyRef(key_id="branch-0001.zmk"), key=pb.KeyRef(key_id="branch-0002.zpk"))) == (
        grpc.StatusCode.NOT_FOUND, "key: no such key, alias or version")
    # The manager's own keys still work, whatever their alias; checked independently.
    made = mgr.keys.GenerateKey(key_pb.GenerateKeyRequest(
        template=_zpk("branch-0001.zpk-ok", "branch-0001", alias="anything-at-all"))).key
    assert (made.key_id, made.zone) == ("branch-0001.zpk-ok", "branch-0001")
    out = site.clients["branch-op"].translate_pin("branch-0001.tpk", "branch-0001.zpk", block, PAN)
    assert ind.decode_iso0(ind.tdes_ecb(site.clear["branch-0001.zpk"], out, decrypt=True), PAN) == PIN


def test_sign_on_cannot_add_a_version_to_another_zones_key(site: Site) -> None:
    op, admin = site.clients["zone-op"], site.clients["admin"]
    # "branch-0002" as a terminal name would make branch-0002.tpk v2 in zone branch-0001.
    code, _ = code_of(op.sync.SignOn, ks.SignOnRequest(tmk=pb.KeyRef(key_id="branch-0001.tmk"),
                                                        terminal_id="branch-0002"))
    assert code is grpc.StatusCode.PERMISSION_DENIED
    info = admin.get_key("branch-0002.tpk")
    assert (info.version, info.zone) == (1, "branch-0002")
    # A terminal of its own zone signs on.
    r = op.sync.SignOn(ks.SignOnRequest(tmk=pb.KeyRef(key_id="branch-0001.tmk"), terminal_id="t-0001"))
    assert r is not None


def _block(site: Site) -> bytes:
    return ind.tdes_ecb(site.clear["branch-0001.tpk"], ind.iso0(PIN, PAN))


Case = tuple[str, str, Callable[[Site, Client, str], Any]]
# (who, existing key outside its patterns, the call naming that key); the missing key is the
# same id with "-gone" appended.
CASES: list[Case] = [
    ("branch-op", "branch-0002.tpk",
     lambda s, c, k: c.translate_pin(k, "branch-0001.zpk", _block(s), PAN)),
    ("branch-op", "branch-0002.zpk",
     lambda s, c, k: c.translate_pin("branch-0001.tpk", k, _block(s), PAN)),
    ("branch-op", "branch-0002.tpk",
     lambda s, c, k: c.verify_pin_pvv(k, _block(s), PAN, "branch-0001.pvk", 1, "1234")),
    ("branch-op", "branch-0002.pvk",
     lambda s, c, k: c.verify_pin_pvv("branch-0001.tpk", _block(s), PAN, k, 1, "1234")),
    ("branch-op", "branch-0002.mak", lambda s, c, k: c.generate_mac(k, b"message 1")),
    ("branch-op", "branch-0002.mak", lambda s, c, k: c.verify_mac(k, b"message 1", bytes(8))),
    ("branch-op", "branch-0002.dek", lambda s, c, k: c.encrypt(k, b"field")),
    ("branch-op", "branch-0002.dek", lambda s, c, k: c.decrypt(k, bytes(21), bytes(12))),
    ("branch-op", "branch-0002.zpk", lambda s, c, k: c.keys.GetKeyCheckValue(
        key_pb.GetKeyCheckValueRequest(key=pb.KeyRef(key_id=k)))),
    ("branch-op", "branch-0002.tmk", lambda s, c, k: c.sync.SignOn(
        ks.SignOnRequest(tmk=pb.KeyRef(key_id=k), terminal_id="branch-0001.t9"))),
    ("branch-op", "branch-0002.mak", lambda s, c, k: c.macs.GenerateMacBatch(mac_pb.GenerateMacBatchRequest(
        key=pb.KeyRef(key_id=k), algorithm=pb.MAC_ALGORITHM_ISO9797_ALG3, padding=pb.MAC_PADDING_METHOD_1,
        messages=[b"a", b"b"]))),
    ("branch-op", "branch-0002.zpk", lambda s, c, k: c.keys.GetPublicKey(
        key_pb.GetPublicKeyRequest(key=pb.KeyRef(key_id=k)))),
    ("branch-mgr", "branch-0002.zpk", lambda s, c, k: c.get_key(k)),
    ("branch-mgr", "branch-0002.zpk", lambda s, c, k: c.keys.RotateKey(
        key_pb.RotateKeyRequest(key=pb.KeyRef(key_id=k)))),
    ("branch-mgr", "branch-0002.zpk", lambda s, c, k: c.keys.UpdateKeyState(key_pb.UpdateKeyStateRequest(
        key=pb.KeyRef(key_id=k, version=1), state=pb.KEY_STATE_SUSPENDED, reason="test"))),
    ("branch-mgr", "branch-0002.zpk", lambda s, c, k: c.keys.ExportKey(key_pb.ExportKeyRequest(
        kek=pb.KeyRef(key_id="branch-0001.zmk"), key=pb.KeyRef(key_id=k)))),
    ("branch-mgr", "branch-0002.zmk", lambda s, c, k: c.keys.ExportKey(key_pb.ExportKeyRequest(
        kek=pb.KeyRef(key_id=k), key=pb.KeyRef(key_id="branch-0001.zpk")))),
    ("branch-mgr", "branch-0002.zmk", lambda s, c, k: c.keys.ImportKey(key_pb.ImportKeyRequest(
        kek=pb.KeyRef(key_id=k), wrapped_key=bytes(16), template=_zpk("branch-0001.zpk-in", "branch-0001")))),
    # Key agreement (issue 30): another zone's KAK, P-521 or SM2, is a missing one.
    ("branch-mgr", "branch-0002.kak", lambda s, c, k: c.keys.AgreeKey(key_pb.AgreeKeyRequest(
        kak=pb.KeyRef(key_id=k), peer_public_key=bytes(158), peer_fingerprint=bytes(8), shared_info=bytes(16),
        template=template("branch-0001.zmk-agreed", pb.KEY_TYPE_ZMK, pb.ALGORITHM_AES_256, pb.KEY_USAGE_KBPK,
                          pb.MODE_OF_USE_ENCRYPT_DECRYPT, zone="branch-0001")))),
    ("branch-mgr", "branch-0002.kak-sm2", lambda s, c, k: c.keys.StartKeyAgreement(
        key_pb.StartKeyAgreementRequest(kak=pb.KeyRef(key_id=k)))),
    ("branch-mgr", "branch-0002.zmk", lambda s, c, k: c.ceremony.StartKeyFormation(cer_pb.StartKeyFormationRequest(
        template=_zpk("branch-0001.zpk-cer", "branch-0001"), transport_key=pb.KeyRef(key_id=k),
        component_count=2))),
]


@pytest.mark.parametrize("who,key,call", CASES, ids=[f"{i}-{c[0]}-{c[1]}" for i, c in enumerate(CASES)])
def test_a_key_outside_the_patterns_answers_as_a_missing_one(
    site: Site, who: str, key: str, call: Callable[[Site, Client, str], Any]
) -> None:
    c = site.clients[who]
    with pytest.raises(ClientError) as there:
        call(site, c, key)
    with pytest.raises(ClientError) as gone:
        call(site, c, key + "-gone")
    assert there.value.code is grpc.StatusCode.NOT_FOUND
    assert (there.value.code, there.value.details) == (gone.value.code, gone.value.details)
    # Nothing was changed: the key is where it was, in the state it was.
    info = site.clients["admin"].get_key(key)
    assert (info.version, info.state) == (1, pb.KEY_STATE_ACTIVE)


def test_key_sync_answers_another_zones_zmk_as_none(site: Site) -> None:
    mgr = site.clients["branch-mgr"]
    there = code_of(mgr.sync.StartKeyChange, ks.StartKeyChangeRequest(zone="branch-0002"))
    gone = code_of(mgr.sync.StartKeyChange, ks.StartKeyChangeRequest(zone="branch-0009"))
    assert there == gone == (grpc.StatusCode.NOT_FOUND, "zone: this site has no ZMK for the zone")
