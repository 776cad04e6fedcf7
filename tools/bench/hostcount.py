"""Instructions per host command CA, against gRPC unary TranslatePin, counted by callgrind.

As ``tools.bench.instructions`` counts the gRPC door: one server process under
``valgrind --tool=callgrind`` with instrumentation off, warmed up, then instrumentation on for a
fixed number of requests and the count dumped. The gRPC side is ``tools.bench.instructions``'
own count of the same translation (h2load); the host side sends the checked CA frame from a
Python socket, 64 pipelined at a time (the client's cost is its own process's, not counted).
The kernel's share (loopback TCP) is left out on both sides.

``python -m tools.bench.hostcount --calls 2000``
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from tools.bench import hostcmd, instructions
from tools.bench import pressure as p

_BATCH = 64


def _exchange(port: int, frame: bytes, expect: bytes, n: int) -> int:
    """Send ``n`` frames, ``_BATCH`` in flight; the number of replies equal to ``expect``."""
    ok = 0
    with socket.create_connection(("127.0.0.1", port), timeout=300) as s:
        for lo in range(0, n, _BATCH):
            k = min(_BATCH, n - lo)
            s.sendall(frame * k)
            buf = b""
            while len(buf) < k * len(expect):
                chunk = s.recv(1 << 20)
                if not chunk:
                    raise RuntimeError("the server closed the connection")
                buf += chunk
            ok += sum(buf[i:i + len(expect)] == expect for i in range(0, len(buf), len(expect)))
    return ok


def _host_count(cmd: list[str], ready: Path, work: Path, t: hostcmd.Translation, n: int,
                env: dict[str, str]) -> tuple[float, float]:
    out = work / "callgrind.host"
    srv = p._Server(["valgrind", "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes",
                     f"--callgrind-out-file={out}", "-q", *cmd], ready, work / "host.log", env)
    try:
        port = int(srv.info["host_port"])
        _exchange(port, t.frame, t.expect, max(100, n // 5))
        pid = str(srv.proc.pid)
        subprocess.run(["callgrind_control", "--instr=on", pid], check=True, capture_output=True, timeout=120)
        ok = _exchange(port, t.frame, t.expect, n)
        subprocess.run(["callgrind_control", "--dump", pid], check=True, capture_output=True, timeout=120)
    finally:
        srv.stop()
    if ok != n:
        raise RuntimeError(f"host: {ok} of {n} replies as checked; see {work / 'host.log'}")
    per_thread = {int(d.name.rsplit("-", 1)[1]): sum(int(line.split()[1]) for line in d.read_text().splitlines()
                                                     if line.startswith("totals:"))
                  for d in work.glob("callgrind.host.1-*")}
    return sum(per_thread.values()) / n, per_thread.get(1, 0) / n


def main(argv: list[str] | None = None) -> int:
    a = argparse.ArgumentParser(prog="python -m tools.bench.hostcount", description=__doc__.split("\n\n")[0])
    a.add_argument("--calls", type=int, default=2000, help="requests counted on each door (default 2000)")
    a.add_argument("--out", default="bench-hostcmd", help="directory for hostcount.json")
    args = a.parse_args(argv)
    if not instructions.available():
        print("tools.bench.hostcount: valgrind and h2load are needed", file=sys.stderr)
        return 2
    env = dict(os.environ)
    env[p._PASSPHRASE_ENV] = os.environ[p._PASSPHRASE_ENV] = secrets.token_hex(16)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory(prefix="hsmsvc-hostcount-") as tmp, p._store("sqlite", Path(tmp)) as url:
        work = Path(tmp)
        table, keys = p._lmk_and_keys(work, "soft", env, store_url=url)
        t = hostcmd._translation(work, url, keys, "CA")
        config = p._config(work, table, 1, "INFO", store_url=url)
        with open(config, "a") as f:
            f.write(f'\n[hostcommands]\nlisten = "127.0.0.1:0"\nheader_length = {len(hostcmd._HEADER)}\n')
        serve = [sys.executable, "-m", "hsmsvc", "serve", "--config", str(config)]
        plain = p._Server([*serve, "--ready-file", str(work / "check.json")], work / "check.json", work / "c.log", env)
        try:
            t = hostcmd._verify(t, plain.port, int(plain.info["host_port"]))
        finally:
            plain.stop()
        host_total, host_loop = _host_count([*serve, "--ready-file", str(work / "h.json")], work / "h.json", work,
                                            t, args.calls, env)
        data = work / "body"
        data.write_bytes(t.grpc.data)
        g = instructions._instructions([*serve, "--ready-file", str(work / "g.json")], work / "g.json", work,
                                       "grpc", t.grpc.path, data, args.calls, env, check=t.grpc)
    doc = {"calls": args.calls, "host_ca": {"total": round(host_total), "event_loop": round(host_loop)},
           "grpc_translate_pin": {"total": round(g.total), "event_loop": round(g.serving)},
           "host_to_grpc": round(host_total / g.total, 3)}
    print(json.dumps(doc))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "hostcount.json").write_text(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
