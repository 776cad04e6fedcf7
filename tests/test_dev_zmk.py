"""``hsmsvc dev seed --zmk``: a ZMK from a partner's test components, then their keys imported
under it by the development principal of ``hsmsvc serve --insecure-dev``.

Every expected value (the ZMK's and components' KCVs, the partner's TR-31 block and ECB
cryptogram, the translated PIN block) is computed here with tests/reference.py from the clear
components, as the partner's HSM would.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import types_pb2 as pb
from hsmsvc_client import Client
from tests import reference as ref

H = bytes.fromhex
PASS_ENV = "HSMSVC_DEV_ZMK_PASSPHRASE"
# The partner's key sheet: two components each, one ZMK in TR-31 (K1) form, one in the legacy ECB form (K0).
K1_PARTS = (H("0123456789ABCDEFFEDCBA9876543210"), H("1C1C1C1C1C1C1C1C2A2A2A2A2A2A2A2A"))
K0_PARTS = (H("89ABCDEF0123456776543210FEDCBA98"), H("4C4C4C4C4C4C4C4C3E3E3E3E3E3E3E3E"))


@dataclass(frozen=True)
class Site:
    dir: Path
    base: tuple[str, ...]
    """``--sealed ... --passphrase-env ... --store ...`` for every command."""

    @property
    def db(self) -> Path:
        return self.dir / "keys.db"


def _hsmsvc(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hsmsvc", *args], capture_output=True, text=True, timeout=60,
                          input=stdin, env={**os.environ, PASS_ENV: "dev-zmk-test-passphrase"})


@pytest.fixture(scope="module")
def lmk(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, ...]:
    """A development LMK as ``make run`` makes one (``lmk init`` without components), for every test here."""
    sealed = tmp_path_factory.mktemp("lmk") / "lmk.sealed"
    args = ("--sealed", str(sealed), "--passphrase-env", PASS_ENV)
    r = _hsmsvc("lmk", "init", *args, "--scrypt-log2-n", "14")
    assert r.returncode == 0, r.stderr
    return args


@pytest.fixture
def site(tmp_path: Path, lmk: tuple[str, ...]) -> Site:
    """A fresh SQLite store (not created yet) under the development LMK."""
    return Site(tmp_path, (*lmk, "--store", f"sqlite:///{tmp_path / 'keys.db'}"))


def _files(d: Path, parts: tuple[bytes, ...], name: str) -> list[str]:
    args = []
    for i, p in enumerate(parts, 1):
        f = d / f"{name}-{i}.txt"
        # As a key sheet prints it: groups of four, then a line end.
        h = p.hex().upper()
        f.write_text(" ".join(h[j:j + 4] for j in range(0, len(h), 4)) + "\n")
        args += ["--component-file", str(f)]
    return args


def _kcv_line(out: str, key_id: str) -> str:
    return next(line for line in out.splitlines() if key_id in line).rsplit("KCV ", 1)[1]


@contextmanager
def _serving(site: Site) -> Iterator[str]:
    """``hsmsvc serve --insecure-dev`` on the site's store, as ``make run`` starts it; its address."""
    ready = site.dir / "ready.json"
    proc = subprocess.Popen([sys.executable, "-m", "hsmsvc", "serve", "--insecure-dev", *site.base,
                             "--listen", "127.0.0.1:0", "--metrics-listen", "", "--ready-file", str(ready)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, PASS_ENV: "dev-zmk-test-passphrase"})
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert proc.poll() is None, proc.communicate()[1].decode()
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        yield f"127.0.0.1:{json.loads(ready.read_text())['port']}"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0


def _zpk_template(key_id: str) -> key_pb.KeyTemplate:
    return key_pb.KeyTemplate(key_id=key_id, key_type=pb.KEY_TYPE_ZPK, algorithm=pb.ALGORITHM_TDES_2KEY,
                              usage=pb.KEY_USAGE_PIN_ENCRYPTION, mode_of_use=pb.MODE_OF_USE_ENCRYPT_DECRYPT,
                              exportability=pb.EXPORTABILITY_NON_EXPORTABLE)


