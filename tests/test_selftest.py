"""The power-on self-test and the command that runs it."""

import subprocess
import sys

import pytest

from hsmsvc.cli import main
from hsmsvc.hsm import selftest


def test_every_known_answer_test_passes() -> None:
    results = selftest.run()
    assert results and all(r.passed for r in results), [r.name for r in results if not r.passed]


def test_selfcheck_command_exit_code() -> None:
    assert main(["selfcheck"]) == 0


def test_installed_entry_point_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "hsmsvc", "selfcheck", "--json"],
                         capture_output=True, text=True, check=True)
    assert '"passed": true' in out.stdout and '"passed": false' not in out.stdout


def test_serve_refuses_to_start_when_a_known_answer_test_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def one_fails() -> list[selftest.Result]:
        return [selftest.Result("TDES KCV", "ANSI X9.24", True), selftest.Result("AES CMAC", "SP 800-38B", False)]

    monkeypatch.setattr(selftest, "run", one_fails)
    # Nothing else is needed: the self-test comes before the configuration is read.
    assert main(["serve", "--insecure-dev", "--listen", "127.0.0.1:0"]) == 1
    err = capsys.readouterr().err
    assert "power-on self-test failed: AES CMAC; not serving" in err
