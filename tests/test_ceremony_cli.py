"""`hsmsvc ceremony lmk ...` and `component print`, run as key officers run them (issue 6).

The commands run as child processes with their answers on standard input,
except one run at a pseudo-terminal (pexpect), as a person at a keyboard would.
The server is a real `hsmsvc serve` over mTLS on PostgreSQL. KCVs are
recomputed with pyca.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pexpect
import pytest
from sqlalchemy import create_engine, text

from hsmsvc.ceremony.journal import verify
from hsmsvc.crypto import kcv
from hsmsvc.hsm.commands import Kcv, PublicKey
from hsmsvc.hsm.model import KeySpec
from hsmsvc.hsm.soft import sealed
from hsmsvc.hsm.soft.backend import SoftBackend
from hsmsvc.keys.hierarchy import KeyManager
from hsmsvc.keys.store import KeyStore
from hsmsvc.types import Algorithm, KeyState, KeyType, KeyUsage, ModeOfUse
from hsmsvc_client.v1 import data_service_pb2 as data_pb
from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import types_pb2 as pb
from hsmsvc_client import Client, ClientTls
from tests import pg
from tests.api.conftest import launch, stop, template
from tests.ceremony import mailer_component, mailer_file
from tests.reference import xor
from tools.bench.pki import ThrowawayCA as TestCA

PP = "ceremony-test-passphrase"
AES256 = Algorithm.AES_256


OFFICER = "otto"


def hsmsvc(*args: str, answers: list[str] = [], ok: bool = True) -> subprocess.CompletedProcess[str]:  # noqa: B006
    env = {**os.environ, "PP": PP, "PP2": PP + "-new"}
    if args[:1] == ("ceremony",) and args[1:2] not in (("zmk",), ("journal",)) and "--officer" not in args:
        args = (*args, "--officer", OFFICER)  # else asked first (a person, not the login)
    r = subprocess.run([sys.executable, "-m", "hsmsvc", *args], input="\n".join(answers) + "\n", text=True,
                       capture_output=True, timeout=120, env=env)
    if ok:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


def mailer(path: Path) -> tuple[bytes, bytes]:
    """The component and its KCV as a custodian reads them off the text mailer."""
    lines = path.read_text().splitlines()
    component = mailer_component(path)
    check = bytes.fromhex(next(x for x in lines if x.startswith("Component KCV:")).split()[2])
    return component, check


POLICY = """
[[principals]]
name = "officer"
roles = ["manager"]
keys = ["*"]

