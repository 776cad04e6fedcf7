"""/healthz and /readyz notice a frozen event loop (issue 26 item 4).

Both are answered by the metrics thread, which keeps running when the loop that
serves calls is stuck; the loop's heartbeat tells them. A real server runs here
in a thread's event loop; the fault is a blocking call put on that loop.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from hsmsvc.api import config
from hsmsvc.api.server import Running, start
from hsmsvc.hsm.soft import sealed
from hsmsvc.types import Algorithm


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read().decode()


def _until(port: int, path: str, code: int, within: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within:
        if _get(port, path)[0] == code:
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"{path} never answered {code} within {within} s")


def test_a_stalled_event_loop_answers_503_and_recovers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lmk = tmp_path / "lmk.sealed"
    lmk.write_bytes(sealed.seal(Algorithm.AES_256, secrets.token_bytes(32), b"heartbeat-test",
                                sealed.ScryptParams(log2_n=14)))
    (tmp_path / "hsmsvc.toml").write_text(f"""
listen = "127.0.0.1:0"
metrics_listen = "127.0.0.1:0"
store = "sqlite:///{tmp_path / 'keys.db'}"
insecure_dev = true
[backend]
kind = "soft"
sealed_lmk = "{lmk}"
passphrase_env = "HSMSVC_HEARTBEAT_PASSPHRASE"
""")
    monkeypatch.setenv("HSMSVC_HEARTBEAT_PASSPHRASE", "heartbeat-test")
    cfg = config.load(str(tmp_path / "hsmsvc.toml"))
    loop = asyncio.new_event_loop()
    started: list[Running] = []
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        started.append(loop.run_until_complete(start(cfg)))
        ready.set()
        loop.run_forever()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    assert ready.wait(30)
    running = started[0]
    port = running.metrics_port
    assert port is not None
    try:
        _until(port, "/readyz", 200, 10)
        assert _get(port, "/healthz") == (200, "ok\n")
        loop.call_soon_threadsafe(time.sleep, 4.0)  # the fault: something blocks the loop
        took = _until(port, "/healthz", 503, 4.0)
        assert 1.5 < took < 3.5
        assert _get(port, "/readyz") == (503, "not live: event loop stalled\n")
        _until(port, "/healthz", 200, 5.0)
        _until(port, "/readyz", 200, 5.0)
    finally:
        asyncio.run_coroutine_threadsafe(running.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        t.join(10)
