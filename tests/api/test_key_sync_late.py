"""A key change whose confirmation reaches the core long after activation (issue 26 item 5; 004 clause 7.1).

Two real sites (``hsmsvc serve`` each, own LMK, own PostgreSQL store, the ZMK
formed by ceremony at both; see test_key_sync.py). The branch translates PINs
from a terminal's TPK to the zone ZPK with no version named, as an application
does; the core verifies each one under the version the branch's answer named,
against a stored-PIN digest computed here with pyca/cryptography (a block
deciphered under any other key than the one the branch used would not verify).

The other way too: the core makes a MAC under the zone MAK with no version
named (its old version until it has the confirmation) and the branch verifies
it under the version named; the branch keeps reading the old version past the
grace window until the core's acknowledgement of the confirmation reaches it.

Activation comes 1 s after the notice, with a 3 s grace window, and the
confirmation is carried to the core 30 s after activation (the issue's figure),
ten grace windows late, so the old version's grace has long ended at the branch
and the new one has carried all the branch's traffic for 30 s while the core
still holds it PENDING.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from datetime import timezone
from pathlib import Path

import pytest
from hsmsvc_client import Client

from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import key_sync_service_pb2 as ks
from hsmsvc_client.v1 import mac_service_pb2 as mac_pb
from hsmsvc_client.v1 import types_pb2 as pb
from tests.api.conftest import code_of
from tests.api.key_sync_sites import (
    ZONE,
    Sites,
    StatusCode,
    _mac_req,
    _verify_req,
    change,
    derived_mac,
    open_sites,
    translate_and_verify,
)

TIMING = """
[key_sync]
activate_after_seconds = 1
grace_seconds = 3
"""
LATE = 30.0


@pytest.fixture()
def sites(tmp_path: Path) -> Iterator[Sites]:
    with open_sites(tmp_path, TIMING) as s:
        yield s


class Load:
    """One client thread: translate at the branch, verify at the core, until stopped; every failure kept."""

    def __init__(self, sites: Sites) -> None:
        self.sites = sites
        self.done = threading.Event()
        self.errors: list[str] = []
        self.by_version: dict[int, int] = {}
        self.core_made: dict[int, int] = {}
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self.done.is_set():
            try:
                v = translate_and_verify(self.sites)
                self.by_version[v] = self.by_version.get(v, 0) + 1
                v = core_to_branch(self.sites)
                self.core_made[v] = self.core_made.get(v, 0) + 1
            except Exception as e:  # every failure is a finding
                self.errors.append(f"{type(e).__name__}: {e}")
                if len(self.errors) > 20:
                    return

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(30)


def core_to_branch(sites: Sites) -> int:
    """The core MACs a message under the zone MAK, naming no version; the branch verifies it."""
    msg = b"0210 approved " + secrets.token_bytes(8)
    tag = sites.core.clients["core-app"].macs.GenerateMac(_mac_req(msg))
    assert sites.branch.clients["branch-app"].macs.VerifyMac(_verify_req(msg, tag.mac, tag.key_version)).verified
    return int(tag.key_version)


def _key(client: Client, version: int) -> pb.KeyInfo:
    info: pb.KeyInfo = client.keys.GetKey(key_pb.GetKeyRequest(key=pb.KeyRef(key_id=f"{ZONE}.zpk",
                                                                            version=version))).key
    return info


def test_a_confirmation_twelve_seconds_late_fails_no_pin_at_the_core(sites: Sites) -> None:
    change(sites)
    time.sleep(1.2)  # version 1 active at both sites
    core_officer = sites.sync(sites.core, "core-officer")
    branch_officer = sites.sync(sites.branch, "branch-officer")
    core_app = sites.core.clients["core-app"]
    with Load(sites) as load:
        time.sleep(0.5)
        notice = core_officer.StartKeyChange(ks.StartKeyChangeRequest(zone=ZONE)).notice
        conf = branch_officer.ApplyKeyChange(ks.ApplyKeyChangeRequest(notice=notice)).confirmation
        activate = notice.activate_time.ToDatetime(tzinfo=timezone.utc).timestamp()
        # The confirmation travels by hand: it reaches the core LATE seconds after activation.
        deadline = activate + LATE
        while time.time() < deadline:
            assert not load.errors, load.errors
            time.sleep(0.2)
        on_v2_unconfirmed = load.by_version.get(2, 0)
        assert _key(sites.core.clients["core-officer"], 2).state == pb.KEY_STATE_PENDING
        # Meanwhile the core makes nothing under the unconfirmed version: the branch's having it is unproven.
        code, msg = code_of(core_app.macs.GenerateMac, mac_pb.GenerateMacRequest(
            key=pb.KeyRef(key_id=f"{ZONE}.mak", version=2), algorithm=pb.MAC_ALGORITHM_ISO9797_ALG3,
            padding=pb.MAC_PADDING_METHOD_1, data=b"x"))
        assert code is StatusCode.FAILED_PRECONDITION and "PENDING" in msg
        assert core_app.macs.GenerateMac(mac_pb.GenerateMacRequest(
            key=pb.KeyRef(key_id=f"{ZONE}.mak"), algorithm=pb.MAC_ALGORITHM_ISO9797_ALG3,
            padding=pb.MAC_PADDING_METHOD_1, data=b"x")).key_version == 1
        core_v1_late = load.core_made.get(1, 0)
        r = core_officer.ConfirmKeyChange(ks.ConfirmKeyChangeRequest(confirmation=conf))
        assert [k.kcv for k in r.keys] == list(conf.kcvs)
        time.sleep(1.5)
        # The acknowledgement goes back to the branch by hand too; from it, the old version's grace runs.
        # A forged or misnumbered one is refused and changes nothing.
        for field, value, want in (("mac", bytes(16), StatusCode.INVALID_ARGUMENT),
                                   ("sequence", r.acknowledgement.sequence + 1, StatusCode.FAILED_PRECONDITION)):
            bad = ks.KeyChangeAcknowledgement()
            bad.CopyFrom(r.acknowledgement)
            setattr(bad, field, value)
            if field == "sequence":  # a valid MAC over the wrong sequence, computed from the known ZMK
                bad.mac = derived_mac(sites.zmk, b"hsmsvc-kc-ack/1" + len(ZONE).to_bytes(4, "big") + ZONE.encode()
                                      + bad.sequence.to_bytes(8, "big"))
            assert code_of(branch_officer.AcknowledgeKeyChange,
                           ks.AcknowledgeKeyChangeRequest(acknowledgement=bad))[0] is want, field
        assert r.acknowledgement.mac == derived_mac(sites.zmk, b"hsmsvc-kc-ack/1" + len(ZONE).to_bytes(4, "big")
                                                    + ZONE.encode() + r.acknowledgement.sequence.to_bytes(8, "big"))
        acked = time.time()
        ended = branch_officer.AcknowledgeKeyChange(ks.AcknowledgeKeyChangeRequest(
            acknowledgement=r.acknowledgement)).keys
        assert {(k.key_id, k.version) for k in ended} == {(f"{ZONE}.{t}", 1) for t in ("zpk", "mak", "dek")}
        time.sleep(0.5)
    assert load.errors == []
    print(f"translate+verify pairs by ZPK version {load.by_version}; {on_v2_unconfirmed} under version 2 "
          f"while the core held it unconfirmed; core MACs verified at the branch by MAK version "
          f"{load.core_made}, {core_v1_late} under version 1 up to the confirmation")
    assert load.by_version.get(1, 0) > 5 and on_v2_unconfirmed > 20 and load.core_made.get(2, 0) > 5
    # After the acknowledgement's grace the branch refuses the old version.
    time.sleep(max(0.0, acked + 3.2 - time.time()))
    code, msg = code_of(sites.branch.clients["branch-app"].macs.VerifyMac, _verify_req(b"x", bytes(8), 1))
    assert code is StatusCode.FAILED_PRECONDITION and "expired" in msg
    assert _key(sites.core.clients["core-officer"], 2).state == pb.KEY_STATE_ACTIVE
    translate_and_verify(sites, "000000")  # a wrong PIN does not verify
    # After the confirmation the core makes under the new version too, and its default is the new one.
    assert core_app.macs.GenerateMac(mac_pb.GenerateMacRequest(
        key=pb.KeyRef(key_id=f"{ZONE}.mak"), algorithm=pb.MAC_ALGORITHM_ISO9797_ALG3,
        padding=pb.MAC_PADDING_METHOD_1, data=b"x")).key_version == 2
