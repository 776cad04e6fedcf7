"""Two sites, two LMKs, one ZMK, for the key-change tests (004 clause 7.1).

A core and a branch ``hsmsvc serve``, each with its own PostgreSQL store and LMK,
the zone's ZMK formed at both by ceremony from the same mailers, and the steps
the tests repeat. Shared by test_key_sync.py, test_key_sync_late.py and
test_rotation_rate.py; a helper module, so no test module imports another.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from hsmsvc_client import Client, ClientTls

from hsmsvc.api.keysync import notice_from_pb
from hsmsvc.ceremony import forming
from hsmsvc.crypto import kcv
from hsmsvc.hsm.model import KeySpec
from hsmsvc.hsm.soft.backend import SoftBackend
from hsmsvc.keys.hierarchy import KeyManager
from hsmsvc.keys.store import KeyStore
from hsmsvc.service.keysync import KeyChangeNotice
from hsmsvc.types import Algorithm, Exportability, KeyType, KeyUsage, ModeOfUse
from hsmsvc_client.v1 import data_service_pb2 as data_pb
from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import key_sync_service_pb2 as ks
from hsmsvc_client.v1 import mac_service_pb2 as mac_pb
from hsmsvc_client.v1 import pin_service_pb2 as pin_pb
from hsmsvc_client.v1 import types_pb2 as pb
from tests import pg
from tests import reference as ind
from tests.api.conftest import PASSPHRASE, launch, seal_lmk, stop_sites, template
from tests.ceremony import mailer_component, mailer_file, scripted, typed_components
from tests.hsm.helpers import clear_key
from tools.bench.pki import ThrowawayCA as TestCA

ZONE = "branch7"
PAN = "6222027000000000011"
ACCOUNT = "6222027000000002"
StatusCode = grpc.StatusCode


@dataclass
class Site:
    name: str
    port: int
    store_url: str
    clients: dict[str, Client]


@dataclass
class Sites:
    core: Site
    branch: Site
    zmk: bytes
    tpk: bytes
    psk: bytes
    ca: TestCA

    def sync(self, site: Site, who: str) -> Any:
        return site.clients[who].sync


def _policy(officer: str, app: str, peer: str) -> str:
    return f"""
[[principals]]
name = "{officer}"
roles = ["manager"]
keys = ["*"]

[[principals]]
name = "{officer}-2"
roles = ["manager"]
keys = ["*"]

[[principals]]
name = "kim"
roles = ["custodian"]
keys = ["zone:{ZONE}"]

[[principals]]
name = "lee"
roles = ["custodian"]
keys = ["zone:{ZONE}"]

[[principals]]
name = "{app}"
roles = ["operator"]
keys = ["*"]

[[principals]]
name = "{peer}"
roles = ["manager"]
keys = ["zone:{ZONE}"]
"""


def _form(km: KeyManager, spec: KeySpec, clear: bytes) -> None:
    c1 = secrets.token_bytes(len(clear))
    km.form(spec, [c1, bytes(a ^ b for a, b in zip(clear, c1))])


def _form_zmk_by_ceremony(root: Path, ca: TestCA, port: int, site: str, parts: list[bytes]) -> bytes:
    """Two officers and two custodians form the zone's ZMK at one site; returns its KCV."""
    def tls(who: str) -> ClientTls:
        ident = ca.issue(who)
        return ClientTls(ca.ca_file, ident.cert, ident.key, "localhost")

    officer, second = tls(f"{site}-officer"), tls(f"{site}-officer-2")
    with Client(f"127.0.0.1:{port}", officer) as c:
        c.keys.GenerateKey(key_pb.GenerateKeyRequest(template=template(
            "ctk", pb.KEY_TYPE_CTK, pb.ALGORITHM_SM2, pb.KEY_USAGE_ASYMMETRIC_KEY_WRAPPING,
            pb.MODE_OF_USE_DECRYPT_ONLY, zone=ZONE)))
    key = forming.form(scripted(["y", *typed_components(Algorithm.AES_128, parts)]), address=f"127.0.0.1:{port}",
                       officers=(officer, second), custodians=[tls("kim"), tls("lee")],
                       template=template(f"zmk-{ZONE}", pb.KEY_TYPE_ZMK, pb.ALGORITHM_AES_128, pb.KEY_USAGE_KBPK,
                                         pb.MODE_OF_USE_ENCRYPT_DECRYPT, zone=ZONE),
                       ctk="ctk")
    return bytes(key.kcv)


