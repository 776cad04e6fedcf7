"""A real ``hsmsvc serve`` with its host-command port, over TLS with client certificates, on
PostgreSQL, for the host-command tests.

Keys are formed before the server starts, from clear values the tests know: the published
examples' keys (decoded from the Thales test LMK by ``testlmk.py``) and fresh random ones. A test
names a key in a command as an application would: ``S`` and the key's stored cryptogram (what A0
or A6 returned), or ``L`` and its label.
"""

from __future__ import annotations

import secrets
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hsmsvc.hsm.model import KeySpec, LegacyForm
from hsmsvc.types import Algorithm, Exportability, KeyType, KeyUsage, ModeOfUse
from hsmsvc_client import Client, ClientTls
from tests import pg
from tests.api.conftest import forming, launch, seal_lmk, stop
from tests.hostcmd.client import HostClient
from tests.hostcmd.testlmk import clear_key
from tools.bench.pki import Identity
from tools.bench.pki import ThrowawayCA as TestCA

POLICY = """
[[principals]]
name = "core"
roles = ["operator"]
keys = ["*"]

[[principals]]
name = "manager"
roles = ["manager"]
keys = ["*"]

[[principals]]
name = "issuer"
roles = ["issuer"]
keys = ["*"]

[[principals]]
name = "fuzzer"
roles = ["operator"]
keys = ["*"]

[[principals]]
name = "generator"
roles = ["manager"]
keys = ["*"]
methods = ["KeyService.GenerateKey"]

[[principals]]
name = "branch"
roles = ["operator"]
keys = ["branch.*"]
"""
PRINCIPALS = ("core", "manager", "issuer", "branch", "fuzzer", "generator", "stranger")
TABLE = "0123456789012345"

_B, _C, _X = ModeOfUse.ENCRYPT_DECRYPT, ModeOfUse.MAC_GENERATE_VERIFY, ModeOfUse.DERIVE
_T2, _E, _N = Algorithm.TDES_2KEY, Exportability.EXPORTABLE, Exportability.NON_EXPORTABLE


def _rand(alg: Algorithm) -> bytes:
    from tests.hsm.helpers import clear_key as fresh
    return fresh(alg)


