"""Running ``hsmsvc`` for a test: as a child process (``.venv/bin/hsmsvc``), or in this process.

A child process is what an operator runs; this process runs the same ``main`` without the
second or so a fresh interpreter spends importing, for the many calls that only vary the
options. The environment is restored after an in-process call (the CLI may set
``GRPC_VERBOSITY`` for itself).
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

from hsmsvc.cli import main

HSMSVC = str(Path(sys.executable).with_name("hsmsvc"))


def run(argv: list[str], *, process: bool, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``hsmsvc ARGV``; ``env`` replaces the environment (in a child process) or overlays it (here)."""
    if process:
        return subprocess.run([HSMSVC, *argv], capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL, env=env if env is not None else dict(os.environ))
    out, err = io.StringIO(), io.StringIO()
    saved = dict(os.environ)
    if env is not None:
        os.environ.clear()
        os.environ.update(env)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(argv)
            except SystemExit as e:  # argparse's refusals
                rc = e.code if isinstance(e.code, int) else 2
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return subprocess.CompletedProcess(["hsmsvc", *argv], rc, out.getvalue(), err.getvalue())