[[principals]]
name = "app"
roles = ["operator"]
keys = ["*"]
"""


def test_three_custodians_create_back_up_and_restore_the_lmk(tmp_path: Path) -> None:
    """The scripted ceremony of the issue's acceptance, end to end."""
    parts = [secrets.token_bytes(32) for _ in range(3)]
    lmk_kcv = kcv.kcv(AES256, xor(*parts)).hex().upper()
    site = tmp_path / "site"
    site.mkdir()
    ca = TestCA(tmp_path)
    srv = ca.issue("hsmsvc-server", server=True)
    (site / "policy.toml").write_text(POLICY)
    with pg.throwaway_db() as url:
        names = ["alice", "bob", "carol"]
        answers = [x for n, p in zip(names, parts) for x in (n, p.hex())]
        r = hsmsvc("ceremony", "lmk", "create", "--custodians", "3", "--sealed", str(site / "lmk.sealed"),
                   "--passphrase-env", "PP", "--scrypt-log2-n", "14", "--store", url, "--officer", "olga",
                   answers=answers)
        for n, p in zip(names, parts):
            assert f"{n}: component {names.index(n) + 1} KCV {kcv.kcv(AES256, p).hex().upper()}" in r.stdout
        assert f"LMK KCV {lmk_kcv}" in r.stdout
        assert all(p.hex() not in r.stdout.lower() for p in parts)
        journal = (site / "lmk.sealed.ceremony.log").read_text()
        assert lmk_kcv in journal and "alice,bob,carol" in journal and parts[0].hex() not in journal.lower()

        # The server starts with it; keys are generated and used.
        proc, info = launch(site, url, site / "lmk.sealed", srv, ca, passphrase=PP)
        ids = {n: ca.issue(n) for n in ("officer", "app")}

        def client(name: str, port: int) -> Client:
            return Client(f"127.0.0.1:{port}", ClientTls(ca.ca_file, ids[name].cert, ids[name].key, "localhost"))

        with client("officer", info["port"]) as officer, client("app", info["port"]) as app:
            dek = officer.keys.GenerateKey(key_pb.GenerateKeyRequest(template=template(
                "dek-1", pb.KEY_TYPE_DEK, pb.ALGORITHM_AES_256, pb.KEY_USAGE_DATA, pb.MODE_OF_USE_ENCRYPT_DECRYPT)))
            enc = app.data.Encrypt(data_pb.EncryptRequest(
                key=pb.KeyRef(key_id="dek-1"), plaintext=b"6222027000000000011",
                cipher=data_pb.FieldCipher(mode=pb.CIPHER_MODE_GCM, padding=pb.DATA_PADDING_NONE)))
        # Back up to three new components while it runs.
        mail = tmp_path / "mail"
        r = hsmsvc("ceremony", "lmk", "backup", "--custodians", "3", "--custodian", "dora", "--custodian", "erik",
                   "--custodian", "fay", "--sealed", str(site / "lmk.sealed"), "--passphrase-env", "PP",
                   "--mailer-dir", str(mail), "--store", url)
        assert f"LMK KCV {lmk_kcv}" in r.stdout
        stop(proc, site / "server.log")
        backup = [mailer(mailer_file(mail, i + 1, n)) for i, n in enumerate(("dora", "erik", "fay"))]
        assert {c for c, _ in backup}.isdisjoint(parts) and kcv.kcv(AES256, xor(*(c for c, _ in backup))).hex(
        ).upper() == lmk_kcv
        for f in mail.iterdir():
            assert stat.S_IMODE(f.stat().st_mode) == 0o600
        assert mailer_file(mail, 1, "dora", ".pdf").read_bytes().startswith(b"%PDF")

        # A wrong component is refused by its KCV before anything is written.
        fresh = tmp_path / "fresh"
        fresh.mkdir()
        (fresh / "policy.toml").write_text(POLICY)
        r = hsmsvc("ceremony", "lmk", "restore", "--custodians", "3", "--sealed", str(fresh / "lmk.sealed"),
                   "--passphrase-env", "PP", "--scrypt-log2-n", "14", "--expect-kcv", lmk_kcv,
                   "--custodian", "dora", "--custodian", "erik", "--custodian", "fay",
                   answers=[x for c, k in ((backup[0]), *[(backup[2][0], backup[1][1])] * 3)
                            for x in (c.hex(), k.hex())],
                   ok=False)
        # Asked again twice (re-entry), then the ceremony stops, journaled, with nothing written.
        assert r.stdout.count("KCV mismatch") == 3 and "(1 try left)" in r.stdout
        assert r.returncode == 2 and "3 tries" in r.stderr and not (fresh / "lmk.sealed").exists()
        abandoned = json.loads((fresh / "lmk.sealed.ceremony.log").read_text().splitlines()[-1])
        assert abandoned["action"] == "lmk-restore.abandoned" and "3 tries" in abandoned["reason"]

        # A fresh backend restored from the three backup components: same KCV, and the old keys still work.
        r = hsmsvc("ceremony", "lmk", "restore", "--custodians", "3", "--sealed", str(fresh / "lmk.sealed"),
                   "--passphrase-env", "PP", "--scrypt-log2-n", "14", "--expect-kcv", lmk_kcv,
                   "--custodian", "dora", "--custodian", "erik", "--custodian", "fay", "--store", url,
                   answers=[x for c, k in backup for x in (c.hex(), k.hex())])
        assert f"KCV {lmk_kcv}" in r.stdout
        proc, info = launch(fresh, url, fresh / "lmk.sealed", srv, ca, passphrase=PP)
        try:
            with client("app", info["port"]) as app:
                dec = app.data.Decrypt(data_pb.DecryptRequest(
                    key=pb.KeyRef(key_id="dek-1"), ciphertext=enc.ciphertext,
                    cipher=data_pb.FieldCipher(mode=pb.CIPHER_MODE_GCM, padding=pb.DATA_PADDING_NONE, iv=enc.iv)))
                assert dec.plaintext == b"6222027000000000011"
                assert app.keys.GetKeyCheckValue(key_pb.GetKeyCheckValueRequest(
                    key=pb.KeyRef(key_id="dek-1"))).kcv == dek.key.kcv
        finally:
            stop(proc, fresh / "server.log")
        r = hsmsvc("audit", "verify", "--sealed", str(fresh / "lmk.sealed"), "--passphrase-env", "PP", "--store", url)
        assert "chain intact" in r.stdout
        engine = create_engine(url)
        with engine.connect() as conn:
            steps = conn.execute(text("SELECT actor, action FROM audit WHERE action LIKE 'lmk.%' ORDER BY seq")).all()
        engine.dispose()
        assert [(a, b) for a, b in steps] == [("olga", "lmk.create"), (OFFICER, "lmk.backup"),
                                              (OFFICER, "lmk.restore")]


