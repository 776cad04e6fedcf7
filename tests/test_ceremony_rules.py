"""Issue 29: the rules a ceremony applies are applied when they can still be met.

A custodian's name is checked at the prompt by the rule the mailer's file names need, and
asked again; the passphrase minimum is checked when it is typed, before any component; the
journal, which names custodians and KCVs, is created 0600.
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hsmsvc.ceremony import entry, journal, lmk
from hsmsvc.ceremony.record import Record
from hsmsvc.ceremony.staging import Staging
from hsmsvc.errors import AlreadyExists, InvalidInput
from hsmsvc.types import Algorithm
from tests.ceremony import scripted


def test_a_name_the_mailer_would_refuse_is_asked_again_at_the_prompt() -> None:
    part = "00" * 32
    console = scripted(["ann:1", "ann", part, "bob", part.replace("00", "11")])
    parts, custodians = entry.collect(console, 2, Algorithm.AES_256, may_generate=False, need_kcv=False)
    assert [c.name for c in custodians] == ["ann", "bob"]
    assert "again" in console.out.getvalue()  # type: ignore[attr-defined]


def test_three_refused_names_stop_the_ceremony_before_any_component() -> None:
    console = scripted(["a:b", "a b", "a/b"])
    with pytest.raises(InvalidInput, match="custodian"):
        entry.collect(console, 2, Algorithm.AES_256, may_generate=False, need_kcv=False)


def test_a_short_passphrase_is_refused_when_typed(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="at least 12 bytes"):
        lmk.SealedTarget(tmp_path / "lmk.sealed", b"too short")
    assert not (tmp_path / "lmk.sealed").exists()


def test_the_journal_is_created_0600(tmp_path: Path) -> None:
    journal = tmp_path / "ceremonies" / "journal.jsonl"
    Record("olga", journal).line("lmk-create-x", "lmk.create", custodians="ann,bob")
    assert stat.S_IMODE(journal.stat().st_mode) == 0o600
    assert json.loads(journal.read_text())["action"] == "lmk.create"


def test_the_journal_chain_shows_an_edited_line(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    for i in range(3):
        journal.append(path, {"ceremony": "c", "action": f"step.{i}", "kcv": "39C6E6"})
    assert journal.verify(path).ok and journal.verify(path).lines == 3
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], lines[1].replace("39C6E6", "39C6E7"), lines[2]]) + "\n")
    assert journal.verify(path).problems == ("line 2: does not chain to the line before",)
    r = _hsmsvc("ceremony", "journal", "verify", str(path))
    assert r.returncode == 1 and "chain BROKEN" in r.stdout
    # Rewritten whole, the chain verifies again (it has no key): only the head on paper tells.
    on_paper = journal.verify(path).head
    path.unlink()
    for i in (0, 2):
        journal.append(path, {"ceremony": "c", "action": f"step.{i}", "kcv": "39C6E6"})
    journal.append(path, {"ceremony": "c", "action": "step.3", "kcv": "39C6E6"})
    assert journal.verify(path).ok and journal.verify(path).head != on_paper
    path.write_text("\n".join([lines[0], lines[2]]) + "\n")  # a line removed
    assert not journal.verify(path).ok


def test_a_ceremony_stopped_before_it_began_is_journaled(tmp_path: Path) -> None:
    r = _hsmsvc("ceremony", "lmk", "create", "--custodians", "2", "--sealed", str(tmp_path / "lmk.sealed"),
                "--officer", "olga", input="a passphrase long enough\nanother passphrase long enough\n")
    assert r.returncode == 2 and "differ" in r.stderr
    line = json.loads((tmp_path / "lmk.sealed.ceremony.log").read_text())
    assert line["action"] == "lmk-create.abandoned" and line["officer"] == "olga"
    assert line["reason"].startswith("before it began:") and "differ" in line["reason"]


LONG = ["custodian-" + "a" * 50, "custodian-" + "b" * 50]


def _limited() -> None:
    # 1,024 bytes a file: the sealed LMK and journal lines fit, a mailer (over 1 KiB with these names) not.
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))


@pytest.mark.parametrize("ceremony", ["backup", "print"])
def test_a_mailer_that_cannot_be_written_leaves_no_mailer_set(tmp_path: Path, ceremony: str) -> None:
    """Issue 29 item 3: backup and component print left the mailers written before the failing one."""
    mail = tmp_path / "mailers"
    if ceremony == "backup":
        assert _hsmsvc("lmk", "init", "--sealed", str(tmp_path / "lmk.sealed"), "--passphrase-env", "PP",
                       "--scrypt-log2-n", "14").returncode == 0
        args = ["ceremony", "lmk", "backup", "--custodians", "2", "--sealed", str(tmp_path / "lmk.sealed"),
                "--passphrase-env", "PP", "--journal", str(tmp_path / "journal.log")]
    else:
        args = ["ceremony", "component", "print", "--label", "zmk-x", "--algorithm", "AES_256",
                "--journal", str(tmp_path / "journal.log")]
    args += ["--mailer-dir" if ceremony == "backup" else "--out", str(mail), "--officer", "olga"]
    for name in LONG:
        args += ["--custodian", name]
    r = _hsmsvc(*args, limit=True)
    assert r.returncode == 2 and "too large" in r.stderr.lower() and "Traceback" not in r.stderr, r.stderr
    assert not mail.exists() or list(mail.iterdir()) == []
    lines = [json.loads(x) for x in (tmp_path / "journal.log").read_text().splitlines()]
    assert lines[-1]["action"].endswith(".abandoned") and lines[-1]["ceremony"] == lines[-2]["ceremony"]
    assert journal.verify(tmp_path / "journal.log").ok


def _hsmsvc(*args: str, input: str = "", limit: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PP": "a passphrase long enough"}
    return subprocess.run([sys.executable, "-m", "hsmsvc", *args], input=input, text=True, capture_output=True,
                          timeout=60, env=env, preexec_fn=_limited if limit else None)


def _until(proc: subprocess.Popen[bytes], text: bytes, timeout: float = 60.0) -> bytes:
    """What ``proc`` wrote to its standard output up to and including ``text``."""
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + timeout
    while text not in seen:
        assert time.monotonic() < deadline, seen
        chunk = os.read(proc.stdout.fileno(), 4096)
        assert chunk, seen
        seen += chunk
    return seen


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM], ids=["SIGHUP", "SIGTERM"])
def test_a_closed_terminal_discards_the_staged_mailers_and_journals(tmp_path: Path, signum: int) -> None:
    """A closed terminal (SIGHUP) or a kill (SIGTERM) at a prompt ended the process at once: the
    mailers already staged (clear LMK components) stayed in the hidden staging directory, unjournaled."""
    sealed_file, mail, log = tmp_path / "lmk.sealed", tmp_path / "mailers", tmp_path / "journal.log"
    assert _hsmsvc("lmk", "init", "--sealed", str(sealed_file), "--passphrase-env", "PP",
                   "--scrypt-log2-n", "14").returncode == 0
    keyboard, typed = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hsmsvc", "ceremony", "lmk", "backup", "--custodians", "3", "--sealed",
         str(sealed_file), "--passphrase-env", "PP", "--mailer-dir", str(mail), "--journal", str(log),
         "--officer", "olga"],
        stdin=keyboard, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PP": "a passphrase long enough"})
    os.close(keyboard)
    try:
        os.write(typed, b"alice\nbob\n")
        _until(proc, b"Custodian 3 of 3, your name: ")
        assert len(_staged_in(proc.pid, mail)) == 4  # two mailers (txt, pdf) staged, unnamed
        proc.send_signal(signum)
        proc.wait(timeout=30)
    finally:
        os.close(typed)
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert [f for _, _, files in os.walk(mail) for f in files] == []
    assert not mail.exists() or list(mail.iterdir()) == []
    last = json.loads(log.read_text().splitlines()[-1])
    assert last["action"] == "lmk-backup.abandoned" and signal.Signals(signum).name in last["reason"]
    assert journal.verify(log).ok


def test_component_destroy_removes_a_planted_link_without_overwriting_its_target(tmp_path: Path) -> None:
    """`component destroy` followed a symbolic link among the mailers: whoever could write the mailer
    directory had the key officer's command overwrite the link's target, here the sealed LMK."""
    lmk_file, mail = tmp_path / "secure" / "lmk.sealed", tmp_path / "mailers"
    lmk_file.parent.mkdir()
    mail.mkdir()
    lmk_file.write_bytes(b"the sealed LMK")
    ceremony = "print-zmk-x-20260101T000000Z-abcd"
    (mail / f"{ceremony}-1-mallory.txt").symlink_to(lmk_file)
    (mail / f"{ceremony}-2-bob.txt").write_text("a mailer")
    r = _hsmsvc("ceremony", "component", "destroy", "--dir", str(mail), "--ceremony", ceremony, "--officer", "olga",
                "--journal", str(tmp_path / "journal.log"))
    assert r.returncode == 0, r.stderr
    assert lmk_file.read_bytes() == b"the sealed LMK"
    assert list(mail.iterdir()) == []


def test_a_staging_directory_made_by_another_process_is_never_written_to(tmp_path: Path) -> None:
    """A staging directory that already existed (made by a racing process, which owns it and may
    move files out of it before they are shredded) was taken as the ceremony's own."""
    planted = tmp_path / ".lmk-create-x.staging"
    planted.mkdir(mode=0o777)
    s = Staging("lmk-create-x", unnamed=False)  # the named staging of file systems without O_TMPFILE
    with pytest.raises(AlreadyExists, match="not this ceremony's"):
        s.add(tmp_path / "lmk.sealed", b"sealed")
    assert list(planted.iterdir()) == [] and not (tmp_path / "lmk.sealed").exists()
    s.discard()
    mine = Staging("lmk-create-y", unnamed=False)
    mine.add(tmp_path / "a.txt", b"a")
    mine.add(tmp_path / "b.txt", b"b")  # its own directory, once made, takes every file
    mine.publish()
    assert (tmp_path / "a.txt").read_bytes() == b"a" and not (tmp_path / ".lmk-create-y.staging").exists()