def test_dev_zmk_from_component_files_then_partner_keys_import_under_it(site: Site) -> None:
    # As the README has it: the server runs (a fresh store), and the ZMK is formed beside it.
    with _serving(site) as address:
        # K1 (the default): KCVs as the partner's key sheet states them, from the XOR of the components.
        r = _hsmsvc("dev", "seed", *site.base, "--insecure-dev", "--zmk", "zmk-partner",
                    *_files(site.dir, K1_PARTS, "k1"))
        assert r.returncode == 0, r.stderr
        k1_zmk = ref.xor(*K1_PARTS)
        assert _kcv_line(r.stdout, "zmk-partner") == ref.tdes_kcv(k1_zmk).hex().upper()
        assert [line.rsplit(" ", 1)[1] for line in r.stdout.splitlines() if line.startswith("component")] == [
            ref.tdes_kcv(p).hex().upper() for p in K1_PARTS]
        assert "warning: development only" in r.stderr and "component files" in r.stderr
        # K0 for ZPKs in the partner's X9.17 plain ECB form, the components typed at the hidden prompt
        # (here a pipe).
        r = _hsmsvc("dev", "seed", *site.base, "--insecure-dev", "--zmk", "zmk-partner-k0", "--usage", "K0",
                    "--legacy-types", "ZPK", "--legacy-form", "X917_ECB",
                    stdin="".join(p.hex() + "\n" for p in K0_PARTS))
        assert r.returncode == 0, r.stderr
        k0_zmk = ref.xor(*K0_PARTS)
        assert _kcv_line(r.stdout, "zmk-partner-k0") == ref.tdes_kcv(k0_zmk).hex().upper()

        # The development principal imports the partner's ZPKs over gRPC: one as a TR-31 block (built
        # here, tests/reference.py) under the K1 ZMK, one TDES-ECB enciphered under the K0 ZMK itself
        # (ANSI X9.17, no variant), each with the partner's KCV, which the server checks.
        zpk_a, zpk_b = (ref.odd_parity(secrets.token_bytes(16)) for _ in range(2))
        block = ref.tr31_wrap(k1_zmk, "B0000P0TB00N0000", zpk_a, secrets.token_bytes(6))
        with Client.insecure(address) as c:
            for key_id, kek, wrapped, clear in (
                ("partner-zpk-a", "zmk-partner", block.encode(), zpk_a),
                ("partner-zpk-b", "zmk-partner-k0", ref.tdes_ecb(k0_zmk, zpk_b), zpk_b),
            ):
                got = c.keys.ImportKey(key_pb.ImportKeyRequest(
                    kek=pb.KeyRef(key_id=kek), wrapped_key=wrapped, kcv=ref.tdes_kcv(clear),
                    template=_zpk_template(key_id)))
                assert got.key.kcv == ref.tdes_kcv(clear)
            # And they are the partner's keys: a PIN block under one comes out under the other.
            pan = "4012345678909"
            assert c.translate_pin("partner-zpk-a", "partner-zpk-b", ref.tdes_ecb(zpk_a, ref.iso0("1234", pan)),
                                   pan=pan) == ref.tdes_ecb(zpk_b, ref.iso0("1234", pan))

    # Each formation is a key.form audit row by dev-seed with the component KCVs; no clear value is stored.
    with sqlite3.connect(site.db) as db:
        rows = db.execute("SELECT actor, key_id, detail FROM audit WHERE action = 'key.form' ORDER BY seq").fetchall()
    assert [(a, k) for a, k, _ in rows] == [("dev-seed", "zmk-partner"), ("dev-seed", "zmk-partner-k0")]
    assert ref.tdes_kcv(K1_PARTS[1]).hex().upper() in rows[0][2]
    stored = b"".join(f.read_bytes() for f in site.dir.glob("keys.db*"))
    for secret in (*K1_PARTS, *K0_PARTS, k1_zmk, k0_zmk, zpk_a, zpk_b):
        assert secret not in stored and secret.hex().encode() not in stored.lower()


@pytest.mark.parametrize(("args", "message"), [
    (("--zmk", "z", "--component", "00" * 16, "--component", "11" * 16), "give --insecure-dev"),
    (("--insecure-dev", "--zmk", "z", "--component", "0123456789ABCDEFFEDCBA98765432", "--component", "11" * 16),
     "component 1: 32 hex digits for TDES_2KEY"),
    (("--insecure-dev", "--zmk", "z", "--component", "0123456789ABCDEFFEDCBA987654321G", "--component", "11" * 16),
     "component 1: hex digits"),
    (("--insecure-dev", "--zmk", "z", "--component", "0123456789ABCDEFFEDCBA9876543210"),
     "components: 2 to 9 (dual control)"),
    (("--insecure-dev", "--zmk", "z", "--usage", "K0", "--component", "00" * 16, "--component", "11" * 16),
     "legacy_types: a K0 ZMK needs"),
    (("--insecure-dev", "--zmk", "z", "--usage", "K0", "--legacy-types", "ZPK", "--component", "00" * 16,
      "--component", "11" * 16), "legacy_form: X917_ECB, PAYSHIELD_VARIANT or HSMSVC_VARIANT"),
    (("--component-file", "x"), "component_file: only with --zmk or --tmk"),
])
def test_refusals_are_one_line_and_leave_nothing(site: Site, args: tuple[str, ...], message: str) -> None:
    r = _hsmsvc("dev", "seed", *site.base, *args)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("hsmsvc: ") and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "0123456789" not in r.stderr
    assert not site.db.exists()