def test_lmk_create_at_a_terminal(tmp_path: Path) -> None:
    """A person at a keyboard: echo off for components and the passphrase; a drawn component shown once."""
    c1, c2 = secrets.token_bytes(32), secrets.token_bytes(32)
    screen = io.StringIO()
    child = pexpect.spawn(sys.executable, ["-m", "hsmsvc", "ceremony", "lmk", "create", "--custodians", "3",
                                           "--sealed", str(tmp_path / "lmk.sealed"), "--scrypt-log2-n", "14"],
                          encoding="utf-8", timeout=60, env={**os.environ, "TERM": "xterm"})
    child.logfile_read = screen
    child.expect("Key officer's name: ")  # asked, not taken from the login
    child.sendline("olga")
    child.expect("LMK passphrase \\(hidden\\): ")
    child.sendline(PP)
    child.expect("again: ")
    child.sendline(PP)
    kcvs = []
    for i, (name, part) in enumerate((("alice", c1), ("bob", c2))):
        child.expect("your name: ")
        child.sendline(name)
        child.expect(f"component {i + 1} of 3 .*: ")
        child.sendline(part.hex())
        child.expect(f"{name}: component {i + 1} KCV ([0-9A-F]{{6}})")
        kcvs.append(child.match.group(1))
    child.expect("your name: ")
    child.sendline("carol")
    child.expect("component 3 of 3 .*: ")
    child.sendline("")  # draw one
    child.expect("only you can see the screen, then press Enter. ")
    child.sendline("")
    child.expect("component  ([0-9A-F ]{79})")
    drawn = bytes.fromhex(child.match.group(1).replace(" ", ""))
    child.expect("press Enter to clear the screen. ")
    child.sendline("")
    child.expect_exact("\x1b[2J")
    child.expect("carol: component 3 KCV ([0-9A-F]{6})")
    kcvs.append(child.match.group(1))
    child.expect("LMK KCV ([0-9A-F]{6})")
    lmk_kcv = child.match.group(1)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, screen.getvalue()
    assert kcvs == [kcv.kcv(AES256, p).hex().upper() for p in (c1, c2, drawn)]
    assert lmk_kcv == kcv.kcv(AES256, xor(c1, c2, drawn)).hex().upper()
    shown = screen.getvalue()
    assert c1.hex() not in shown and c2.hex() not in shown and PP not in shown  # echo was off
    backend = SoftBackend.from_sealed(tmp_path / "lmk.sealed", PP.encode())
    assert backend.lmk_kcv().hex().upper() == lmk_kcv


def test_fewer_than_two_custodians_are_refused(tmp_path: Path) -> None:
    for n in ("1", "0", "10"):
        r = hsmsvc("ceremony", "lmk", "create", "--custodians", n, "--sealed", str(tmp_path / "x.sealed"),
                   "--passphrase-env", "PP", ok=False)
        assert r.returncode == 2 and "custodians" in r.stderr and not (tmp_path / "x.sealed").exists()


def test_component_print_writes_one_mailer_per_custodian(tmp_path: Path) -> None:
    out = tmp_path / "mailers"
    r = hsmsvc("ceremony", "component", "print", "--out", str(out), "--label", "zmk-branch9", "--key-type", "ZMK",
               "--algorithm", "TDES_2KEY", "--custodian", "ann", "--custodian", "ben", "--custodian", "cy")
    names = ("ann", "ben", "cy")
    files = [mailer_file(out, i + 1, n) for i, n in enumerate(names)]
    parts = [mailer(f) for f in files]
    key = xor(*(c for c, _ in parts))
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

    enc = Cipher(TripleDES(key + key[:8]), modes.ECB()).encryptor()
    key_kcv = (enc.update(bytes(8)) + enc.finalize())[:3].hex().upper()
    assert f"key KCV {key_kcv}" in r.stdout
    for (c, k), f in zip(parts, files):
        assert kcv.kcv(Algorithm.TDES_2KEY, c) == k and c.hex().upper() not in r.stdout
        assert f"Key KCV:        {key_kcv}" in f.read_text()
    ceremony = files[0].name.removesuffix("-1-ann.txt")
    assert ceremony.startswith("print-zmk-branch9-")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{ceremony}-{i + 1}-{n}.{e}" for i, n in enumerate(names) for e in ("txt", "pdf")] + ["ceremony.log"])
    journal = [json.loads(line) for line in (out / "ceremony.log").read_text().splitlines()]
    assert [j["action"] for j in journal] == ["print-zmk-branch9.begin", "component.print"]
    assert {j["ceremony"] for j in journal} == {ceremony} and journal[1]["key_kcv"] == key_kcv
    assert journal[1]["envelope_2"] == f"{ceremony}/2" and journal[1]["officer"] == OFFICER
    assert all(c.hex() not in (out / "ceremony.log").read_text().lower() for c, _ in parts)
    head = f"line 2, hash {journal[1]['hash'][:16].upper()}"
    assert head in r.stdout  # for the paper ceremony log; `journal verify` shows it again
    assert head in hsmsvc("ceremony", "journal", "verify", str(out / "ceremony.log")).stdout
    # A second ceremony into the same directory: its own mailers, none of the first's touched.
    hsmsvc("ceremony", "component", "print", "--out", str(out), "--label", "zmk-branch9",
           "--custodian", "ann", "--custodian", "ben")
    assert len(list(out.glob("*.txt"))) == 5 and all(mailer(f) == p for f, p in zip(files, parts))
    # Printed and sealed: the first ceremony's files go, and the journal says which.
    r = hsmsvc("ceremony", "component", "destroy", "--dir", str(out), "--ceremony", ceremony)
    assert r.stdout.count("destroyed") == 6 and len(list(out.glob("*.txt"))) == 2
    assert json.loads((out / "ceremony.log").read_text().splitlines()[-1])["action"] == "mailers.destroyed"
    assert verify(out / "ceremony.log").ok