def test_component_destroy_takes_a_whole_ceremony_id_not_a_prefix(tmp_path: Path) -> None:
    """`--ceremony print` shredded the mailers of every ceremony whose id begins so, printed or not."""
    mail = tmp_path / "mailers"
    mail.mkdir()
    mine, other = "print-zmk-a-20260101T000000Z-0001", "print-zmk-a-20260101T000000Z-0002"
    for c in (mine, other):
        (mail / f"{c}-1-ann.txt").write_text("a mailer")
    log = str(tmp_path / "journal.log")
    r = _hsmsvc("ceremony", "component", "destroy", "--dir", str(mail), "--ceremony", "print", "--officer", "olga",
                "--journal", log)
    assert r.returncode == 2 and "whole ceremony id" in r.stderr
    r = _hsmsvc("ceremony", "component", "destroy", "--dir", str(mail), "--ceremony", mine, "--officer", "olga",
                "--journal", log)
    assert r.returncode == 0, r.stderr
    assert [p.name for p in mail.iterdir()] == [f"{other}-1-ann.txt"]


def _staged_in(pid: int, directory: Path) -> list[str]:
    """The unnamed (O_TMPFILE) files process ``pid`` holds open in ``directory``."""
    held = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(f"{directory}/#"):
            held.append(target)
    return held


