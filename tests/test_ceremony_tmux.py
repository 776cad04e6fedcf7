"""Issue 29 item 4: a component shown on screen is gone from the terminal's whole history.

The console cleared the scrollback before the screen, and tmux (``scroll-on-clear``) then
pushed the screen, component included, into its history; Ctrl-C at "press Enter to clear
the screen" left the component on screen at the shell prompt. Driven here in a real tmux
session (send-keys), reading the pane's entire history (``capture-pane -S -``).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hsmsvc.ceremony.journal import verify

PP = "correct horse battery staple"
GROUPS = re.compile(r"component  ((?:[0-9A-F]{4} ){15}[0-9A-F]{4})")


class Pane:
    """One tmux session on a private server socket, running ``command``."""

    def __init__(self, tmp: Path, command: list[str]) -> None:
        self.socket = str(tmp / "tmux.sock")
        self.name = "ceremony"
        script = tmp / "run.sh"
        # The shell stays after the command ends, as an officer's terminal would.
        # A handler (not an ignore, which the command would inherit) keeps the shell alive at Ctrl-C.
        script.write_text(f"trap true INT\n{shlex.join(command)}\necho EXITED $?\nexec sleep 600\n")
        self._tmux("new-session", "-d", "-s", self.name, "-x", "200", "-y", "50", f"sh {shlex.quote(str(script))}")
        self._tmux("set-option", "-t", self.name, "history-limit", "10000")

    def _tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-S", self.socket, *args], capture_output=True, text=True,
                              check=True).stdout

    def send(self, text: str, enter: bool = True) -> None:
        self._tmux("send-keys", "-t", self.name, "-l", text)
        if enter:
            self._tmux("send-keys", "-t", self.name, "Enter")

    def key(self, key: str) -> None:
        self._tmux("send-keys", "-t", self.name, key)

    def history(self) -> str:
        """Everything the pane holds: its scrollback and its screen."""
        return self._tmux("capture-pane", "-p", "-t", self.name, "-S", "-", "-E", "-")

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", self.name)

    def wait(self, pattern: str, times: int = 1, timeout: float = 60.0) -> re.Match[str]:
        """The ``times``-th match of ``pattern`` on the screen (capture-pane drops trailing blanks)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            found = list(re.finditer(pattern, self.screen()))
            if len(found) >= times:
                return found[times - 1]
            time.sleep(0.05)
        raise AssertionError(f"{pattern!r} never appeared:\n{self.history()}")

    def close(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True)


@pytest.fixture
def pane_for(tmp_path: Path) -> Iterator[Callable[[list[str]], Pane]]:
    if shutil.which("tmux") is None:
        if os.environ.get("CI"):
            pytest.fail("tmux is missing: apt-get install tmux (.ci/run does this)")
        pytest.skip("tmux not available")
    panes: list[Pane] = []

    def make(command: list[str]) -> Pane:
        p = Pane(tmp_path, command)
        panes.append(p)
        return p

    yield make
    for p in panes:
        p.close()


def _up_to_the_drawn_component(pane: Pane) -> str:
    """Officer, passphrase twice, a typed component for ann, a drawn one for bob; the drawn one as shown."""
    _officer_and_passphrase(pane)
    pane.wait(r"your name:")
    pane.send("ann")
    pane.wait(r"component 1 of 2 .*:")
    pane.send(secrets.token_bytes(32).hex())
    pane.wait(r"ann: component 1 KCV")
    pane.wait(r"your name:", times=2)
    pane.send("bob")
    pane.wait(r"component 2 of 2 .*:")
    pane.send("")  # draw it
    pane.wait(r"only you can see the screen, then press Enter\.")
    pane.send("")
    m = pane.wait(GROUPS.pattern)
    pane.wait(r"press Enter to clear the screen\.")
    return m.group(1)


def _command(tmp: Path) -> list[str]:
    return [sys.executable, "-m", "hsmsvc", "ceremony", "lmk", "create", "--custodians", "2",
            "--sealed", str(tmp / "lmk.sealed"), "--scrypt-log2-n", "14"]


def test_after_a_complete_ceremony_no_component_is_in_the_pane_history(
    tmp_path: Path, pane_for: Callable[[list[str]], Pane],
) -> None:
    pane = pane_for(_command(tmp_path))
    shown = _up_to_the_drawn_component(pane)
    assert shown in pane.history()  # it was on screen
    pane.send("")
    pane.wait(r"EXITED 0")
    history = pane.history()
    assert "LMK KCV" in history
    assert shown not in history and shown.replace(" ", "") not in history.replace(" ", ""), history