def test_a_token_lmk_is_created_by_ceremony_and_restored_from_its_components(tmp_path: Path) -> None:
    from hsmsvc.hsm.pkcs11.backend import Pkcs11Backend
    from tests.hsm import softhsm

    softhsm.setup()
    parts = [secrets.token_bytes(32), secrets.token_bytes(32)]
    want = kcv.kcv(AES256, xor(*parts)).hex().upper()
    token = ["--pkcs11-module", softhsm.MODULE, "--pin-env", softhsm.PIN_ENV, "--journal", str(tmp_path / "j.log")]
    r = hsmsvc("ceremony", "lmk", "create", "--custodians", "2", "--token", "ceremony-a", *token,
               answers=["ann", parts[0].hex(), "ben", parts[1].hex()])
    assert f"LMK KCV {want}" in r.stdout
    r = hsmsvc("ceremony", "lmk", "create", "--custodians", "2", "--token", "ceremony-a", *token,
               answers=["ann", parts[0].hex(), "ben", parts[1].hex()], ok=False)
    assert r.returncode == 2 and "already holds" in r.stderr
    r = hsmsvc("ceremony", "lmk", "backup", "--custodians", "2", "--token", "ceremony-a", *token, ok=False)
    assert r.returncode == 2 and "non-extractable" in r.stderr
    # The backup of a token LMK is its creation components: they re-create it in another token.
    r = hsmsvc("ceremony", "lmk", "restore", "--custodians", "2", "--token", "ceremony-b", "--expect-kcv", want,
               *token, answers=[x for n, p in zip(("ann", "ben"), parts)
                                for x in (n, p.hex(), kcv.kcv(AES256, p).hex())])
    assert f"KCV {want}" in r.stdout
    for label in ("ceremony-a", "ceremony-b"):
        b = Pkcs11Backend(softhsm.MODULE, label, softhsm.PIN)
        try:
            assert b.lmk_kcv().hex().upper() == want
        finally:
            b.close()


# -- LMK migration -------------------------------------------------------------------------


def _seal(path: Path, lmk: bytes, passphrase: str, algorithm: Algorithm = AES256) -> None:
    path.write_bytes(sealed.seal(algorithm, lmk, passphrase.encode(), sealed.ScryptParams(log2_n=14)))


def _populate(url: str, sealed_file: Path) -> dict[str, Any]:
    backend = SoftBackend.from_sealed(sealed_file, PP.encode())
    store = KeyStore(url, backend)
    store.migrate()
    km = KeyManager(store, backend, "setup")
    kcvs = {}
    for i in range(23):
        k = km.generate(KeySpec(f"dek-{i:02}", 1, KeyType.DEK, Algorithm.AES_128, KeyUsage.DATA,
                                ModeOfUse.ENCRYPT_DECRYPT))
        kcvs[k.key_id] = k.cryptogram.kcv
    for spec in (KeySpec("zpk", 1, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION),
                 KeySpec("ktk", 1, KeyType.KTK, Algorithm.SM2, KeyUsage.ASYMMETRIC_KEY_WRAPPING,
                         ModeOfUse.DECRYPT_ONLY)):
        kcvs[spec.key_id] = km.generate(spec).cryptogram.kcv
    km.rotate("dek-00")
    km.change_state("dek-01", 1, KeyState.REVOKED, "test")
    km.change_state("dek-01", 1, KeyState.DESTROYED, "test")
    public = backend.execute(PublicKey(key=store.get("ktk").cryptogram))
    store.close()
    backend.close()
    return {"kcvs": kcvs, "public": public}