def test_sigkill_mid_ceremony_leaves_no_component_on_disk(tmp_path: Path) -> None:
    """SIGKILL runs no cleanup: files staged by name stayed, holding clear components. Staged
    unnamed (O_TMPFILE), they had no name to stay under, and the kernel freed them."""
    sealed_file, mail = tmp_path / "lmk.sealed", tmp_path / "mailers"
    assert _hsmsvc("lmk", "init", "--sealed", str(sealed_file), "--passphrase-env", "PP",
                   "--scrypt-log2-n", "14").returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "hsmsvc", "ceremony", "lmk", "backup", "--custodians", "3", "--sealed",
         str(sealed_file), "--passphrase-env", "PP", "--mailer-dir", str(mail), "--officer", "olga"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PP": "a passphrase long enough"})
    assert proc.stdin is not None
    try:
        proc.stdin.write(b"alice\nbob\n")
        proc.stdin.flush()
        _until(proc, b"Custodian 3 of 3, your name: ")
        assert len(_staged_in(proc.pid, mail)) == 4
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert [f for _, dirs, files in os.walk(mail) for f in (*dirs, *files)] == []


_KILLED_MID_STAGING = """
import os, signal, sys
from pathlib import Path
from hsmsvc.ceremony.staging import Staging
s = Staging("lmk-backup-killed", unnamed=False)
s.add(Path(sys.argv[1]) / "killed-1-alice.txt", b"a clear component")
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_named_staging_a_killed_ceremony_left_is_shredded_by_the_next(tmp_path: Path) -> None:
    """Without O_TMPFILE, a SIGKILLed ceremony's staging directory stays; the next ceremony in that
    directory finds it unlocked (its ceremony is gone), shreds it and reports it."""
    proc = subprocess.run([sys.executable, "-c", _KILLED_MID_STAGING, str(tmp_path)], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    stale = tmp_path / ".lmk-backup-killed.staging"
    assert (stale / "killed-1-alice.txt").read_bytes() == b"a clear component"
    live = Staging("lmk-backup-live", unnamed=False)
    live.add(tmp_path / "held.txt", b"x")
    assert live.swept == [stale] and not stale.exists()
    nxt = Staging("lmk-create-next", unnamed=False)
    nxt.add(tmp_path / "next.txt", b"y")
    assert nxt.swept == []  # a live ceremony's directory is locked: never swept
    assert (tmp_path / ".lmk-backup-live.staging" / "held.txt").exists()
    live.discard()
    nxt.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_token_lmk_is_taken_back_when_the_journal_then_fails(tmp_path: Path) -> None:
    """A token LMK cannot be staged: it is formed after the mailers publish. When the journal then
    failed, the mailers were taken back but the token kept an LMK nobody holds components for. The
    fault is real: the journal is replaced by a directory while custodian 2 types."""
    from hsmsvc.errors import BackendUnavailable
    from hsmsvc.hsm.pkcs11.backend import Pkcs11Backend
    from tests.hsm import softhsm

    softhsm.setup()
    log = tmp_path / "journal.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hsmsvc", "ceremony", "lmk", "create", "--custodians", "2", "--pkcs11-module",
         softhsm.MODULE, "--token", "ceremony-c", "--pin-env", softhsm.PIN_ENV, "--journal", str(log),
         "--officer", "olga"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None
    try:
        proc.stdin.write(f"ann\n{secrets.token_bytes(32).hex()}\n".encode())
        proc.stdin.flush()
        _until(proc, b"Custodian 2 of 2, your name: ")
        assert json.loads(log.read_text())["action"] == "lmk-create.begin"
        log.unlink()
        log.mkdir()  # the completion line cannot be written
        proc.stdin.write(f"ben\n{secrets.token_bytes(32).hex()}\n".encode())
        proc.stdin.flush()
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2 and b"Traceback" not in err and b"journal" in err, err
    with pytest.raises(BackendUnavailable, match="holds no hsmsvc LMK"):
        Pkcs11Backend(softhsm.MODULE, "ceremony-c", softhsm.PIN)
