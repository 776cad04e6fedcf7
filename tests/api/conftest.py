"""A real hsmsvc server over mTLS on loopback, backed by PostgreSQL, for the API tests.

The server runs as ``hsmsvc serve`` in a child process, exactly as deployed:
TOML config, authorization policy file, test CA generated here. Before it
starts, the test forms a ZMK, a TMK and a PSK from components it knows, through
the library, so every result can be checked against an independent
computation (test_ceremony.py forms keys the way key officers do).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from hsmsvc.hsm.model import KeySpec, LegacyForm
from hsmsvc.hsm.soft import sealed
from hsmsvc.hsm.soft.backend import SoftBackend
from hsmsvc.keys.hierarchy import KeyManager
from hsmsvc.keys.store import KeyStore
from hsmsvc.types import Algorithm, Exportability, KeyType, KeyUsage, ModeOfUse
from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import types_pb2 as pb
from hsmsvc_client import Client, ClientError, ClientTls
from tests import pg
from tests import reference as ind
from tests.hsm.helpers import clear_key
from tests.reference import tdes_kcv, variant
from tools.bench.pki import Identity
from tools.bench.pki import ThrowawayCA as TestCA

TABLE = "0123456789012347"
PASSPHRASE = "api-test-passphrase-" + secrets.token_hex(4)
PRINCIPALS = ("key-manager", "core-banking", "branch-0001", "auditor", "stranger", "key-manager-2",
              "custodian-1", "custodian-2", "custodian-3", "pin-issuer", "pin-reencryptor",
              "sample-checker", "officer-custodian-1", "officer-custodian-2")
POLICY = """
[[principals]]
name = "key-manager"
roles = ["manager"]
keys = ["*"]

[[principals]]
name = "core-banking"
roles = ["operator"]
keys = ["*"]

[[principals]]
name = "branch-0001"
roles = ["operator"]
keys = ["branch-0001.*"]
methods = ["PinService.TranslatePin", "PinService.StreamTranslatePin", "MacService.*"]

[[principals]]
name = "auditor"
roles = ["auditor"]
keys = ["*"]

[[principals]]
name = "key-manager-2"
roles = ["manager"]
keys = ["*"]

[[principals]]
name = "custodian-1"
roles = ["custodian"]
keys = ["*"]

[[principals]]
name = "custodian-2"
roles = ["custodian"]
keys = ["*"]

[[principals]]
name = "custodian-3"
roles = ["custodian"]
keys = ["zone:branch-*"]

[[principals]]
name = "pin-issuer"
roles = ["issuer"]
keys = ["*"]

[[principals]]
name = "pin-reencryptor"
roles = ["reencryptor"]
keys = ["*"]

[[principals]]
name = "sample-checker"
roles = ["reencryptor"]
keys = ["*"]

# Both roles: allowed, but never two of one ceremony's controls (test_ceremony.py).
[[principals]]
name = "officer-custodian-1"
roles = ["manager", "custodian"]
keys = ["*"]

