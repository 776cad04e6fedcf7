"""Running ``hsmsvc`` as an operator would, for the ops tests: a command, or a server until ready."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def hsmsvc(*args: str, env: Mapping[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hsmsvc", *args], capture_output=True, text=True, timeout=timeout,
                          env=dict(env) if env is not None else None)


def start_server(config: Path, *, env: Mapping[str, str] | None = None, cwd: Path | None = None,
                 args: tuple[str, ...] = ()) -> tuple[subprocess.Popen[bytes], dict[str, Any], Path]:
    """``hsmsvc serve --config`` until its ready file appears; the process, the file's ports and its log."""
    ready, log = config.parent / "ready.json", config.parent / "server.log"
    ready.unlink(missing_ok=True)
    full_env = {**(env if env is not None else os.environ),
                "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "hsmsvc", "serve", "--config", str(config),
                                 "--ready-file", str(ready), *args],
                                stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=cwd)
    deadline = time.monotonic() + 30
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("server did not start:\n" + log.read_text())
        time.sleep(0.05)
    return proc, json.loads(ready.read_text()), log
