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

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from hsmsvc.crypto import tr31
from hsmsvc.service.keysync import KeyChangeNotice, NoticeKey
from hsmsvc.types import Algorithm, Exportability, KeyUsage, ModeOfUse
from hsmsvc_client.v1 import data_service_pb2 as data_pb
from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import key_sync_service_pb2 as ks
from hsmsvc_client.v1 import pin_service_pb2 as pin_pb
from hsmsvc_client.v1 import types_pb2 as pb
from tests import reference as ind
from tests.api.conftest import code_of, template
from tests.api.key_sync_sites import (
    PAN,
    ZONE,
    Sites,
    StatusCode,
    _verify_req,
    change,
    derived_mac,
    mac_and_data,
    open_sites,
    to_domain,
    translate_and_verify,
)
from tests.hsm.helpers import clear_key

@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    with open_sites(tmp_path_factory.mktemp("sync"),
                    branch_extra="\n[rotation.TPK]\nmax_age_seconds = 43200\nmax_uses = 3\n") as s:
        yield s


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