# name -> (key type, algorithm, usage, mode, exportability, clear value, legacy types, legacy form)
# The published examples' keys first (key type code and cryptogram under the test LMK, as the
# example gives them; testlmk.py decodes them), then keys of the tests' own.
KEYS: dict[str, tuple[Any, ...]] = {
    # nickntg HostCommandTests.vb: CA/CC/EC's TPK and ZPK, A6's and A8's ZMKs, M6's TAK, DC/EC's PVK, CW's CVK.
    "tpk": (KeyType.TPK, _T2, KeyUsage.PIN_ENCRYPTION, _B, _E, clear_key("002", "U8463435FC4B4DAA0C49025272C29B12C")),
    "zpk": (KeyType.ZPK, _T2, KeyUsage.PIN_ENCRYPTION, _B, _E, clear_key("001", "U1EF828AA8F6B80EB83E19FBC373F3A85")),
    "zmk-a6": (KeyType.ZMK, _T2, KeyUsage.KEK, _B, _N, clear_key("000", "U71979DEB8587E2734F1E99D5DCAEF9AC"),
               frozenset({KeyType.ZPK, KeyType.MAK, KeyType.DEK, KeyType.PVK}), LegacyForm.PAYSHIELD_VARIANT),
    "zmk-a6-x917": (KeyType.ZMK, _T2, KeyUsage.KEK, _B, _N, clear_key("000", "U71979DEB8587E2734F1E99D5DCAEF9AC"),
                    frozenset({KeyType.ZPK}), LegacyForm.X917_ECB),
    # A8's example exports a TPK (type 002): in hsmsvc a TMK carries TPKs, a ZMK does not.
    "tmk-a8": (KeyType.TMK, _T2, KeyUsage.KEK, _B, _N, clear_key("000", "U1457FF6ADF6250C66C368416B4C9D383"),
               frozenset({KeyType.TPK, KeyType.TAK}), LegacyForm.PAYSHIELD_VARIANT),
    "zmk-a8": (KeyType.ZMK, _T2, KeyUsage.KEK, _B, _N, clear_key("000", "U1457FF6ADF6250C66C368416B4C9D383"),
               frozenset({KeyType.ZPK, KeyType.MAK, KeyType.DEK, KeyType.PVK}), LegacyForm.PAYSHIELD_VARIANT),
    "tak": (KeyType.TAK, _T2, KeyUsage.MAC_ISO9797_ALG3, _C, _N, clear_key("003", "U19D25F349FD03CC3556BB05F65283CA1")),
    "pvk": (KeyType.PVK, _T2, KeyUsage.PIN_VERIFICATION_VISA_PVV, _C, _N,
            clear_key("002", "X367930344805B1FAD6146EF4ED7502B3")),
    "cvk": (KeyType.CVK, _T2, KeyUsage.CVK, _C, _N, clear_key("402", "U9B4934384B19946B040CD702B4D58145")),
    # The tests' own.
    "zpk-b": (KeyType.ZPK, _T2, KeyUsage.PIN_ENCRYPTION, _B, _E, _rand(_T2)),
    "zpk-aes": (KeyType.ZPK, Algorithm.AES_128, KeyUsage.PIN_ENCRYPTION, _B, _N, _rand(Algorithm.AES_128)),
    "zpk-aes-b": (KeyType.ZPK, Algorithm.AES_128, KeyUsage.PIN_ENCRYPTION, _B, _N, _rand(Algorithm.AES_128)),
    "tpk-aes": (KeyType.TPK, Algorithm.AES_128, KeyUsage.PIN_ENCRYPTION, _B, _N, _rand(Algorithm.AES_128)),
    "pvk-ibm": (KeyType.PVK, _T2, KeyUsage.PIN_VERIFICATION_IBM3624, _C, _N, _rand(_T2)),
    "zmk-k1": (KeyType.ZMK, Algorithm.AES_256, KeyUsage.KBPK, _B, _N, _rand(Algorithm.AES_256)),
    "tmk": (KeyType.TMK, _T2, KeyUsage.KEK, _B, _N, _rand(_T2), frozenset({KeyType.TPK}),
            LegacyForm.PAYSHIELD_VARIANT),
    "mak": (KeyType.MAK, _T2, KeyUsage.MAC_ISO9797_ALG1, _C, _N, _rand(_T2)),
    "mak-cmac": (KeyType.MAK, Algorithm.AES_128, KeyUsage.MAC_CMAC, _C, _N, _rand(Algorithm.AES_128)),
    "dek": (KeyType.DEK, _T2, KeyUsage.DATA, _B, _N, _rand(_T2)),
    "dek-aes": (KeyType.DEK, Algorithm.AES_256, KeyUsage.DATA, _B, _N, _rand(Algorithm.AES_256)),
    "dek-b": (KeyType.DEK, Algorithm.AES_128, KeyUsage.DATA, _B, _N, _rand(Algorithm.AES_128)),
    # pyemv's IMK (tests/api/conftest.py CARD_KEYS) and the ANSI X9.24-1 A.4 BDK.
    "imk-ac": (KeyType.IMK, _T2, KeyUsage.EMV_AC, _X, _N, bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")),
    "bdk": (KeyType.BDK, _T2, KeyUsage.BDK, _X, _N, bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")),
    "psk": (KeyType.PSK, Algorithm.AES_256, KeyUsage.PIN_ENCRYPTION, _B, _N, _rand(Algorithm.AES_256)),
    "zpk-sm4": (KeyType.ZPK, Algorithm.SM4, KeyUsage.PIN_ENCRYPTION, _B, _N, secrets.token_bytes(16)),
    "zpk-sm4-b": (KeyType.ZPK, Algorithm.SM4, KeyUsage.PIN_ENCRYPTION, _B, _N, secrets.token_bytes(16)),
    # A key of another principal's pattern: "branch" may use branch.* only.
    "branch.zpk": (KeyType.ZPK, _T2, KeyUsage.PIN_ENCRYPTION, _B, _N, _rand(_T2)),
}
_IBM = {"pvk-ibm"}


@dataclass
class HostEnv:
    port: int
    host_port: int
    ca: TestCA
    ids: dict[str, Identity]
    log: Path
    store_url: str
    clear: dict[str, bytes]
    tokens: dict[str, bytes]
    """``S`` and each key's stored cryptogram: what a host command names it by."""
    clients: list[Any] = field(default_factory=list)

    def tls(self, name: str | None = "core") -> ssl.SSLContext:
        """A client TLS context as ``name`` (None: no client certificate)."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca.ca_file)
        if name is not None:
            ctx.load_cert_chain(self.ids[name].cert, self.ids[name].key)
        return ctx

    def host(self, name: str | None = "core", **kw: Any) -> HostClient:
        c = HostClient(self.host_port, tls=self.tls(name), **kw)
        self.clients.append(c)
        return c

    def grpc(self, name: str = "core") -> Client:
        ident = self.ids[name]
        c = Client(f"127.0.0.1:{self.port}", ClientTls(self.ca.ca_file, ident.cert, ident.key, "localhost"))
        self.clients.append(c)
        return c

    def label(self, name: str) -> bytes:
        """``L``, two digits and the key's label (its alias)."""
        alias = f"hc.{name}".encode()
        return b"L%02d" % len(alias) + alias


def _token(blob: bytes) -> bytes:
    if blob[:1] in (b"A", b"B", b"C", b"D"):
        return b"S" + blob
    h = blob.hex().upper().encode()
    return b"SP%04d" % len(h) + h


HOST = """
[hostcommands]
listen = "127.0.0.1:0"
header_length = 4
discovery = true
[hostcommands.sources]
"127.0.0.2/32" = "core"
"""


@pytest.fixture(scope="session")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostEnv]:
    d = tmp_path_factory.mktemp("hostcmd")
    ca = TestCA(d)
    ids = {n: ca.issue(n) for n in PRINCIPALS}
    srv = ca.issue("hsmsvc-server", server=True)
    sealed_file = seal_lmk(d)
    (d / "policy.toml").write_text(POLICY)
    with pg.throwaway_db() as url:
        clear, tokens = {}, {}
        with forming(url, sealed_file) as km:
            for name, (kt, alg, usage, mode, exp, value, *legacy) in KEYS.items():
                types, form = legacy if legacy else (frozenset(), LegacyForm.NONE)
                spec = KeySpec(f"hc.{name}" if not name.startswith("branch.") else name, 1, kt, alg, usage, mode,
                               exp, decimalization_table=TABLE if name in _IBM else "")
                c1 = secrets.token_bytes(len(value))
                stored, _ = km.form(spec, [c1, bytes(a ^ b for a, b in zip(value, c1))], alias=f"hc.{name}",
                                    legacy_types=types, legacy_form=form)
                clear[name], tokens[name] = value, _token(stored.cryptogram.blob)
        proc, info = launch(d, url, sealed_file, srv, ca, """
[attempts]
per_pan = 3
per_principal = 200
window_seconds = 3600
""" + HOST)
        e = HostEnv(info["port"], info["host_port"], ca, ids, d / "server.log", url, clear, tokens)
        try:
            yield e
        finally:
            for c in e.clients:
                c.close()
            stop(proc, e.log)


def bound_to(address: str, port: int, tls: ssl.SSLContext) -> HostClient:
    """A client whose connection comes from ``address`` (another loopback address)."""
    raw = socket.socket()
    raw.bind((address, 0))
    raw.connect(("127.0.0.1", port))
    c = HostClient.__new__(HostClient)
    c.sock, c.header_length, c.counts_header, c._buf = tls.wrap_socket(raw, server_hostname="localhost"), 4, True, b""
    return c