def _under(url: str, sealed_file: Path, passphrase: str) -> tuple[int, int]:
    """How many stored keys load under this LMK, and how many do not."""
    backend = SoftBackend.from_sealed(sealed_file, passphrase.encode())
    store = KeyStore(url, backend)
    good = bad = 0
    for k in store.all_keys(None, 1000):
        if not k.cryptogram.blob:
            continue
        try:
            backend.execute(Kcv(key=k.cryptogram))
            good += 1
        except Exception:
            bad += 1
    store.close()
    backend.close()
    return good, bad


@pytest.mark.parametrize(("db", "algorithm"), [("sqlite", AES256), ("postgresql", AES256),
                                               ("postgresql", Algorithm.SM4)])
def test_lmk_migrate_is_resumable_and_destroys_the_old_lmk_only_after_verifying(tmp_path: Path, db: str,
                                                                                algorithm: Algorithm) -> None:
    """AES-256 to AES-256, and (issue 33) AES-256 to SM4 for a national-only deployment."""
    old, new = tmp_path / "old.sealed", tmp_path / "new.sealed"
    _seal(old, secrets.token_bytes(32), PP)
    _seal(new, secrets.token_bytes(algorithm.key_length), PP + "-new", algorithm)
    with pg.throwaway_db() if db == "postgresql" else _sqlite(tmp_path) as url:
        before = _populate(url, old)
        args = ["ceremony", "lmk", "migrate", "--sealed", str(old), "--passphrase-env", "PP",
                "--new-sealed", str(new), "--new-passphrase-env", "PP2", "--store", url, "--batch", "4",
                "--officer", "olga"]
        r = hsmsvc(*args, "--limit", "10")
        assert "stopped at the limit: 10 moved" in r.stdout
        assert _under(url, new, PP + "-new") == (10, 15) and _under(url, old, PP) == (15, 10)
        r = hsmsvc("audit", "verify", "--sealed", str(old), "--passphrase-env", "PP", "--store", url)
        assert "chain intact" in r.stdout  # the chain is untouched until every key has moved

        r = hsmsvc(*args)
        assert "verified: 25 keys" in r.stdout and old.exists()
        assert _under(url, new, PP + "-new") == (25, 0)
        r = hsmsvc("audit", "verify", "--sealed", str(new), "--passphrase-env", "PP2", "--store", url)
        assert "chain intact" in r.stdout
        backend = SoftBackend.from_sealed(new, (PP + "-new").encode())
        store = KeyStore(url, backend)
        for key_id, check in before["kcvs"].items():
            if key_id != "dek-01":
                assert backend.execute(Kcv(key=store.get(key_id, 1).cryptogram))[:3] == check[:3]
        assert backend.execute(PublicKey(key=store.get("ktk").cryptogram)) == before["public"]
        store.close()
        backend.close()

        r = hsmsvc(*args, "--delete-old")
        assert "destroyed" in r.stdout and not old.exists()
        engine = create_engine(url)
        with engine.connect() as conn:
            actions = [a for (a,) in conn.execute(text("SELECT action FROM audit ORDER BY seq"))]
        engine.dispose()
        assert actions.count("lmk.migrate") == 1 and actions[-1] == "lmk.destroy"


def test_lmk_migrate_refuses_a_broken_audit_chain(tmp_path: Path) -> None:
    old, new = tmp_path / "old.sealed", tmp_path / "new.sealed"
    _seal(old, secrets.token_bytes(32), PP)
    _seal(new, secrets.token_bytes(32), PP + "-new")
    with _sqlite(tmp_path) as url:
        _populate(url, old)
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("UPDATE audit SET actor = 'mallory' WHERE seq = 3"))
        engine.dispose()
        r = hsmsvc("ceremony", "lmk", "migrate", "--sealed", str(old), "--passphrase-env", "PP",
                   "--new-sealed", str(new), "--new-passphrase-env", "PP2", "--store", url, ok=False)
        assert r.returncode == 2 and "does not verify under the old LMK" in r.stderr
        assert _under(url, new, PP + "-new") == (0, 25)


def _sqlite(tmp: Path) -> contextlib.nullcontext[str]:
    return contextlib.nullcontext(f"sqlite:///{tmp}/keys.db")