@contextmanager
def open_sites(root: Path, timing: str = "", core_extra: str = "", branch_extra: str = "") -> Iterator[Sites]:
    """A core and a branch ``hsmsvc serve`` with their own LMK and PostgreSQL store, the zone's ZMK
    formed at both by ceremony; ``timing`` is the ``[key_sync]`` section both get."""
    ca = TestCA(root)
    mailers = root / "mailers"
    subprocess.run([sys.executable, "-m", "hsmsvc", "ceremony", "component", "print", "--out", str(mailers),
                    "--label", f"zmk-{ZONE}", "--key-type", "ZMK", "--algorithm", "AES_128",
                    "--custodian", "kim", "--custodian", "lee", "--officer", "olga"],
                   check=True, capture_output=True, timeout=60)
    parts = [mailer_component(mailer_file(mailers, 1, "kim")), mailer_component(mailer_file(mailers, 2, "lee"))]
    zmk = bytes(a ^ b for a, b in zip(*parts))
    tpk, psk = clear_key(Algorithm.TDES_2KEY), secrets.token_bytes(32)
    timing = timing or """
[key_sync]
activate_after_seconds = 2
grace_seconds = 4
"""
    procs: list[tuple[Any, Path]] = []
    with pg.throwaway_db() as branch_url, pg.throwaway_db() as core_url:
        started: dict[str, Site] = {}
        for name, url in (("branch", branch_url), ("core", core_url)):
            d = root / name
            d.mkdir()
            sealed_file = seal_lmk(d)
            peer = "core-hsmsvc" if name == "branch" else "branch-hsmsvc"
            (d / "policy.toml").write_text(_policy(f"{name}-officer", f"{name}-app", peer))
            backend = SoftBackend.from_sealed(sealed_file, PASSPHRASE.encode())
            store = KeyStore(url, backend)
            store.migrate()
            km = KeyManager(store, backend, "ceremony")
            if name == "branch":
                _form(km, KeySpec(f"{ZONE}.term-01.tpk", 1, KeyType.TPK, Algorithm.TDES_2KEY,
                                  KeyUsage.PIN_ENCRYPTION, ModeOfUse.ENCRYPT_DECRYPT, zone=ZONE), tpk)
            else:
                _form(km, KeySpec("psk-digest", 1, KeyType.PSK, Algorithm.AES_256, KeyUsage.MAC_HMAC,
                                  ModeOfUse.MAC_GENERATE_VERIFY, Exportability.NON_EXPORTABLE), psk)
            store.close()
            backend.close()
            extra = timing + (branch_extra if name == "branch" else core_extra)
            if name == "core":
                extra += (f'\n[peers.{ZONE}]\naddress = "127.0.0.1:{started["branch"].port}"\n'
                          'server_name = "localhost"\n')
            proc, info = launch(d, url, sealed_file, ca.issue(f"{name}-hsmsvc", server=True), ca, extra)
            procs.append((proc, d / "server.log"))
            clients = {}
            for who in (f"{name}-officer", f"{name}-app"):
                ident = ca.issue(who)
                clients[who] = Client(f"127.0.0.1:{info['port']}", ClientTls(ca.ca_file, ident.cert, ident.key,
                                                                            "localhost"))
            started[name] = Site(name, info["port"], url, clients)
        try:
            # The same ZMK at both sites from the same mailers: the same KCV at both.
            kcvs = {name: _form_zmk_by_ceremony(root, ca, site.port, name, parts) for name, site in started.items()}
            assert kcvs["core"] == kcvs["branch"] == kcv.kcv(Algorithm.AES_128, zmk)
            yield Sites(started["core"], started["branch"], zmk, tpk, psk, ca)
        finally:
            stop_sites([c for site in started.values() for c in site.clients.values()], procs)


def derived_mac(zmk: bytes, data: bytes) -> bytes:
    """The notice MAC computed independently: AES-CMAC under ECB_ZMK(counter || label)."""
    return ind.key_sync_mac("AES", zmk, data)