def test_ctrl_c_at_the_clear_prompt_takes_the_component_off_the_screen(
    tmp_path: Path, pane_for: Callable[[list[str]], Pane],
) -> None:
    pane = pane_for(_command(tmp_path))
    shown = _up_to_the_drawn_component(pane)
    pane.key("C-c")
    pane.wait(r"EXITED [1-9]")
    history = pane.history()
    assert shown not in history and shown.replace(" ", "") not in history.replace(" ", ""), history
    assert not (tmp_path / "lmk.sealed").exists()


def _officer_and_passphrase(pane: Pane) -> None:
    pane.wait(r"Key officer's name:")
    pane.send("olga")
    pane.wait(r"LMK passphrase \(hidden\):")
    pane.send(PP)
    pane.wait(r"again:")
    pane.send(PP)


def test_a_mailer_that_cannot_be_written_leaves_no_lmk_no_mailer_and_a_journal_line(
    tmp_path: Path, pane_for: Callable[[list[str]], Pane],
) -> None:
    """Issue 29 acceptance: the sealed LMK used to be written first, and stayed when a mailer failed.

    The fault is real: a file-size limit (``ulimit -f 2`` in sh: 1,024 bytes) that the sealed LMK
    (about 500 bytes) and the journal lines fit under and the first mailer (over 1 KiB with
    these names) does not, so the write fails with EFBIG after the LMK was sealed and staged.
    """
    mail, journal = tmp_path / "mailers", tmp_path / "journal.jsonl"
    names = ["custodian-" + "a" * 40, "custodian-" + "b" * 40]
    command = _command(tmp_path) + ["--mailer-dir", str(mail), "--journal", str(journal)]
    script = tmp_path / "limited.sh"
    script.write_text(f"ulimit -f 2\nexec {shlex.join(command)}\n")
    pane = pane_for(["sh", str(script)])
    _officer_and_passphrase(pane)
    for i, name in enumerate(names):
        pane.wait(r"your name:", times=i + 1)
        pane.send(name)
        pane.wait(rf"component {i + 1} of 2 .*:")
        pane.send("")  # drawn, for the mailer
    pane.wait(r"EXITED [1-9]")
    history = pane.history()
    assert "too large" in history.lower(), history
    assert "Traceback" not in history
    assert not (tmp_path / "lmk.sealed").exists()
    assert not mail.exists() or list(mail.iterdir()) == [], list(mail.iterdir())
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".staging")] == []
    lines = [json.loads(x) for x in journal.read_text().splitlines()]
    assert [x["action"] for x in lines] == ["lmk-create.begin", "lmk-create.abandoned"]
    assert lines[0]["ceremony"] == lines[1]["ceremony"] and lines[1]["officer"] == "olga"
    assert "too large" in lines[1]["reason"].lower()
    assert verify(journal).ok


def test_a_mistyped_component_is_entered_again_and_the_ceremony_completes(
    tmp_path: Path, pane_for: Callable[[list[str]], Pane],
) -> None:
    journal = tmp_path / "journal.jsonl"
    pane = pane_for(_command(tmp_path) + ["--journal", str(journal)])
    _officer_and_passphrase(pane)
    first, second = secrets.token_bytes(32), secrets.token_bytes(32)
    pane.wait(r"your name:")
    pane.send("ann")
    pane.wait(r"component 1 of 2 .*:")
    pane.send(first.hex()[:-2])  # a digit short
    pane.wait(r"64 hex digits; try again \(2 tries left\)")
    pane.wait(r"component 1 of 2 .*:", times=2)
    pane.send(first.hex()[:-1] + "g")  # not hex
    pane.wait(r"hex digits; try again \(1 try left\)")
    pane.wait(r"component 1 of 2 .*:", times=3)
    pane.send(first.hex())
    pane.wait(r"ann: component 1 KCV")
    pane.wait(r"your name:", times=2)
    pane.send("bob")
    pane.wait(r"component 2 of 2 .*:")
    pane.send(second.hex())
    pane.wait(r"EXITED 0")
    want = _aes_kcv(bytes(a ^ b for a, b in zip(first, second)))
    assert f"LMK KCV {want}" in pane.history()
    assert first.hex() not in pane.history().lower()  # typed with echo off
    lines = [json.loads(x) for x in journal.read_text().splitlines()]
    assert [x["action"] for x in lines] == ["lmk-create.begin", "lmk.create"]
    assert lines[1]["lmk_kcv"] == want and verify(journal).ok


def _aes_kcv(key: bytes) -> str:
    """AES KCV: the leftmost 3 bytes of the CMAC of a zero block (ANSI X9.24-1:2017; pyca)."""
    from cryptography.hazmat.primitives.ciphers import algorithms
    from cryptography.hazmat.primitives.cmac import CMAC

    c = CMAC(algorithms.AES(key))
    c.update(bytes(16))
    return c.finalize()[:3].hex().upper()