[[principals]]
name = "officer-custodian-2"
roles = ["manager", "custodian"]
keys = ["*"]
"""


@dataclass
class Env:
    port: int
    metrics_port: int
    ca: TestCA
    ids: dict[str, Identity]
    log: Path
    store_url: str
    clear: dict[str, bytes] = field(default_factory=dict)
    clients: list[Client] = field(default_factory=list)

    def client(self, name: str, **kw: Any) -> Client:
        ident = self.ids[name]
        c = Client(f"127.0.0.1:{self.port}", ClientTls(self.ca.ca_file, ident.cert, ident.key, "localhost"), **kw)
        self.clients.append(c)
        return c


def seal_lmk(d: Path) -> Path:
    """A fresh AES-256 LMK sealed under PASSPHRASE, as ``d/lmk.sealed``."""
    sealed_file = d / "lmk.sealed"
    sealed_file.write_bytes(sealed.seal(Algorithm.AES_256, secrets.token_bytes(32), PASSPHRASE.encode(),
                                        sealed.ScryptParams(log2_n=14)))
    return sealed_file


@contextmanager
def forming(url: str, sealed_file: Path) -> Iterator[KeyManager]:
    """A key manager on ``url``'s store, migrated, for forming a test's keys before its server starts."""
    backend = SoftBackend.from_sealed(sealed_file, PASSPHRASE.encode())
    store = KeyStore(url, backend)
    try:
        store.migrate()
        yield KeyManager(store, backend, "test-setup")
    finally:
        store.close()
        backend.close()


def _form(km: KeyManager, spec: KeySpec, legacy: frozenset[KeyType] = frozenset(),
          form: LegacyForm = LegacyForm.HSMSVC_VARIANT, clear: bytes | None = None) -> bytes:
    """``spec`` formed from two random components (of ``clear`` if given); a K0 KEK with ``legacy``
    types carries them in ``form``."""
    clear = clear or clear_key(spec.algorithm)
    c1 = secrets.token_bytes(len(clear))
    km.form(spec, [c1, bytes(a ^ b for a, b in zip(clear, c1))], legacy_types=legacy,
            legacy_form=form if legacy else LegacyForm.NONE)
    return clear


# ANSI X9.24-1:2009 A.4's BDK, and the X9.24-3:2017 supplement's AES-128 BDK.
DUKPT_BDKS = (("dukpt.bdk-tdes", Algorithm.TDES_2KEY, "0123456789ABCDEFFEDCBA9876543210"),
              ("dukpt.bdk-aes", Algorithm.AES_128, "FEDCBA9876543210F1F1F1F1F1F1F1F1"))

# Card keys of the published vectors tests/api/test_cards.py checks against (that module names each
# source): the CVK of psec and of the CVV test data, which is also pyemv's IMK; pyemv's script IMKs;
# gep3's dCVV issuer key; pyemv's CVC3 issuer key. (name, key type, algorithm, usage, mode, clear value)
_C, _X, _V = ModeOfUse.MAC_GENERATE_VERIFY, ModeOfUse.DERIVE, ModeOfUse.MAC_VERIFY_ONLY
CARD_KEYS = (
    ("card.cvk", KeyType.CVK, Algorithm.TDES_2KEY, KeyUsage.CVK, _C, "0123456789ABCDEFFEDCBA9876543210"),
    ("card.cvk-prod", KeyType.CVK, Algorithm.TDES_2KEY, KeyUsage.CVK, _C, "89ABCDEF0123456776543210FEDCBA98"),
    ("card.cvk-verify", KeyType.CVK, Algorithm.TDES_2KEY, KeyUsage.CVK, _V, "0123456789ABCDEFFEDCBA9876543210"),
    ("card.imk-ac", KeyType.IMK, Algorithm.TDES_2KEY, KeyUsage.EMV_AC, _X, "0123456789ABCDEFFEDCBA9876543210"),
    ("card.imk-ac-sm4", KeyType.IMK, Algorithm.SM4, KeyUsage.EMV_AC, _X, "0123456789ABCDEFFEDCBA9876543210"),
    ("card.imk-smi", KeyType.IMK, Algorithm.TDES_2KEY, KeyUsage.EMV_SMI, _X, "FEDCBA98765432100123456789ABCDEF"),
    ("card.imk-smc", KeyType.IMK, Algorithm.TDES_2KEY, KeyUsage.EMV_SMC, _X, "89ABCDEF0123456776543210FEDCBA98"),
    ("users.kdk", KeyType.KDK, Algorithm.TDES_2KEY, KeyUsage.KEY_DERIVATION, _X, "0123456789ABCDEFFEDCBA9876543210"),
    ("card.imk-dcvv", KeyType.IMK, Algorithm.TDES_2KEY, KeyUsage.EMV_OTHER, _X, "01017391010101101320010101010101"),
    ("card.imk-cvc3", KeyType.IMK, Algorithm.TDES_2KEY, KeyUsage.EMV_DYNAMIC_NUMBERS, _X,
     "01234567899876543210012345678998"),
)

ATTEMPTS = """
[attempts]
per_pan = 3
per_principal = 50
window_seconds = 3600
"""


def launch(d: Path, url: str, sealed_file: Path, srv: Identity, ca: TestCA, extra: str = "",
           passphrase: str = PASSPHRASE, top: str = "", backend: str = "", grace: float = 5.0,
           ) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Run ``hsmsvc serve`` from a config written into ``d`` (policy.toml beside it); wait until ready.

    ``top`` holds top-level settings; ``extra`` follows the ``[backend]`` table, which
    ``backend`` replaces (the soft backend on ``sealed_file`` otherwise); ``grace``: seconds calls
    may drain at SIGTERM. The server migrates the store itself (``auto_migrate``) unless ``top``
    says otherwise.
    """
    if "auto_migrate" not in top:
        top += "\nauto_migrate = true"
    backend = backend or f"""
[backend]
kind = "soft"
sealed_lmk = "{sealed_file}"
passphrase_env = "HSMSVC_TEST_LMK_PASSPHRASE"
"""
    (d / "hsmsvc.toml").write_text(f"""{top}
listen = "127.0.0.1:0"
metrics_listen = "127.0.0.1:0"
store = "{url}"
policy = "policy.toml"
shutdown_grace_seconds = {grace}
log_level = "DEBUG"

[tls]
cert = "{srv.cert}"
key = "{srv.key}"
client_ca = "{ca.ca_file}"
{backend}
{extra}
""")
    ready, log = d / "ready.json", d / "server.log"
    env = {**os.environ, "HSMSVC_TEST_LMK_PASSPHRASE": passphrase}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hsmsvc", "serve", "--config", str(d / "hsmsvc.toml"),
             "--ready-file", str(ready)],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )
    deadline = time.monotonic() + 30
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("server did not start:\n" + log.read_text())
        time.sleep(0.05)
    return proc, json.loads(ready.read_text())


