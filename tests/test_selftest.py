"""The power-on self-test and the command that runs it."""

import subprocess
import sys

from hsmsvc.cli import main
from hsmsvc.hsm import selftest


def test_every_known_answer_test_passes() -> None:
    results = selftest.run()
    assert results and all(r.passed for r in results), [r.name for r in results if not r.passed]


def test_selfcheck_command_exit_code() -> None:
    assert main(["selfcheck"]) == 0


def test_installed_entry_point_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "hsmsvc", "selfcheck", "--json"], capture_output=True, text=True, check=True)
    assert '"passed": true' in out.stdout and '"passed": false' not in out.stdout
