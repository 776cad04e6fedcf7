"""Two-party SM2 signing end to end: clients doing their half through the SDK, against echo.

``python -m tools.bench.cosign`` starts a throw-away hsmsvc (soft backend, ``--workers``,
``--store``) and a bare echo server, as ``hsmsvc bench`` does, then in rounds:

* h2load sends echo one prepared unary body, and hsmsvc the same body to CoSign (the
  server's round alone, one (e, Q1) again and again);
* ``--processes`` client processes, ``--threads`` each, sign random messages with
  :class:`hsmsvc_client.cosign.CoSigningKey` (fresh k1, the server's round, the client's
  finish and its verification of every signature) for ``--duration`` seconds.

It prints signatures per second end to end and the echo rate of the same round, and
writes ``cosign.json`` to ``--out``. Every signature counted was verified by the client.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tools.bench import h2load
from tools.bench import pressure as p
from tools.bench.workload import Form, Op, body


def _client(port: int, d1: int, public_der: bytes, seconds: float, threads: int, out: Any) -> None:
    """One client process: ``threads`` signers until the time is up; puts (signatures, failures)."""
    from hsmsvc_client import Client
    from hsmsvc_client.cosign import ClientShare, CoSigningKey

    key = CoSigningKey(ClientShare(d1), "bench.csk", public_der[-65:], public_der)
    counts = [0, 0]
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def run() -> None:
        with Client.insecure(f"127.0.0.1:{port}", deadline=10.0) as c:
            while time.monotonic() < end:
                try:
                    key.sign(c, secrets.token_bytes(64))
                    ok = 0
                except Exception:  # noqa: BLE001 - counted and reported, the run goes on
                    ok = 1
                with lock:
                    counts[ok] += 1

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    out.put((counts[0], counts[1]))


def _end_to_end(port: int, d1: int, public_der: bytes, args: argparse.Namespace) -> tuple[float, int]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_client, args=(port, d1, public_der, args.duration, args.threads, q))
             for _ in range(args.processes)]
    for proc in procs:
        proc.start()
    results = [q.get(timeout=args.duration + 120) for _ in procs]
    for proc in procs:
        proc.join()
    # Each process signs for ``duration`` from its own start (after its imports): the rate is over that.
    return sum(r[0] for r in results) / args.duration, sum(r[1] for r in results)


def main(argv: list[str] | None = None) -> int:
    a = argparse.ArgumentParser(prog="tools.bench.cosign", description=__doc__.split("\n\n")[0])
    a.add_argument("--workers", type=int, default=2, help="server processes, hsmsvc and echo alike (default 2)")
    a.add_argument("--processes", type=int, default=2, help="client processes (default 2)")
    a.add_argument("--threads", type=int, default=16, help="signing threads per client process (default 16)")
    a.add_argument("--concurrency", type=int, default=64, help="h2load calls in flight (default 64)")
    a.add_argument("--duration", type=float, default=5.0, help="seconds per measurement (default 5)")
    a.add_argument("--warm-up", type=float, default=1.0, help="h2load warm-up seconds (default 1)")
    a.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    a.add_argument("--store", default="sqlite", type=p._store_spec, help="sqlite or a PostgreSQL URL (as hsmsvc bench)")
    a.add_argument("--log-level", default="WARNING", help="the server's log level (default WARNING)")
    a.add_argument("--out", default="bench-cosign", help="directory for cosign.json")
    args = a.parse_args(argv)
    if not h2load.available():
        print("tools.bench.cosign: h2load not found (apt-get install nghttp2-client)", file=sys.stderr)
        return 2
    env = dict(os.environ)
    env[p._PASSPHRASE_ENV] = os.environ[p._PASSPHRASE_ENV] = secrets.token_hex(16)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="hsmsvc-cosign-") as tmp, p._store(args.store, Path(tmp)) as url:
        work = Path(tmp)
        table, keys = p._lmk_and_keys(work, "soft", env, store_url=url)
        config = p._config(work, table, args.workers, args.log_level, store_url=url)
        hsm = p._Server([sys.executable, "-m", "hsmsvc", "serve", "--config", str(config), "--ready-file",
                         str(work / "ready.json")], work / "ready.json", out / "server.log", env)
        try:
            ech = p._Server([sys.executable, "-m", "tools.bench.echo", "--workers", str(args.workers),
                             "--ready-file", str(work / "echo.json")], work / "echo.json", out / "echo.log", env)
            try:
                b = body(Op.COSIGN, Form.UNARY, keys)
                one = argparse.Namespace(rounds=1, duration=args.duration, warm_up=args.warm_up)
                for i in range(args.rounds):
                    server_round = p._one(b, args.concurrency, hsm, ech, one)
                    rate, failed = _end_to_end(hsm.port, keys.cosign_d1, keys.cosign_public, args)
                    echo_rate = server_round["echo"]["rate"]
                    rows.append({"round": i + 1, "end_to_end_per_second": round(rate, 1), "failed": failed,
                                 "server_round_per_second": server_round["rate"], "echo_per_second": echo_rate,
                                 "ratio_to_echo": round(rate / echo_rate, 3) if echo_rate else None})
                    print(f"  round {i + 1}: two-party signatures end to end {rate:,.0f}/s (failed {failed}); "
                          f"server round alone {server_round['rate']:,.0f}/s; echo {echo_rate:,.0f}/s; "
                          f"ratio {rate / echo_rate if echo_rate else 0:.2f}", flush=True)
            finally:
                ech.stop()
        finally:
            hsm.stop()
    doc = {"tool": "tools.bench.cosign", "settings": {k: v for k, v in vars(args).items() if k != "store"}
           | {"store": p._store_name(args.store)}, "rounds": rows}
    (out / "cosign.json").write_text(json.dumps(doc, indent=2))
    return 1 if any(r["failed"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
