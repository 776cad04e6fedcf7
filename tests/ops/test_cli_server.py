"""``hsmsvc status --server`` and ``hsmsvc keys ...`` as real processes against a real server over mTLS.

One server for the module (PostgreSQL, soft backend, the policy below); every
command runs as ``.venv/bin/hsmsvc`` in a child process, with the identity of the
principal it acts as, exactly as an operator would run it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hsmsvc.hsm.model import KeySpec
from hsmsvc.hsm.soft.sealed import recorded_kcv
from hsmsvc.keys.store.reader import StoreReader
from hsmsvc.types import Algorithm, KeyType, KeyUsage, ModeOfUse
from tests import pg
from tests import reference as ind
from tests.api.conftest import _form, forming, launch, seal_lmk, stop
from tests.hsm.helpers import clear_key
from tests.ops import cli
from tests.reference import tdes_kcv, variant
from tools.bench.pki import Identity
from tools.bench.pki import ThrowawayCA as TestCA

POLICY = """
[[principals]]
name = "key-manager"
roles = ["manager"]
keys = ["*"]

[[principals]]
name = "auditor"
roles = ["auditor"]
keys = ["*"]

[[principals]]
name = "branch-auditor"
roles = ["auditor"]
keys = ["zone:branch-7"]

[[principals]]
name = "core-banking"
roles = ["operator"]
keys = ["*"]
"""
ROTATION = """
[rotation.ZPK]
max_age_seconds = 7200
max_uses = 1000
"""


@dataclass
class Site:
    port: int
    ca: TestCA
    ids: dict[str, Identity]
    url: str
    lmk_kcv: str
    zmk_clear: bytes
    k0_clear: bytes
    d: Path

    def run(self, who: str, *argv: str, process: bool = False) -> subprocess.CompletedProcess[str]:
        """``hsmsvc ARGV`` as ``who`` (the server options follow ARGV); ``process``: as a child process."""
        me = self.ids[who]
        tls = ["--server", f"127.0.0.1:{self.port}", "--ca", self.ca.ca_file, "--cert", me.cert, "--key", me.key,
               "--server-name", "localhost"]
        return cli.run([*argv, *tls], process=process)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    d = tmp_path_factory.mktemp("ops-cli")
    ca = TestCA(d)
    ids = {n: ca.issue(n) for n in ("key-manager", "auditor", "branch-auditor", "core-banking")}
    srv = ca.issue("hsmsvc-server", server=True)
    sealed_file = seal_lmk(d)
    (d / "policy.toml").write_text(POLICY)
    with pg.throwaway_db() as url:
        with forming(url, sealed_file) as km:
            zmk = _form(km, KeySpec("zmk-kbpk", 1, KeyType.ZMK, Algorithm.AES_256, KeyUsage.KBPK,
                                    ModeOfUse.ENCRYPT_DECRYPT))
            k0 = _form(km, KeySpec("zmk-k0", 1, KeyType.ZMK, Algorithm.AES_256, KeyUsage.KEK,
                                   ModeOfUse.ENCRYPT_DECRYPT), frozenset({KeyType.ZPK}))
        proc, info = launch(d, url, sealed_file, srv, ca, ROTATION)
        try:
            yield Site(info["port"], ca, ids, url, recorded_kcv(sealed_file.read_bytes()).hex().upper(), zmk, k0, d)
        finally:
            stop(proc, d / "server.log")


def _one_line_error(r: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert r.returncode != 0, r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_status_from_the_running_server_as_an_auditor(site: Site) -> None:
    r = site.run("auditor", "status", "--json", process=True)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["lmk_kcv"] == site.lmk_kcv
    assert doc["version"] and doc["backend"]["kind"] == "soft"
    assert doc["backend"]["members"] == [{"index": 0, "kind": "soft", "healthy": True, "restarts": 0}]
    assert doc["store"]["kind"] == "postgresql" and not doc["store"]["schema_behind"]
    assert doc["store"]["schema_revision"] == doc["store"]["schema_head"] != ""
    with StoreReader.open(site.url) as reader:
        head = reader.audit_head()
    assert head is not None
    # The head may have moved on (other tests' key changes) but never past the store's.
    assert 0 < doc["audit"]["head_sequence"] <= head.seq and len(doc["audit"]["head_hash"]) == 64
    assert {"type": "ZMK", "state": "ACTIVE", "count": 2} in doc["keys"]
    text = site.run("auditor", "status")
    assert text.returncode == 0, text.stderr
    assert f"LMK KCV   {site.lmk_kcv}" in text.stdout and "0 soft healthy" in text.stdout
    assert "(up to date)" in text.stdout


def test_status_is_an_auditors_right_only(site: Site) -> None:
    for who, process in (("key-manager", True), ("core-banking", False)):
        _one_line_error(site.run(who, "status", process=process), "PERMISSION_DENIED",
                        "StatusService.GetServerStatus")


def test_status_counts_only_the_keys_an_auditor_may_see(site: Site) -> None:
    r = site.run("key-manager", "keys", "generate", "--id", "branch-7.zpk", "--zone", "branch-7", "--type", "zpk",
                 "--algorithm", "tdes_2key", "--usage", "pin_encryption", "--mode", "encrypt_decrypt",
                 "--exportability", "exportable")
    assert r.returncode == 0, r.stderr
    doc = json.loads(site.run("branch-auditor", "status", "--json").stdout)
    assert doc["keys"] == [{"type": "ZPK", "state": "ACTIVE", "count": 1}]


def test_keys_generate_show_export_import_rotate_revoke(site: Site, tmp_path: Path) -> None:
    template = ["--type", "ZPK", "--algorithm", "TDES_2KEY", "--usage", "PIN_ENCRYPTION", "--mode",
                "ENCRYPT_DECRYPT", "--exportability", "EXPORTABLE", "--zone", "core"]
    r = site.run("key-manager", "keys", "generate", "--id", "zpk-ops", "--alias", "zpk-ops-alias", *template,
                 "--json", process=True)
    assert r.returncode == 0, r.stderr
    made = json.loads(r.stdout)
    assert made["key_id"] == "zpk-ops" and made["state"] == "ACTIVE" and len(made["kcv"]) == 6
    r = site.run("auditor", "keys", "show", "alias:zpk-ops-alias", "--json")
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout)
    assert shown["kcv"] == made["kcv"] and shown["version"] == 1

    block = tmp_path / "zpk.tr31"
    r = site.run("key-manager", "keys", "export", "zpk-ops", "--kek", "zmk-kbpk", "--output", str(block),
                 process=True)
    assert r.returncode == 0, r.stderr
    assert made["kcv"] in r.stdout
    assert block.read_text().startswith("D") and oct(block.stat().st_mode)[-3:] == "600"
    assert site.run("key-manager", "keys", "export", "zpk-ops", "--kek", "zmk-kbpk",
                    "--output", str(block)).returncode == 2  # never overwritten without --force

    # The block's header makes the copy non-exportable (an exported key does not travel on).
    r = site.run("key-manager", "keys", "import", "--kek", "zmk-kbpk", "--block-file", str(block), "--id",
                 "zpk-ops-copy", "--kcv", made["kcv"], *template[:-4], "--exportability", "NON_EXPORTABLE",
                 "--zone", "core", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["kcv"] == made["kcv"]

    r = site.run("key-manager", "keys", "rotate", "zpk-ops", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["version"] == 2
    r = site.run("key-manager", "keys", "revoke", "zpk-ops", "--version", "1", "--reason", "CHG-1234", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["state"] == "REVOKED"


def test_keys_import_a_legacy_cryptogram_under_a_k0_zmk(site: Site, tmp_path: Path) -> None:
    clear = clear_key(Algorithm.TDES_2KEY)
    cryptogram = tmp_path / "zpk.hex"
    cryptogram.write_text(ind.aes_ecb(variant(site.k0_clear, "ZPK"), clear).hex().upper() + "\n")
    r = site.run("key-manager", "keys", "import", "--kek", "zmk-k0", "--cryptogram-file", str(cryptogram),
                 "--kcv", tdes_kcv(clear).hex(), "--id", "zpk-legacy", "--type", "ZPK", "--algorithm", "TDES_2KEY",
                 "--usage", "PIN_ENCRYPTION", "--mode", "ENCRYPT_DECRYPT", "--exportability", "NON_EXPORTABLE",
                 "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["kcv"] == tdes_kcv(clear).hex().upper()[:6]
    assert clear.hex() not in r.stdout.lower()


def test_keys_report_table_json_csv(site: Site) -> None:
    r = site.run("key-manager", "keys", "generate", "--id", "zpk-report", "--type", "ZPK", "--algorithm",
                 "TDES_2KEY", "--usage", "PIN_ENCRYPTION", "--mode", "ENCRYPT_DECRYPT", "--exportability",
                 "NON_EXPORTABLE", "--lifetime", "86400", "--max-uses", "500")
    assert r.returncode == 0, r.stderr
    for who, process in (("auditor", True), ("key-manager", False)):
        r = site.run(who, "keys", "report", "--json", process=process)
        assert r.returncode == 0, r.stderr
        rows = {(k["key_id"], k["version"]): k for k in json.loads(r.stdout)}
        k = rows[("zpk-report", 1)]
        assert k["type"] == "ZPK" and k["algorithm"] == "TDES_2KEY" and k["state"] == "ACTIVE"
        assert k["use_count"] == 0 and k["max_uses"] == 500 and k["expires"] and k["age_seconds"] >= 0
        # Half of its own day, sooner than the server's two hours? No: the server's rule is first.
        assert k["next_rotation"] and k["next_rotation"] < k["expires"]
        assert rows[("zmk-kbpk", 1)]["next_rotation"] == ""  # no age rule for ZMKs
    table = site.run("auditor", "keys", "report")
    assert table.returncode == 0
    head = table.stdout.splitlines()[0].split()
    assert head[:4] == ["KEY", "ID", "VER", "TYPE"] and "ROTATION" in head and "EXPIRES" in head
    assert any(line.startswith("zpk-report ") and "0/500" in line for line in table.stdout.splitlines())
    data = site.run("auditor", "keys", "report", "--csv", "--type", "ZPK")
    rows_csv = list(csv.DictReader(io.StringIO(data.stdout)))
    assert rows_csv and all(r["type"] == "ZPK" for r in rows_csv)
    assert {"kcv", "use_count", "next_rotation", "expires", "age_seconds"} <= set(rows_csv[0])


def test_keys_list_with_environment_instead_of_options(site: Site) -> None:
    me = site.ids["auditor"]
    env = {"HSMSVC_SERVER": f"127.0.0.1:{site.port}", "HSMSVC_CA": site.ca.ca_file, "HSMSVC_CERT": me.cert,
           "HSMSVC_KEY": me.key, "HSMSVC_SERVER_NAME": "localhost"}
    r = cli.run(["keys", "list", "--json"], process=True, env={**os.environ, **env})
    assert r.returncode == 0, r.stderr
    assert "zmk-kbpk" in {k["key_id"] for k in json.loads(r.stdout)}


def test_bad_input_is_one_line(site: Site, tmp_path: Path) -> None:
    _one_line_error(site.run("auditor", "keys", "show", "no-such-key", process=True), "NOT_FOUND")
    _one_line_error(site.run("key-manager", "keys", "generate", "--type", "ZZZ", "--algorithm", "AES_128",
                             "--usage", "DATA", "--mode", "ENCRYPT_DECRYPT", "--exportability", "EXPORTABLE"),
                    "--type", "ZPK")
    _one_line_error(site.run("auditor", "keys", "rotate", "zmk-kbpk"), "PERMISSION_DENIED")
    _one_line_error(site.run("key-manager", "keys", "import", "--kek", "zmk-kbpk", "--block-file",
                             str(tmp_path / "absent"), "--type", "ZPK", "--usage", "PIN_ENCRYPTION", "--mode",
                             "ENCRYPT_DECRYPT", "--exportability", "EXPORTABLE"), "--block-file", "cannot be read")
    r = cli.run(["keys", "list", "--server", f"127.0.0.1:{site.port}"], process=False,
                env={k: v for k, v in os.environ.items() if not k.startswith("HSMSVC_")})
    _one_line_error(r, "--ca", "required")
    # A CA that did not sign the server: the handshake fails, and grpc's own lines stay out of stderr.
    other = TestCA(tmp_path)
    me = site.ids["auditor"]
    r = cli.run(["status", "--server", f"127.0.0.1:{site.port}", "--ca", other.ca_file, "--cert", me.cert,
                 "--key", me.key, "--server-name", "localhost", "--timeout", "3"], process=True,
                env={k: v for k, v in os.environ.items() if not k.startswith(("HSMSVC_", "GRPC_"))})
    _one_line_error(r, "UNAVAILABLE")
