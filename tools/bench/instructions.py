"""Instructions per request, hsmsvc against the bare echo, counted by callgrind.

Calls per second on these machines move by a quarter from one minute to the
next; instructions do not. Both servers run one process under
``valgrind --tool=callgrind`` with instrumentation off; each is warmed up with
h2load, instrumentation is turned on for a fixed number of requests with the
same prepared body as ``hsmsvc bench``, and the count is dumped. What it leaves
out is the kernel's share (loopback TCP, wake-ups), which ``perf`` sees and
callgrind does not.

``python -m tools.bench.instructions --ops TranslatePin --forms unary --calls 2000``
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from tools.bench import echo, h2load
from tools.bench import pressure as p
from tools.bench.workload import Body, Form, Op, PinKeys, body

__all__ = ["Count", "available", "count", "main"]


@dataclass(frozen=True)
class Count:
    operation: str
    form: str
    items_per_request: int
    requests: int
    hsmsvc: float
    """Instructions per request in the hsmsvc process, all threads."""
    echo: float
    """Instructions per request in the echo process, all threads."""
    hsmsvc_serving: float = 0.0
    """Of ``hsmsvc``, the main thread's: the event loop every call passes through. The rest is grpc's
    own threads (about 40k per call, as in echo) and hsmsvc's work done per second, not per call
    (health probes, use-count reservations, reruns after the key cache's refresh), which callgrind,
    serving some 140 calls a second, spreads over 50 times fewer calls than a native server does."""
    echo_serving: float = 0.0
    floor: float = 0.0
    """With ``--floor``, for unary TranslatePin and GenerateMac: instructions per request of
    ``tools.bench.floor``, the operation alone on protobuf messages and clear keys (0: not counted)."""
    floor_serving: float = 0.0
    floor_ids: float = 0.0
    """The floor with hsmsvc's request ids (read from the metadata, sent back in the trailers)."""
    floor_ids_serving: float = 0.0

    @property
    def ratio(self) -> float:
        """Echo's instructions over hsmsvc's: what the rate ratio would be were both CPU-bound alike."""
        return self.echo / self.hsmsvc


def available() -> bool:
    return all(shutil.which(t) for t in ("valgrind", "callgrind_control", "h2load"))


def _h2load(port: int, path: str, data: Path, n: int) -> int:
    out = subprocess.run(["h2load", *h2load.GRPC_HEADERS, "-d", str(data), "-c", "4", "-m", "4", "-n", str(n),
                          f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True, timeout=3600).stdout
    m = re.search(r"(\d+) succeeded", out)
    if m is None:
        raise RuntimeError(f"unexpected h2load output: {out[-400:]}")
    return int(m.group(1))


@dataclass(frozen=True)
class _Counted:
    total: float
    """All threads' instructions per request."""
    serving: float
    """The main thread's (the event loop's) per request."""


def _instructions(cmd: list[str], ready: Path, work: Path, name: str, path: str, data: Path, n: int,
                  env: dict[str, str], check: Body | None = None) -> _Counted:
    """Instructions per request of one server process under callgrind, over ``n`` requests, per thread.

    h2load counts a gRPC error as an answer (HTTP 200), so with ``check`` one real gRPC call
    must first be answered as ``hsmsvc bench`` requires, or nothing is counted.
    """
    out = work / f"callgrind.{name}"
    srv = p._Server(["valgrind", "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes",
                     f"--callgrind-out-file={out}", "-q", *cmd], ready, work / f"{name}.log", env)
    try:
        if check is not None:
            why = check.check(p._call(srv.port, path, check.data, check.form is Form.STREAM))
            if why is not None:
                raise RuntimeError(f"{check.op.value} {check.form.value}: the server did not answer OK: {why}")
        _h2load(srv.port, path, data, max(100, n // 5))
        pid = str(srv.proc.pid)
        subprocess.run(["callgrind_control", "--instr=on", pid], check=True, capture_output=True, timeout=120)
        ok = _h2load(srv.port, path, data, n)
        subprocess.run(["callgrind_control", "--dump", pid], check=True, capture_output=True, timeout=120)
    finally:
        srv.stop()
    if ok != n:
        raise RuntimeError(f"{name}: {ok} of {n} requests answered; see {work / (name + '.log')}")
    # The first dump holds what ran from instrumentation on to the dump; the file written at exit
    # holds the shutdown, which is not counted.
    # One file per thread (callgrind.NAME.1-01, -02, ...); thread 1 is the main thread.
    per_thread = {}
    for dump in work.glob(f"callgrind.{name}.1-*"):
        per_thread[int(dump.name.rsplit("-", 1)[1])] = sum(
            int(line.split()[1]) for line in dump.read_text().splitlines() if line.startswith("totals:"))
    total, serving = sum(per_thread.values()), per_thread.get(1, 0)
    return _Counted(total / n, serving / n)


_FLOORED = (Op.TRANSLATE_PIN, Op.GENERATE_MAC)


def count(b: Body, calls: int, work: Path, env: dict[str, str], config: Path, floor_keys: Path | None = None) -> Count:
    data = work / "body"
    data.write_bytes(b.data)
    for f in work.glob("callgrind.*"):
        f.unlink()  # a second operation's counts start from nothing
    hsm = _instructions([sys.executable, "-m", "hsmsvc", "serve", "--config", str(config),
                         "--ready-file", str(work / "hsmsvc.json")], work / "hsmsvc.json", work, "hsmsvc",
                        b.path, data, calls, env, check=b)
    ech = _instructions([sys.executable, "-m", "tools.bench.echo", "--ready-file", str(work / "echo.json")],
                        work / "echo.json", work, "echo", echo.STREAM if b.form is Form.STREAM else echo.UNARY,
                        data, calls, env)
    flo = ids = _Counted(0.0, 0.0)
    if floor_keys is not None and b.op in _FLOORED and b.form is Form.UNARY:
        cmd = [sys.executable, "-m", "tools.bench.floor", "--keys", str(floor_keys), "--ready-file",
               str(work / "floor.json")]
        flo = _instructions(cmd, work / "floor.json", work, "floor", b.path, data, calls, env, check=b)
        (work / "floor.json").unlink()
        ids = _instructions([*cmd, "--request-ids"], work / "floor.json", work, "floor-ids", b.path, data, calls,
                            env, check=b)
        (work / "floor.json").unlink()
    for f in (work / "hsmsvc.json", work / "echo.json"):
        f.unlink()
    return Count(b.op.value, b.form.value, b.items, calls, round(hsm.total), round(ech.total),
                 round(hsm.serving), round(ech.serving), round(flo.total), round(flo.serving), round(ids.total),
                 round(ids.serving))


def main(argv: list[str] | None = None) -> int:
    a = argparse.ArgumentParser(prog="tools.bench.instructions", description=__doc__.split("\n\n")[0])
    a.add_argument("--ops", type=p._names(Op), default=[Op.TRANSLATE_PIN],
                   help="TranslatePin,VerifyPin,GenerateMac,VerifyMac,Encrypt (default TranslatePin)")
    a.add_argument("--forms", type=p._names(Form), default=[Form.UNARY], help="unary,stream,batch (default unary)")
    a.add_argument("--calls", type=int, default=2000, help="requests counted per server (default 2000)")
    a.add_argument("--stream-messages", type=int, default=200, help="messages per bidi stream (default 200)")
    a.add_argument("--batch-size", type=p._ints, default=[100], help="items per batch call (default 100)")
    a.add_argument("--pin-keys", type=PinKeys, choices=list(PinKeys), default=PinKeys.TDES, metavar="{tdes,aes}")
    a.add_argument("--log-level", default="INFO", help="the server's log level (default INFO: one line per call)")
    a.add_argument("--out", help="directory for instructions.json")
    a.add_argument("--floor", action="store_true",
                   help="also count tools.bench.floor (unary TranslatePin and GenerateMac): the operation alone")
    args = a.parse_args(argv)
    if args.calls < 1:
        a.error("--calls must be at least 1")
    if not available():
        print("tools.bench.instructions: needs valgrind and h2load (apt-get install valgrind nghttp2-client)",
              file=sys.stderr)
        return 2
    env = dict(os.environ)
    env[p._PASSPHRASE_ENV] = os.environ[p._PASSPHRASE_ENV] = secrets.token_hex(16)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
    rows = []
    with tempfile.TemporaryDirectory(prefix="hsmsvc-instructions-") as tmp:
        work = Path(tmp)
        table, keys = p._lmk_and_keys(work, "soft", env, args.pin_keys)
        config = p._config(work, table, 1, args.log_level)
        floor_keys = None
        if args.floor:
            floor_keys = work / "floor-keys.json"
            floor_keys.write_text(json.dumps({"zpk_in": keys.zpk_in.hex(), "zpk_out": keys.zpk_out.hex(),
                                              "mak": keys.mak.hex()}))
        for op in args.ops:
            for form in args.forms:
                for size in args.batch_size if form is Form.BATCH else args.batch_size[:1]:
                    c = count(body(op, form, keys, args.stream_messages, size), args.calls, work, env, config,
                              floor_keys)
                    rows.append(c)
                    floor = (f", floor {c.floor:,.0f} ({c.floor_serving:,.0f}), with request ids {c.floor_ids:,.0f}"
                             f" ({c.floor_ids_serving:,.0f})" if c.floor else "")
                    print(f"  {c.operation:<13} {form.value:<6} x{c.items_per_request:<5} hsmsvc {c.hsmsvc:>12,.0f}"
                          f"  echo {c.echo:>12,.0f} instructions per request  ratio {c.ratio:.2f}"
                          f"  (event-loop thread: hsmsvc {c.hsmsvc_serving:,.0f}, echo {c.echo_serving:,.0f}){floor}",
                          flush=True)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "instructions.json").write_text(json.dumps([asdict(r) | {"ratio": round(r.ratio, 3)} for r in rows],
                                                          indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
