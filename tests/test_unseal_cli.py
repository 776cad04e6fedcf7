"""Issue 29 at the command line: a share-sealed LMK made by ceremony, unsealed with `hsmsvc unseal` at a
pseudo-terminal, backed up only by k holders, and a passphrase-sealed LMK resealed under shares.

The commands run as child processes, their answers on standard input, or at a pseudo-terminal
(pexpect) as a custodian at a keyboard. Expected values are independent: shares read off the
screen with this file's own pattern, recombined with pycryptodome, the file opened with pyca's AESGCM.
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pexpect
from Crypto.Protocol.SecretSharing import Shamir
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import create_engine, text

from hsmsvc.crypto import kcv
from hsmsvc.hsm.soft import sealed
from hsmsvc.types import Algorithm
from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import types_pb2 as pb
from hsmsvc_client import Client, ClientTls
from tests.api.conftest import POLICY, launch, stop, template
from tests.ceremony import mailer_component, mailer_file
from tests.reference import xor
from tools.bench.pki import ThrowawayCA as TestCA

PP = "unseal-cli-test-passphrase"
SHOWN = re.compile(r"share  ([0-9A-F]{8}-[1-9]-(?:[0-9A-F]{4}-){16}[0-9A-F]{4})")
AES256 = Algorithm.AES_256


def hsmsvc(*args: str, answers: list[str] = [], ok: bool = True) -> subprocess.CompletedProcess[str]:  # noqa: B006
    if args[:2] == ("ceremony", "lmk") and "--officer" not in args:
        args = (*args, "--officer", "otto")  # else asked first (a person, not the login)
    r = subprocess.run([sys.executable, "-m", "hsmsvc", *args], input="\n".join(answers) + "\n", text=True,
                       capture_output=True, timeout=120, env={**os.environ, "PP": PP})
    if ok:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


def reference_lmk(path: Path, texts: list[str]) -> bytes:
    """Open a share-sealed file from share texts, with pycryptodome and pyca only."""
    picked = [(int(t.split("-")[1]), bytes.fromhex("".join(t.split("-")[2:-1]))) for t in texts]
    key = Shamir.combine([(i, v[:16]) for i, v in picked]) + Shamir.combine([(i, v[16:]) for i, v in picked])
    doc = json.loads(path.read_bytes())
    aad = json.dumps(doc["header"], sort_keys=True, separators=(",", ":")).encode()
    return AESGCM(key).decrypt(bytes.fromhex(doc["nonce"]), bytes.fromhex(doc["ciphertext"]), aad)


def unseal_at_a_terminal(port: int, ca: TestCA, who: str, share: str, mistype_first: bool = False) -> str:
    """`hsmsvc unseal` as a custodian runs it: the share typed with echo off. Returns the screen."""
    ident = ca.issue(who)
    screen = io.StringIO()
    child = pexpect.spawn(sys.executable, ["-m", "hsmsvc", "unseal", "--server", f"127.0.0.1:{port}",
                                           "--ca", str(ca.ca_file), "--cert", str(ident.cert), "--key", str(ident.key),
                                           "--server-name", "localhost"],
                          encoding="utf-8", timeout=30, env={**os.environ, "TERM": "xterm"})
    child.logfile_read = screen
    child.expect(r"LMK seal [0-9A-F]{8}: \d of 2 shares entered \(3 were made\)")
    child.expect_exact("Your share (hidden): ")
    if mistype_first:
        child.sendline(share[:12] + ("0" if share[12] != "0" else "1") + share[13:])
        child.expect("not a valid share: mistyped")
        child.expect_exact("Your share (hidden): ")
    child.sendline(share)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, screen.getvalue()
    out = screen.getvalue()
    assert share not in out and share.replace("-", "") not in out  # echo was off
    return out


def test_a_share_sealed_lmk_from_ceremony_to_unsealed_server_and_backup(tmp_path: Path) -> None:
    parts = [secrets.token_bytes(32), secrets.token_bytes(32)]
    lmk = xor(*parts)
    site = tmp_path / "site"
    site.mkdir()
    lmk_file = site / "lmk.sealed"
    url = f"sqlite:///{site / 'keys.db'}"
    r = hsmsvc("ceremony", "lmk", "create", "--custodians", "2", "--custodian", "ann", "--custodian", "ben",
               "--sealed", str(lmk_file), "--threshold", "2", "--share-holder", "alice", "--share-holder", "bob",
               "--share-holder", "carol", "--store", url, "--officer", "olga",
               answers=[parts[0].hex(), parts[1].hex(), *[""] * 6])
    texts = SHOWN.findall(r.stdout)
    assert len(texts) == 3 and [t.split("-")[1] for t in texts] == ["1", "2", "3"]
    assert f"LMK KCV {kcv.kcv(AES256, lmk).hex().upper()}" in r.stdout
    assert "\x1b[3J" in r.stdout or r.stdout.count("\n\n\n") >= 3  # cleared after each share
    for pair in ((0, 1), (0, 2), (1, 2)):
        assert reference_lmk(lmk_file, [texts[i] for i in pair]) == lmk
    assert json.loads(lmk_file.read_bytes())["header"]["holders"][2] == {"index": 3, "name": "carol"}
    journal = (site / "lmk.sealed.ceremony.log").read_text()
    assert "alice,bob,carol" in journal and not any(t[9:].replace("-", "") in journal.replace("-", "") for t in texts)

    # The server starts sealed; two custodians unseal it at their terminals.
    ca = TestCA(tmp_path)
    srv = ca.issue("hsmsvc-server", server=True)
    (site / "policy.toml").write_text(POLICY)
    proc, info = launch(site, url, lmk_file, srv, ca, backend=f'[backend]\nkind = "soft"\nsealed_lmk = "{lmk_file}"\n')
    mgr_id = ca.issue("key-manager")
    try:
        first = unseal_at_a_terminal(info["port"], ca, "custodian-1", texts[0], mistype_first=True)
        assert "1 of 2 shares entered; the LMK opens when 1 more custodian(s) give theirs" in first
        second = unseal_at_a_terminal(info["port"], ca, "custodian-2", texts[2])
        assert "2 of 2 shares entered: the LMK is open and the server is serving" in second
        with Client(f"127.0.0.1:{info['port']}", ClientTls(ca.ca_file, mgr_id.cert, mgr_id.key, "localhost")) as mgr:
            mgr.keys.GenerateKey(key_pb.GenerateKeyRequest(template=template(
                "dek-1", pb.KEY_TYPE_DEK, pb.ALGORITHM_AES_256, pb.KEY_USAGE_DATA, pb.MODE_OF_USE_ENCRYPT_DECRYPT)))
    finally:
        stop(proc, site / "server.log")
    log = (site / "server.log").read_text()
    assert not any(t in log or t[9:-5].replace("-", "") in log for t in texts)

    # Backup: one holder, then the input ends: refused, nothing written.
    mail = tmp_path / "mail"
    backup = ["ceremony", "lmk", "backup", "--custodians", "2", "--custodian", "dora", "--custodian", "erik",
              "--sealed", str(lmk_file), "--mailer-dir", str(mail), "--store", url]
    r = hsmsvc(*backup, answers=["alice", texts[0]], ok=False)
    assert r.returncode == 2 and "1 of 2 shares entered: the LMK stays sealed and nothing was written" in r.stderr
    assert not mail.exists()
    # A well-formed wrong share: one answer, nothing written.
    digits = bytearray(bytes.fromhex("".join(texts[2].split("-")[2:-1])))
    digits[0] ^= 0xFF
    from hsmsvc.hsm.soft import shares

    forged = shares.text(seal=texts[2][:8], index=3, value=digits)
    r = hsmsvc(*backup, answers=["alice", texts[0], "carol", forged], ok=False)
    assert r.returncode == 2 and "the shares entered do not open the LMK" in r.stderr and not mail.exists()
    # Bob's share under Carol's name is refused by its index.
    r = hsmsvc(*backup, answers=["alice", texts[0], "carol", texts[1]], ok=False)
    assert r.returncode == 2 and "that is share 2; carol holds share 3" in r.stderr and not mail.exists()
    # Two holders: the backup is made.
    r = hsmsvc(*backup, answers=["alice", texts[0], "carol", texts[2]])
    comps = [mailer_component(mailer_file(mail, i + 1, n)) for i, n in enumerate(("dora", "erik"))]
    assert xor(*comps) == lmk and "single control" not in r.stdout
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT actor, action, detail FROM audit WHERE action LIKE 'lmk.%' "
                                 "ORDER BY seq")).all()
    engine.dispose()
    assert [a for _, a, _ in rows] == ["lmk.create", "lmk.unseal", "lmk.unseal", "lmk.backup"]
    assert rows[1][0] == "custodian-1,custodian-2" and "alice,carol" in rows[2][2] and "console" in rows[2][2]
    # The offline commands open it from k holders' shares too.
    r = hsmsvc("audit", "verify", "--sealed", str(lmk_file), "--store", url,
               answers=["bob", texts[1], "carol", texts[2]])
    assert "chain intact" in r.stdout


def test_a_passphrase_sealed_lmk_is_resealed_under_shares_and_the_old_file_kept(tmp_path: Path) -> None:
    lmk = secrets.token_bytes(32)
    lmk_file = tmp_path / "lmk.sealed"
    lmk_file.write_bytes(sealed.seal(AES256, lmk, PP.encode(), sealed.ScryptParams(log2_n=14)))
    before = lmk_file.read_bytes()
    # Backing up a passphrase-sealed LMK says it is single control.
    r = hsmsvc("ceremony", "lmk", "backup", "--custodians", "2", "--custodian", "dora", "--custodian", "erik",
               "--sealed", str(lmk_file), "--passphrase-env", "PP", "--mailer-dir", str(tmp_path / "m1"))
    assert "single control, for development" in r.stdout

    reseal = ["ceremony", "lmk", "reseal", "--sealed", str(lmk_file), "--passphrase-env", "PP", "--threshold", "2",
              "--share-holder", "alice", "--share-holder", "bob", "--share-holder", "carol"]
    r = hsmsvc(*reseal, answers=[""] * 6)
    texts = SHOWN.findall(r.stdout)
    assert len(texts) == 3 and reference_lmk(lmk_file, texts[1:]) == lmk
    kept = tmp_path / "lmk.sealed.previous"
    assert kept.read_bytes() == before and "kept as" in r.stdout and "with the passphrase alone" in r.stdout
    assert oct(lmk_file.stat().st_mode & 0o777) == "0o600"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    # A second reseal is refused until the kept file is destroyed; interrupted mid-way, nothing changes.
    r = hsmsvc(*reseal, ok=False)
    assert r.returncode == 2 and "lmk.sealed.previous exists" in r.stderr
    kept.unlink()
    now = lmk_file.read_bytes()
    r = hsmsvc("ceremony", "lmk", "reseal", "--sealed", str(lmk_file), "--threshold", "2", "--share-holder", "x",
               "--share-holder", "y", answers=["bob", texts[1], "carol", texts[2], ""], ok=False)
    assert r.returncode == 2 and lmk_file.read_bytes() == now and not kept.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    # Stopped between its two steps, a reseal left the kept name on the live file (one inode): told to
    # shred "the previous file", the officer would have destroyed the LMK. The next reseal drops the name.
    os.link(lmk_file, kept)
    r = hsmsvc(*reseal[:5], "--threshold", "2", "--share-holder", "x", "--share-holder", "y",
               answers=["bob", texts[1], "carol", texts[2], "", "", "", ""])
    assert "live file under a second name" in r.stdout
    assert kept.read_bytes() == now and lmk_file.read_bytes() != now and not os.path.samefile(kept, lmk_file)


def test_hsmsvc_unseal_from_files_opens_a_development_server(tmp_path: Path) -> None:
    """--share-file (automation) against --insecure-dev, where the one development principal gives both."""
    lmk_file = tmp_path / "lmk.sealed"
    r = hsmsvc("ceremony", "lmk", "create", "--custodians", "2", "--custodian", "ann", "--custodian", "ben",
               "--sealed", str(lmk_file), "--threshold", "2", "--share-holder", "alice", "--share-holder", "bob",
               answers=[secrets.token_bytes(32).hex(), secrets.token_bytes(32).hex(), *[""] * 4])
    texts = SHOWN.findall(r.stdout)
    for i, t in enumerate(texts):
        (tmp_path / f"share{i}").write_text(t.lower().replace("-", " ") + "\n")
    ready = tmp_path / "ready.json"
    with open(tmp_path / "server.log", "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "hsmsvc", "serve", "--insecure-dev", "--sealed", str(lmk_file),
                                 "--store", f"sqlite:///{tmp_path / 'keys.db'}", "--listen", "127.0.0.1:0",
                                 "--metrics-listen", "", "--ready-file", str(ready)], stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.05)
        server = f"127.0.0.1:{json.loads(ready.read_text())['port']}"
        r = hsmsvc("unseal", "--server", server, "--insecure-dev", "--status")
        assert "0 of 2 shares entered" in r.stdout
        r = hsmsvc("unseal", "--server", server, "--insecure-dev", "--share-file", str(tmp_path / "share0"))
        assert "1 of 2 shares entered" in r.stdout
        r = hsmsvc("unseal", "--server", server, "--insecure-dev", "--share-file", str(tmp_path / "share1"))
        assert "the LMK is open" in r.stdout
        r = hsmsvc("unseal", "--server", server, "--insecure-dev", "--status")
        assert "not sealed, the server is serving" in r.stdout
        r = hsmsvc("unseal", "--server", "hsm.example:8443", "--insecure-dev", "--status", ok=False)
        assert r.returncode == 2 and "only to a loopback address" in r.stderr
    finally:
        proc.terminate()
        proc.wait(15)
    assert not any(t[9:-5].replace("-", "") in (tmp_path / "server.log").read_text() for t in texts)