def stop(proc: subprocess.Popen[bytes], log: Path) -> None:
    """SIGTERM, and require a clean drain and exit."""
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = -9
    assert rc == 0, "server did not drain and exit cleanly:\n" + log.read_text()[-3000:]


def stop_sites(clients: Iterable[Client], procs: Iterable[tuple[subprocess.Popen[bytes], Path]]) -> None:
    """A several-server fixture's teardown: every client closed, then every server drained."""
    for c in clients:
        c.close()
    for proc, log in procs:
        stop(proc, log)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    d = tmp_path_factory.mktemp("api")
    ca = TestCA(d)
    ids = {n: ca.issue(n) for n in PRINCIPALS}
    srv = ca.issue("hsmsvc-server", server=True)
    sealed_file = seal_lmk(d)
    (d / "policy.toml").write_text(POLICY)
    with pg.throwaway_db() as url:
        with forming(url, sealed_file) as km:
            clear = {
                "zmk": _form(km, KeySpec("zmk-core", 1, KeyType.ZMK, Algorithm.AES_256, KeyUsage.KEK,
                                         ModeOfUse.ENCRYPT_DECRYPT),
                             frozenset({KeyType.ZPK, KeyType.PVK, KeyType.MAK, KeyType.DEK})),
                "tmk": _form(km, KeySpec("branch-0001.tmk", 1, KeyType.TMK, Algorithm.TDES_3KEY, KeyUsage.KEK,
                                         ModeOfUse.ENCRYPT_DECRYPT, zone="branch-0001"), frozenset({KeyType.TPK})),
                "psk": _form(km, KeySpec("psk-digest", 1, KeyType.PSK, Algorithm.AES_256, KeyUsage.MAC_HMAC,
                                         ModeOfUse.MAC_GENERATE_VERIFY, Exportability.NON_EXPORTABLE)),
                # DUKPT BDKs, formed from components as a ceremony forms them, of the published
                # values the vectors of tests/api/test_dukpt.py are made under.
                **{name: _form(km, KeySpec(name, 1, KeyType.BDK, alg, KeyUsage.BDK, ModeOfUse.DERIVE,
                                           Exportability.NON_EXPORTABLE), clear=bytes.fromhex(value))
                   for name, alg, value in DUKPT_BDKS},
                # The key injection facility's K1 ZMK: DUKPT initial keys leave under it (test_dukpt.py).
                "dukpt.kif": _form(km, KeySpec("dukpt.kif", 1, KeyType.ZMK, Algorithm.AES_256, KeyUsage.KBPK,
                                               ModeOfUse.ENCRYPT_DECRYPT)),
                **{name: _form(km, KeySpec(name, 1, kt, alg, usage, mode, Exportability.NON_EXPORTABLE),
                               clear=bytes.fromhex(value))
                   for name, kt, alg, usage, mode, value in CARD_KEYS},
            }
        proc, info = launch(d, url, sealed_file, srv, ca, ATTEMPTS)
        e = Env(info["port"], info["metrics_port"], ca, ids, d / "server.log", url, clear)
        try:
            yield e
        finally:
            for c in e.clients:
                c.close()
            stop(proc, e.log)


