"""Two sites, two LMKs, one ZMK: key changes between a branch front-end and the core (004 clause 7.1).

Both servers run as ``hsmsvc serve`` over mTLS with their own PostgreSQL store
and their own LMK. The ZMK is formed the way key officers form it: `hsmsvc
ceremony component print` draws two components onto mailers, and the ceremony
client forms it at each site from them (two officers, two custodians, the
components under each site's CTK). Both sites get the same KCV, and the test
reads the components off the mailers, so it checks the notice's MAC and the
keys it carries with pyca/cryptography.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import cmac as pyca_cmac
from cryptography.hazmat.primitives.ciphers import algorithms
from hsmsvc_client import Client, ClientTls

from hsmsvc.api.keysync import notice_from_pb
from hsmsvc.ceremony import forming
from hsmsvc.crypto import kcv, tr31
from hsmsvc.hsm.model import KeySpec
from hsmsvc.hsm.soft import sealed
from hsmsvc.hsm.soft.backend import SoftBackend
from hsmsvc.keys.hierarchy import KeyManager
from hsmsvc.keys.store import KeyStore
from hsmsvc.service.keysync import KeyChangeNotice, NoticeKey
from hsmsvc.types import Algorithm, Exportability, KeyType, KeyUsage, ModeOfUse
from hsmsvc.v1 import data_service_pb2 as data_pb
from hsmsvc.v1 import key_service_pb2 as key_pb
from hsmsvc.v1 import key_sync_service_pb2 as ks
from hsmsvc.v1 import mac_service_pb2 as mac_pb
from hsmsvc.v1 import pin_service_pb2 as pin_pb
from hsmsvc.v1 import types_pb2 as pb
from tests import pg
from tests.api import independent as ind
from tests.api.conftest import PASSPHRASE, clear_key, code_of, launch, stop, template
from tools.bench.pki import ThrowawayCA as TestCA
from tests.ceremony import scripted, typed_components

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


def _mailer_component(path: Path) -> bytes:
    return bytes.fromhex(path.read_text().splitlines()[8].replace(" ", ""))


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
    key = forming.form(scripted(["y", *typed_components(Algorithm.AES_128, parts)]), f"127.0.0.1:{port}",
                       (officer, second), [tls("kim"), tls("lee")],
                       template(f"zmk-{ZONE}", pb.KEY_TYPE_ZMK, pb.ALGORITHM_AES_128, pb.KEY_USAGE_KBPK,
                                pb.MODE_OF_USE_ENCRYPT_DECRYPT, zone=ZONE), "ctk")
    return bytes(key.kcv)


@contextmanager
def open_sites(root: Path, timing: str = "", core_extra: str = "", branch_extra: str = "") -> Iterator[Sites]:
    """A core and a branch ``hsmsvc serve`` with their own LMK and PostgreSQL store, the zone's ZMK
    formed at both by ceremony; ``timing`` is the ``[key_sync]`` section both get."""
    ca = TestCA(root)
    mailers = root / "mailers"
    subprocess.run([sys.executable, "-m", "hsmsvc", "ceremony", "component", "print", "--out", str(mailers),
                    "--label", f"zmk-{ZONE}", "--key-type", "ZMK", "--algorithm", "AES_128",
                    "--custodian", "kim", "--custodian", "lee"], check=True, capture_output=True, timeout=60)
    parts = [_mailer_component(mailers / f"kim-zmk-{ZONE}-1.txt"), _mailer_component(mailers / f"lee-zmk-{ZONE}-2.txt")]
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
            sealed_file = d / "lmk.sealed"
            sealed_file.write_bytes(sealed.seal(Algorithm.AES_256, secrets.token_bytes(32), PASSPHRASE.encode(),
                                                sealed.ScryptParams(log2_n=14)))
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
                extra += f'\n[peers.{ZONE}]\naddress = "127.0.0.1:{started["branch"].port}"\nserver_name = "localhost"\n'
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
            for site in started.values():
                for c in site.clients.values():
                    c.close()
            for proc, log in procs:
                stop(proc, log)


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    with open_sites(tmp_path_factory.mktemp("sync"),
                    branch_extra="\n[rotation.TPK]\nmax_age_seconds = 43200\nmax_uses = 3\n") as s:
        yield s


def derived_mac(zmk: bytes, data: bytes) -> bytes:
    """The notice MAC computed independently: AES-CMAC under ECB_ZMK(counter || label)."""
    blocks = b"".join((bytes([i + 1]) + b"hsmsvc/ks-mac/v1").ljust(16, b"\x00")[:16] for i in range(len(zmk) // 16))
    c = pyca_cmac.CMAC(algorithms.AES(ind.aes_ecb(zmk, blocks)))
    c.update(data)
    return c.finalize()


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


def test_bad_notices_are_refused_and_change_nothing(sites: Sites) -> None:
    notice = sites.sync(sites.core, "core-officer").StartKeyChange(ks.StartKeyChangeRequest(zone=ZONE)).notice
    # The MAC is what both sites compute from the shared ZMK, and pyca agrees.
    assert notice.mac == derived_mac(sites.zmk, to_domain(notice).signed_bytes())
    branch = sites.sync(sites.branch, "branch-officer")

    tampered = ks.KeyChangeNotice()
    tampered.CopyFrom(notice)
    tampered.keys[0].wrapped_key = tampered.keys[0].wrapped_key[:-2] + b"00"
    assert code_of(branch.ApplyKeyChange, ks.ApplyKeyChangeRequest(notice=tampered))[0] is StatusCode.INVALID_ARGUMENT

    unknown = ks.KeyChangeNotice()
    unknown.CopyFrom(notice)
    unknown.zone = "nowhere"
    code, msg = code_of(branch.ApplyKeyChange, ks.ApplyKeyChangeRequest(notice=unknown))
    assert code is StatusCode.NOT_FOUND and msg.startswith("notice.zone")

    # A wrong KCV under a valid MAC (made here from the known ZMK): refused by the KCV check.
    d = to_domain(notice)
    k0 = d.keys[0]
    bad = KeyChangeNotice(d.zone, d.sequence, d.issued_at, d.activate_at, d.grace,
                          (NoticeKey(k0.key_id, k0.version, k0.key_type, k0.algorithm, k0.usage, k0.mode_of_use,
                                     k0.wrapped, bytes(3)), *d.keys[1:]))
    wrong_kcv = ks.KeyChangeNotice()
    wrong_kcv.CopyFrom(notice)
    wrong_kcv.keys[0].kcv = bytes(3)
    wrong_kcv.mac = derived_mac(sites.zmk, bad.signed_bytes())
    code, msg = code_of(branch.ApplyKeyChange, ks.ApplyKeyChangeRequest(notice=wrong_kcv))
    assert code is StatusCode.INVALID_ARGUMENT and msg.startswith("notice.keys[0].kcv")

    # Nothing was stored at the branch: its zone keys do not exist yet.
    for t in ("zpk", "mak", "dek"):
        assert code_of(sites.branch.clients["branch-officer"].get_key, f"{ZONE}.{t}")[0] is StatusCode.NOT_FOUND

    # The good notice applies; the same notice again is a retry and gets the same answer.
    first = branch.ApplyKeyChange(ks.ApplyKeyChangeRequest(notice=notice)).confirmation
    again = branch.ApplyKeyChange(ks.ApplyKeyChangeRequest(notice=notice)).confirmation
    assert first == again and len(first.kcvs) == 3
    sites.sync(sites.core, "core-officer").ConfirmKeyChange(ks.ConfirmKeyChangeRequest(confirmation=first))
    time.sleep(2.2)  # the activation time
    translate_and_verify(sites)
    translate_and_verify(sites, "000000")
    mac_and_data(sites)

    # A second change; then the first notice is a replay.
    change(sites)
    code, msg = code_of(branch.ApplyKeyChange, ks.ApplyKeyChangeRequest(notice=notice))
    assert code is StatusCode.FAILED_PRECONDITION and "replayed or stale" in msg


def test_keys_change_under_load_with_no_failed_request(sites: Sites) -> None:
    core = sites.sync(sites.core, "core-officer")
    errors: list[str] = []
    done = threading.Event()
    counts = {"pin": 0, "mac": 0}
    versions: set[int] = set()

    def load(kind: str) -> None:
        while not done.is_set():
            try:
                if kind == "pin":
                    versions.add(translate_and_verify(sites))
                else:
                    mac_and_data(sites)
                counts[kind] += 1
            except Exception as e:  # every failure is a finding
                errors.append(f"{kind}: {type(e).__name__}: {e}")
                if len(errors) > 20:
                    return

    time.sleep(2.2)  # the previous test's last change is active
    threads = [threading.Thread(target=load, args=(k,)) for k in ("pin", "mac")]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        old = sites.branch.clients["branch-officer"].get_key(f"{ZONE}.zpk").version
        # Peer-to-peer: the core delivers the notice to the branch and confirms, in one call.
        t0 = time.perf_counter()
        r = core.StartKeyChange(ks.StartKeyChangeRequest(zone=ZONE, deliver=True))
        print(f"key change delivered and confirmed in {1000 * (time.perf_counter() - t0):.0f} ms")
        assert r.confirmed and r.notice.keys[0].version == old + 1
        time.sleep(2 + 3)  # through activation and most of the grace window
    finally:
        done.set()
        for t in threads:
            t.join()
    assert errors == []
    print(f"under load: {counts['pin']} translate+verify and {counts['mac']} MAC+data round trips, no failure")
    assert counts["pin"] > 5 and counts["mac"] > 5 and {old, old + 1} <= versions
    # After the grace window the old version, named, is refused at both sites.
    time.sleep(1.5)
    branch_app = sites.branch.clients["branch-app"]
    block = ind.tdes_ecb(sites.tpk, ind.iso0("482913", PAN))
    code, msg = code_of(branch_app.pins.TranslatePin, pin_pb.TranslatePinRequest(
        source_key=pb.KeyRef(key_id=f"{ZONE}.term-01.tpk"), source_format=pb.PIN_BLOCK_FORMAT_ISO_0,
        destination_key=pb.KeyRef(key_id=f"{ZONE}.zpk", version=old), destination_format=pb.PIN_BLOCK_FORMAT_ISO_0,
        pin_block=block, pan=PAN))
    assert code is StatusCode.FAILED_PRECONDITION and "expired" in msg
    code, msg = code_of(sites.core.clients["core-app"].macs.VerifyMac, _verify_req(b"x", bytes(8), old))
    assert code is StatusCode.FAILED_PRECONDITION and "expired" in msg
    translate_and_verify(sites)


def test_use_count_rotation_needs_no_operator(sites: Sites) -> None:
    officer, app = sites.core.clients["core-officer"], sites.core.clients["core-app"]
    officer.keys.GenerateKey(key_pb.GenerateKeyRequest(template=template(
        "core.batch-dek", pb.KEY_TYPE_DEK, pb.ALGORITHM_AES_256, pb.KEY_USAGE_DATA, pb.MODE_OF_USE_ENCRYPT_DECRYPT,
        zone="", max_uses=5)))
    seen = set()
    for _ in range(8):
        r = app.data.Encrypt(data_pb.EncryptRequest(
            key=pb.KeyRef(key_id="core.batch-dek"), plaintext=b"amount=1.00",
            cipher=data_pb.FieldCipher(mode=pb.CIPHER_MODE_GCM, padding=pb.DATA_PADDING_NONE)))
        seen.add(r.key_version)
    deadline = time.monotonic() + 10
    while officer.get_key("core.batch-dek").version < 2:
        assert time.monotonic() < deadline, "no new version at the use limit"
        time.sleep(0.1)
    info = officer.get_key("core.batch-dek")
    assert info.state == pb.KEY_STATE_ACTIVE and info.max_uses == 5
    old = officer.keys.GetKey(key_pb.GetKeyRequest(key=pb.KeyRef(key_id="core.batch-dek", version=1))).key
    assert old.state == pb.KEY_STATE_RETIRING and old.use_count >= 5
    r = app.data.Encrypt(data_pb.EncryptRequest(
        key=pb.KeyRef(key_id="core.batch-dek"), plaintext=b"amount=1.00",
        cipher=data_pb.FieldCipher(mode=pb.CIPHER_MODE_GCM, padding=pb.DATA_PADDING_NONE)))
    assert r.key_version == 2 and seen == {1} | ({2} if 2 in seen else set())


def test_terminal_sign_on_issues_keys_under_its_tmk(sites: Sites) -> None:
    officer, app = sites.branch.clients["branch-officer"], sites.branch.clients["branch-app"]
    tmk = clear_key(Algorithm.TDES_3KEY)
    # The TMK arrives as a TR-31 block under the zone's ZMK (K1), as a key loader would bring it.
    block = tr31.wrap(sites.zmk, tr31.Header(tr31.KeyBlockVersion.D, KeyUsage.KBPK, tr31.KeyBlockAlgorithm.TDES,
                                             ModeOfUse.ENCRYPT_DECRYPT, "00", Exportability.NON_EXPORTABLE), tmk)
    officer.keys.ImportKey(key_pb.ImportKeyRequest(
        kek=pb.KeyRef(key_id=f"zmk-{ZONE}"), wrapped_key=block.encode(), template=template(
            f"{ZONE}.term-02.tmk", pb.KEY_TYPE_TMK, pb.ALGORITHM_TDES_3KEY, pb.KEY_USAGE_KBPK,
            pb.MODE_OF_USE_ENCRYPT_DECRYPT, zone=ZONE)))
    got = {}
    for round_ in (1, 2):
        r = app.sync.SignOn(ks.SignOnRequest(tmk=pb.KeyRef(key_id=f"{ZONE}.term-02.tmk"),
                                             terminal_id=f"{ZONE}.term-02"))
        assert [k.key_type for k in r.keys] == [pb.KEY_TYPE_TPK, pb.KEY_TYPE_TAK]
        for k in r.keys:
            header, clear = tr31.unwrap(tmk, k.wrapped_key.decode())
            assert k.version == round_ and ind.tdes_ecb(clear, bytes(8))[:3] == k.kcv
            got[(k.key_type, round_)] = clear
    # The terminal's new TPK works at once: a PIN block under it translates to the zone ZPK.
    tpk = got[(pb.KEY_TYPE_TPK, 2)]

    def translate() -> Any:
        return app.pins.TranslatePin(pin_pb.TranslatePinRequest(
            source_key=pb.KeyRef(key_id=f"{ZONE}.term-02.tpk"), source_format=pb.PIN_BLOCK_FORMAT_ISO_0,
            destination_key=pb.KeyRef(key_id=f"{ZONE}.zpk"), destination_format=pb.PIN_BLOCK_FORMAT_ISO_0,
            pin_block=ind.tdes_ecb(tpk, ind.iso0("1234", PAN)), pan=PAN))

    # This branch rotates TPKs at 3 uses: the 4th answer tells the terminal to sign on;
    # at twice the limit the TPK is refused.
    flags = [translate().sign_on_required for _ in range(6)]
    assert flags == [False, False, False, True, True, True]
    code, msg = code_of(translate)
    assert code is StatusCode.FAILED_PRECONDITION and "use limit" in msg
