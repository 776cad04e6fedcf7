"""`tools.bench.instructions` end to end: both servers under callgrind, counted over real calls."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_instructions_per_call_for_hsmsvc_and_echo(tmp_path: Path) -> None:
    for tool, package in (("valgrind", "valgrind"), ("h2load", "nghttp2-client")):
        if shutil.which(tool) is None:
            if os.environ.get("CI") == "true":
                pytest.fail(f"{tool} missing under CI (apt-get install {package}; .ci/run does this)")
            pytest.skip(f"{tool} missing: apt-get install {package}")
    r = subprocess.run([sys.executable, "-m", "tools.bench.instructions", "--forms", "unary,batch",
                        "--batch-size", "10", "--calls", "60", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    unary, batch = json.loads((tmp_path / "instructions.json").read_text())
    assert (unary["form"], unary["items_per_request"], batch["form"], batch["items_per_request"]) == (
        "unary", 1, "batch", 10)
    for row in (unary, batch):
        assert row["operation"] == "TranslatePin" and row["requests"] == 60
        # A gRPC call through grpc.aio alone is some 400k instructions; hsmsvc does more than echo.
        assert 100_000 < row["echo"] < row["hsmsvc"] < 50_000_000, row
        assert row["ratio"] == pytest.approx(row["echo"] / row["hsmsvc"], rel=0.01)
        # Counted per thread: the event loop's share is never all of it (grpc keeps threads of
        # its own), and hsmsvc's loop does more per call than echo's.
        for server in ("hsmsvc", "echo"):
            assert 100_000 < row[f"{server}_serving"] < row[server], row
        assert row["echo_serving"] < row["hsmsvc_serving"], row
    # Ten items cost more than one: the count follows the work, not a constant.
    assert batch["hsmsvc"] > unary["hsmsvc"]
    assert "TranslatePin  unary" in r.stdout