def template(key_id: str, kt: int, alg: int, usage: int, mode: int, zone: str = "core",
             **kw: Any) -> key_pb.KeyTemplate:
    return key_pb.KeyTemplate(key_id=key_id, key_type=kt, algorithm=alg, usage=usage, mode_of_use=mode,
                              exportability=pb.EXPORTABILITY_NON_EXPORTABLE, zone=zone, **kw)


@pytest.fixture(scope="session")
def keys(server: Env) -> dict[str, bytes]:
    """Working keys imported under the ZMK (ECB form) and the TMK, as a peer would send them."""
    mgr = server.client("key-manager")
    zmk, tmk = server.clear["zmk"], server.clear["tmk"]
    B, C = pb.MODE_OF_USE_ENCRYPT_DECRYPT, pb.MODE_OF_USE_MAC_GENERATE_VERIFY
    T2 = pb.ALGORITHM_TDES_2KEY
    plan = [
        ("zpk1", template("zpk1", pb.KEY_TYPE_ZPK, T2, pb.KEY_USAGE_PIN_ENCRYPTION, B), Algorithm.TDES_2KEY),
        ("zpk2", template("zpk2", pb.KEY_TYPE_ZPK, T2, pb.KEY_USAGE_PIN_ENCRYPTION, B), Algorithm.TDES_2KEY),
        ("pvk-ibm", template("pvk-ibm", pb.KEY_TYPE_PVK, T2, pb.KEY_USAGE_PIN_VERIFICATION_IBM3624, C,
                             decimalization_table=TABLE), Algorithm.TDES_2KEY),
        ("pvk-visa", template("pvk-visa", pb.KEY_TYPE_PVK, T2, pb.KEY_USAGE_PIN_VERIFICATION_VISA_PVV, C),
         Algorithm.TDES_2KEY),
        ("mak-x919", template("mak-x919", pb.KEY_TYPE_MAK, T2, pb.KEY_USAGE_MAC_ISO9797_ALG3, C),
         Algorithm.TDES_2KEY),
        ("mak-cmac", template("mak-cmac", pb.KEY_TYPE_MAK, pb.ALGORITHM_AES_128, pb.KEY_USAGE_MAC_CMAC, C),
         Algorithm.AES_128),
        ("dek", template("dek", pb.KEY_TYPE_DEK, pb.ALGORITHM_AES_256, pb.KEY_USAGE_DATA, B), Algorithm.AES_256),
        ("branch-0001.zpk", template("branch-0001.zpk", pb.KEY_TYPE_ZPK, T2, pb.KEY_USAGE_PIN_ENCRYPTION, B,
                                     zone="branch-0001"), Algorithm.TDES_2KEY),
        ("branch-0001.mak", template("branch-0001.mak", pb.KEY_TYPE_MAK, T2, pb.KEY_USAGE_MAC_ISO9797_ALG3, C,
                                     zone="branch-0001", alias="branch-0001-mac"), Algorithm.TDES_2KEY),
    ]
    out: dict[str, bytes] = {}
    for name, t, alg in plan:
        clear = clear_key(alg)
        wrapped = ind.aes_ecb(variant(zmk, pb.KeyType.Name(t.key_type).removeprefix("KEY_TYPE_")), clear)
        kcv = tdes_kcv(clear) if alg.is_tdes else b""
        r = mgr.keys.ImportKey(key_pb.ImportKeyRequest(kek=pb.KeyRef(key_id="zmk-core"), wrapped_key=wrapped,
                                                       kcv=kcv, template=t))
        assert r.key.key_id == name and r.key.state == pb.KEY_STATE_ACTIVE
        out[name] = clear
    tpk = clear_key(Algorithm.TDES_2KEY)
    mgr.keys.ImportKey(key_pb.ImportKeyRequest(
        kek=pb.KeyRef(key_id="branch-0001.tmk"), wrapped_key=ind.tdes_ecb(variant(tmk, "TPK"), tpk), kcv=tdes_kcv(tpk),
        template=template("branch-0001.tpk", pb.KEY_TYPE_TPK, T2, pb.KEY_USAGE_PIN_ENCRYPTION, B, zone="branch-0001")))
    out["branch-0001.tpk"] = tpk
    out["psk"] = server.clear["psk"]
    return out


@pytest.fixture(scope="session")
def core(server: Env) -> Client:
    return server.client("core-banking")


def code_of(fn: Any, *a: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(ClientError) as e:
        fn(*a)
    return e.value.code, e.value.details
