"""Every key's use count reaches the key inventory, limited or not (issue 26 item 9).

A real ``hsmsvc serve`` on PostgreSQL. A MAK with no use limit and one with a
limit each make MACs (checked with pyca/cryptography); GetKey must then say
how much each was used: at least the uses made while the server runs (blocks
are reserved ahead of use), exactly the uses made after a clean shutdown, and
never fewer than the uses made after a SIGKILL.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hsmsvc.hsm.model import KeySpec, LegacyForm
from hsmsvc.types import Algorithm, KeyType, KeyUsage, ModeOfUse
from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import mac_service_pb2 as mac_pb
from hsmsvc_client.v1 import types_pb2 as pb
from hsmsvc_client import Client, ClientTls
from tests import pg
from tests import reference as ind
from tests.api.conftest import POLICY, forming, launch, seal_lmk, stop, template
from tests.hsm.helpers import clear_key
from tests.reference import tdes_kcv, variant
from tools.bench.pki import ThrowawayCA as TestCA

KEYS = {"mak-free": None, "mak-limited": 1_000_000}


class Site:
    def __init__(self, d: Path, url: str) -> None:
        self.d, self.url = d, url
        self.ca = TestCA(d)
        self.srv = self.ca.issue("hsmsvc-server", server=True)
        self.app = self.ca.issue("core-banking")
        self.auditor = self.ca.issue("auditor")
        self.sealed = seal_lmk(d)
        (d / "policy.toml").write_text(POLICY)
        zmk = clear_key(Algorithm.AES_256)
        c1 = secrets.token_bytes(32)
        with forming(url, self.sealed) as km:
            km.form(KeySpec("zmk", 1, KeyType.ZMK, Algorithm.AES_256, KeyUsage.KEK, ModeOfUse.ENCRYPT_DECRYPT),
                    [c1, bytes(a ^ b for a, b in zip(zmk, c1))], legacy_types=frozenset({KeyType.MAK}),
                    legacy_form=LegacyForm.HSMSVC_VARIANT)
        self.proc: object = None
        self.start()
        # The MAKs arrive under the ZMK as a peer sends them, one with a use limit and one without.
        self.clear: dict[str, bytes] = {}
        manager = self.ca.issue("key-manager")
        with Client(self.client_address, ClientTls(self.ca.ca_file, manager.cert, manager.key, "localhost")) as m:
            for key_id, max_uses in KEYS.items():
                clear = clear_key(Algorithm.TDES_2KEY)
                m.keys.ImportKey(key_pb.ImportKeyRequest(
                    kek=pb.KeyRef(key_id="zmk"), wrapped_key=ind.aes_ecb(variant(zmk, "MAK"), clear),
                    kcv=tdes_kcv(clear), template=template(key_id, pb.KEY_TYPE_MAK, pb.ALGORITHM_TDES_2KEY,
                                                           pb.KEY_USAGE_MAC_ISO9797_ALG3,
                                                           pb.MODE_OF_USE_MAC_GENERATE_VERIFY,
                                                           max_uses=max_uses or 0)))
                self.clear[key_id] = clear

    def start(self) -> None:
        (self.d / "ready.json").unlink(missing_ok=True)
        self.proc, info = launch(self.d, self.url, self.sealed, self.srv, self.ca)
        self.client_address = f"127.0.0.1:{info['port']}"
        self.client = Client(self.client_address, ClientTls(self.ca.ca_file, self.app.cert, self.app.key,
                                                            "localhost"))
        self.inventory = Client(self.client_address, ClientTls(self.ca.ca_file, self.auditor.cert,
                                                               self.auditor.key, "localhost"))

    def stop(self) -> None:
        self.client.close()
        self.inventory.close()
        stop(self.proc, self.d / "server.log")  # type: ignore[arg-type]

    def kill(self) -> None:
        self.client.close()
        self.inventory.close()
        self.proc.kill()  # type: ignore[attr-defined]
        self.proc.wait(10)  # type: ignore[attr-defined]

    def use(self, n: int) -> None:
        for i in range(n):
            for key_id in KEYS:
                data = f"0200 transfer {i:06d}".encode()
                r = self.client.macs.GenerateMac(mac_pb.GenerateMacRequest(
                    key=pb.KeyRef(key_id=key_id), algorithm=pb.MAC_ALGORITHM_ISO9797_ALG3,
                    padding=pb.MAC_PADDING_METHOD_1, data=data))
                assert r.mac == ind.retail_mac(self.clear[key_id], data)

    def counts(self) -> dict[str, int]:
        return {key_id: self.inventory.get_key(key_id).use_count for key_id in KEYS}


@pytest.fixture()
def site(tmp_path: Path) -> Iterator[Site]:
    with pg.throwaway_db() as url:
        s = Site(tmp_path, url)
        try:
            yield s
        finally:
            if s.proc.poll() is None:  # type: ignore[attr-defined]
                s.stop()


def test_use_counts_reach_the_inventory_for_every_key(site: Site) -> None:
    site.use(300)
    deadline = time.monotonic() + 5
    while min(site.counts().values()) < 300:  # reserved off the request path: soon, and never fewer
        assert time.monotonic() < deadline, f"use counts stay below the uses made: {site.counts()}"
        time.sleep(0.05)
    running = site.counts()
    site.stop()
    site.start()
    assert site.counts() == {"mak-free": 300, "mak-limited": 300}, f"after a clean shutdown (running: {running})"
    site.use(200)
    deadline = time.monotonic() + 5
    while min(site.counts().values()) < 500:
        assert time.monotonic() < deadline, f"use counts stay below the uses made: {site.counts()}"
        time.sleep(0.05)
    site.kill()
    site.start()
    crashed = site.counts()
    print(f"use counts: running {running} for 300 uses; after SIGKILL {crashed} for 500 uses")
    assert all(n >= 500 for n in crashed.values())