def to_domain(n: ks.KeyChangeNotice) -> KeyChangeNotice:
    return notice_from_pb(n)


def change(sites: Sites) -> ks.KeyChangeNotice:
    """Start at the core, carry the notice to the branch, the confirmation back, and the acknowledgement on."""
    notice = sites.sync(sites.core, "core-officer").StartKeyChange(ks.StartKeyChangeRequest(zone=ZONE)).notice
    conf = sites.sync(sites.branch, "branch-officer").ApplyKeyChange(ks.ApplyKeyChangeRequest(notice=notice))
    r = sites.sync(sites.core, "core-officer").ConfirmKeyChange(
        ks.ConfirmKeyChangeRequest(confirmation=conf.confirmation))
    assert [k.kcv for k in r.keys] == list(conf.confirmation.kcvs)
    sites.sync(sites.branch, "branch-officer").AcknowledgeKeyChange(
        ks.AcknowledgeKeyChangeRequest(acknowledgement=r.acknowledgement))
    return notice


def translate_and_verify(sites: Sites, pin: str = "482913") -> int:
    """Branch: TPK -> zone ZPK (active version); core: verify against the stored PIN under that version."""
    branch, core = sites.branch.clients["branch-app"], sites.core.clients["core-app"]
    block = ind.tdes_ecb(sites.tpk, ind.iso0(pin, PAN))
    r = branch.pins.TranslatePin(pin_pb.TranslatePinRequest(
        source_key=pb.KeyRef(key_id=f"{ZONE}.term-01.tpk"), source_format=pb.PIN_BLOCK_FORMAT_ISO_0,
        destination_key=pb.KeyRef(key_id=f"{ZONE}.zpk"), destination_format=pb.PIN_BLOCK_FORMAT_ISO_0,
        pin_block=block, pan=PAN))
    ok = core.pins.VerifyPin(pin_pb.VerifyPinRequest(
        key=pb.KeyRef(key_id=f"{ZONE}.zpk", version=r.destination_key_version), format=pb.PIN_BLOCK_FORMAT_ISO_0,
        pin_block=r.pin_block, pan=PAN, stored=pin_pb.StoredPinCheck(
            psk=pb.KeyRef(key_id="psk-digest"), account=ACCOUNT, method=pb.STORED_PIN_METHOD_DIGEST,
            stored_pin=ind.pin_digest(sites.psk, ACCOUNT, "482913"))))
    assert ok.verified == (pin == "482913")
    return int(r.destination_key_version)


def mac_and_data(sites: Sites) -> None:
    branch, core = sites.branch.clients["branch-app"], sites.core.clients["core-app"]
    msg = b"0200 transfer 0000001234.56 CNY " + secrets.token_bytes(8)
    tag = branch.macs.GenerateMac(_mac_req(msg))
    assert core.macs.VerifyMac(_verify_req(msg, tag.mac, tag.key_version)).verified
    field = b"account=6222027000000000;amount=1234.56;time=20261121T0930"
    r = branch.data.Encrypt(data_pb.EncryptRequest(
        key=pb.KeyRef(key_id=f"{ZONE}.dek"), plaintext=field,
        cipher=data_pb.FieldCipher(mode=pb.CIPHER_MODE_GCM, padding=pb.DATA_PADDING_NONE)))
    assert core.decrypt(f"{ZONE}.dek", r.ciphertext, r.iv, version=r.key_version) == field


def _mac_req(msg: bytes) -> Any:
    return mac_pb.GenerateMacRequest(key=pb.KeyRef(key_id=f"{ZONE}.mak"), algorithm=pb.MAC_ALGORITHM_ISO9797_ALG3,
                                     padding=pb.MAC_PADDING_METHOD_1, data=msg)


def _verify_req(msg: bytes, tag: bytes, version: int) -> Any:
    return mac_pb.VerifyMacRequest(key=pb.KeyRef(key_id=f"{ZONE}.mak", version=version),
                                   algorithm=pb.MAC_ALGORITHM_ISO9797_ALG3, padding=pb.MAC_PADDING_METHOD_1,
                                   data=msg, mac=tag)
