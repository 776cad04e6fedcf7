"""Host command CA against gRPC unary TranslatePin on one server: the host-command door's
throughput acceptance ("CA at 64 connections in flight at least 0.8 of the same operation over
gRPC unary in the same run").

``python -m tools.bench.hostcmd`` starts one throw-away hsmsvc (soft backend on a sealed LMK,
``--workers``, ``--store``; plaintext under ``insecure_dev`` with ``[hostcommands]`` on, as
``hsmsvc bench --no-mtls`` serves) and a bare gRPC echo server, then in rounds, each of the three
going first in turn:

* echo: h2load sends the TranslatePin body to echo's unary method (``hsmsvc bench``'s baseline);
* gRPC: h2load, unary ``PinService/TranslatePin`` at ``--concurrency`` in flight (16 connections
  of 4 streams at 64, as ``hsmsvc bench``);
* host: ``tools/bench/hostload.c`` (C, epoll; built here with gcc), CA on ``--connections``
  connections of ``--pipeline`` requests each, every reply compared byte for byte.

Both doors translate the same PIN block (PIN 4321, ISO 0 to ISO 0) from the same TPK to the same
ZPK; the host command names the keys as an application would, ``S`` and their cryptograms. Before
the load, one CA over a Python socket must answer 00 with the block gRPC gives for the same input.
Prints a table per round and writes ``hostcmd.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import platform
import resource
import secrets
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc

from tools.bench import echo, h2load, report
from tools.bench import pressure as p
from tools.bench.probe import Probe, Usage, spread_evenly
from tools.bench.workload import PAN, PIN, Body, Form, Keys, Op, body, frame, messages

_SOURCE = Path(__file__).with_name("hostload.c")
_HEADER = b"0001"
_TPK = "bench.tpk"


@dataclasses.dataclass(frozen=True)
class Translation:
    """One translation, as the gRPC body and as the host-command frame; ``expect`` is the reply frame."""

    command: str
    grpc: Body
    frame: bytes
    destination: bytes
    """The block both must give: ISO 0 is deterministic, so the PIN's block under the destination ZPK."""
    expect: bytes = b""


@dataclasses.dataclass(frozen=True)
class HostResult:
    """hostload's JSON line."""

    requests: int
    mismatches: int
    closed: int
    seconds: float
    per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    starts: int = 1


def hostload() -> Path:
    """``hostload.c`` built with gcc -O2 into a cache directory named by the source's digest."""
    digest = hashlib.sha256(_SOURCE.read_bytes()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hsmsvc-bench"
    exe = cache / f"hostload-{digest}"
    if not exe.exists():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = cache / f".hostload-{os.getpid()}"
        subprocess.run(["gcc", "-O2", "-Wall", "-o", str(tmp), str(_SOURCE)], check=True)
        os.replace(tmp, exe)
    return exe


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _translation(work: Path, store_url: str, keys: Keys, command: str) -> Translation:
    """Form ``bench.tpk`` (CA's source; CC's is ``bench.zpk-in``) and build both forms of the request."""
    from hsmsvc.crypto import components
    from hsmsvc.crypto._cipher import ecb_encrypt
    from hsmsvc.crypto.pinblock import encode_iso0
    from hsmsvc.hsm.claims import to_text
    from hsmsvc.hsm.config import SecretSource, SoftConfig, build
    from hsmsvc.keys.hierarchy import KeyManager
    from hsmsvc.keys.model import KeyRef
    from hsmsvc.keys.store import KeyStore
    from hsmsvc.types import Algorithm, KeyType, KeyUsage, ModeOfUse
    from hsmsvc_client.v1 import pin_service_pb2 as pm
    from hsmsvc_client.v1 import types_pb2 as pb
    from tools.bench.workload import _spec, _tdes_key, pin_block

    backend = build(SoftConfig(str(work / "lmk.sealed"), SecretSource(env=p._PASSPHRASE_ENV)))
    try:
        store = KeyStore(store_url, backend)
        km = KeyManager(store, backend, "bench")
        tpk = _tdes_key()
        km.form(_spec(_TPK, KeyType.TPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION, ModeOfUse.ENCRYPT_DECRYPT),
                components.split(Algorithm.TDES_2KEY, tpk, [secrets.token_bytes(16)]))
        source = _TPK if command == "CA" else "bench.zpk-in"
        token = {k: b"S" + to_text(km.lookup(KeyRef(k)).cryptogram.blob).encode()
                 for k in (source, "bench.zpk-out")}
        store.close()
    finally:
        backend.close()
    g = body(Op.TRANSLATE_PIN, Form.UNARY, keys)  # hsmsvc bench's request: zpk-in to zpk-out, ISO 0
    block = pin_block(keys)
    if command == "CA":
        block = ecb_encrypt(Algorithm.TDES_2KEY, tpk, encode_iso0(PIN, PAN))
        req = pm.TranslatePinRequest.FromString(messages(g.data)[0])
        req.source_key.CopyFrom(pb.KeyRef(key_id=_TPK))
        req.pin_block = block
        g = dataclasses.replace(g, data=frame(req.SerializeToString()))
    # Maximum PIN length 12, ISO 0 (01) to ISO 0 (01), the account: the PAN's 12 digits before its check digit.
    cmd = (command.encode() + token[source] + token["bench.zpk-out"] + b"12" + block.hex().upper().encode()
           + b"0101" + PAN[-13:-1].encode())
    return Translation(command, g, struct.pack(">H", len(_HEADER) + len(cmd)) + _HEADER + cmd,
                       ecb_encrypt(Algorithm.TDES_2KEY, keys.zpk_out, encode_iso0(PIN, PAN)))


def _verify(t: Translation, grpc_port: int, host_port: int) -> Translation:
    """One gRPC call and one host command over a Python socket: both OK, with the block the clear keys give."""
    from hsmsvc_client.v1 import pin_service_pb2 as pm

    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as ch:
        answer = pm.TranslatePinResponse.FromString(ch.unary_unary(t.grpc.path)(messages(t.grpc.data)[0], timeout=30))
    if answer.pin_block != t.destination:
        raise RuntimeError(f"gRPC TranslatePin gave {answer.pin_block.hex()}, not {t.destination.hex()}")
    with socket.create_connection(("127.0.0.1", host_port), timeout=30) as s:
        s.sendall(t.frame)
        reply = b""
        while len(reply) < 2 or len(reply) < 2 + struct.unpack(">H", reply[:2])[0]:
            chunk = s.recv(65536)
            if not chunk:
                raise RuntimeError(f"{t.command}: the server closed the connection after {reply!r}")
            reply += chunk
    head = 2 + len(_HEADER)
    code, error, fields = reply[head:head + 2], reply[head + 2:head + 4], reply[head + 4:]
    expected = b"12" + answer.pin_block.hex().upper().encode() + b"01"
    if (reply[2:head], code, error, fields) != (_HEADER, bytes([t.command.encode()[0], t.command.encode()[1] + 1]),
                                                b"00", expected):
        raise RuntimeError(f"{t.command} answered {reply[2:]!r}; gRPC TranslatePin gave {answer.pin_block.hex()} "
                           f"(expected fields {expected!r})")
    return dataclasses.replace(t, expect=reply)


def _host(hsm: p._Server, exe: Path, t: Translation, args: argparse.Namespace,
          tries: int = 30) -> tuple[HostResult, Usage]:
    """hostload against the host port, restarted (as h2load is) until its connections are spread evenly."""
    port = int(hsm.info["host_port"])
    cmd = [str(exe), "--port", str(port), "--connections", str(args.connections), "--pipeline", str(args.pipeline),
           "--header-length", str(len(_HEADER)), "--request", t.frame.hex(), "--expect", t.expect.hex(),
           "--warm-up", str(args.warm_up), "--duration", str(args.duration)]
    probe = Probe(hsm.pids, port)
    probe.start()
    starts = 0
    while True:
        starts += 1
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if len(hsm.workers) > 1 and starts < tries:
            time.sleep(min(0.3, args.warm_up / 2))
            if not spread_evenly(hsm.workers, port, args.connections):
                proc.kill()
                proc.communicate()
                continue
        out, err = proc.communicate(timeout=args.duration + args.warm_up + 60)
        break
    usage = probe.stop()
    if proc.returncode not in (0, 1) or not out.strip():
        raise RuntimeError(f"hostload failed ({proc.returncode}): {err.strip()}")
    doc = json.loads(out.strip().splitlines()[-1])
    return HostResult(**{f.name: doc[f.name] for f in dataclasses.fields(HostResult) if f.name in doc},
                      starts=starts), usage


def _children_cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    return u.ru_utime + u.ru_stime


def _side(rate: float, res: Any, usage: Usage, errors: int, echo_rate: float) -> dict[str, Any]:
    return {"rate": round(rate, 1), "p50_ms": res.p50_ms, "p95_ms": res.p95_ms, "p99_ms": res.p99_ms,
            "max_ms": res.max_ms, "requests": res.requests, "errors": errors, "load_starts": res.starts,
            "to_echo": round(rate / echo_rate, 3) if echo_rate else None, "server": dataclasses.asdict(usage),
            "server_cpu_us_per_call": round(usage.cpu_cores / rate * 1e6, 1) if rate else None}


def _round(i: int, t: Translation, hsm: p._Server, ech: p._Server, exe: Path,
           args: argparse.Namespace) -> dict[str, Any]:
    load = h2load.Load.of(args.concurrency)
    before = hsm.calls()
    done: dict[str, Any] = {}
    order = ["echo", "grpc", "host"][i % 3:] + ["echo", "grpc", "host"][:i % 3]
    client: dict[str, float] = {}
    for side in order:
        cpu, wall = _children_cpu(), time.monotonic()
        if side == "echo":
            done[side] = p._measure(ech, ech.port, echo.UNARY, t.grpc, load, args)
        elif side == "grpc":
            done[side] = p._measure(hsm, hsm.port, t.grpc.path, t.grpc, load, args)
        else:
            done[side] = _host(hsm, exe, t, args)
        # The load generator's own CPU (h2load or hostload, waited for), over its whole run.
        client[side] = round((_children_cpu() - cpu) / (time.monotonic() - wall), 2)
    after = hsm.calls()
    delta: Counter[tuple[str, str]] = Counter({k: after[k] - before[k] for k in after})
    # h2load ends its streams by cancelling them (issue 31): no failure of the server's.
    grpc_errors = sum(v for (m, c), v in delta.items() if m == "PinService.TranslatePin"
                      and c not in ("OK", "CANCELLED")) + done["grpc"][0].failed
    host = done["host"][0]
    host_errors = sum(v for (m, c), v in delta.items() if m == f"HostCommand.{t.command}" and c != "00") \
        + host.mismatches + host.closed
    erate, grate, hrate = done["echo"][0].per_second, done["grpc"][0].per_second, host.per_second
    row: dict[str, Any] = {"round": i + 1, "order": order,
           "echo": _side(erate, done["echo"][0], done["echo"][1], done["echo"][0].failed, 0.0),
           "grpc": _side(grate, done["grpc"][0], done["grpc"][1], grpc_errors, erate) | {
               "concurrency": load.in_flight, "connections": load.connections},
           "host": _side(hrate, host, done["host"][1], host_errors, erate) | {
               "connections": args.connections, "pipeline": args.pipeline, "mismatches": host.mismatches,
               "closed": host.closed},
           "host_to_grpc": round(hrate / grate, 3) if grate else None}
    for side in client:
        row[side]["load_generator_cpu_cores"] = client[side]
    print(f"  round {i + 1} (order: {', '.join(order)})", flush=True)
    for name, side, what in (("echo", "echo", f"unary c={load.in_flight}"),
                             ("gRPC", "grpc", f"TranslatePin c={load.in_flight}"),
                             ("host", "host", f"{t.command} {args.connections}x{args.pipeline}")):
        r = row[side]
        share = f"{r['to_echo']:.2f} of echo" if r["to_echo"] is not None else ""
        print(f"    {name:<5} {what:<18} {r['rate']:>9,.0f}/s  p50 {r['p50_ms']:6.2f}  p99 {r['p99_ms']:7.2f} ms  "
              f"server cpu {r['server']['cpu_cores']:.2f} load cpu {r['load_generator_cpu_cores']:.2f}  "
              f"errors {r['errors']:<3} {share}", flush=True)
    print(f"    {t.command}/gRPC {row['host_to_grpc']:.3f}", flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    a = argparse.ArgumentParser(prog="python -m tools.bench.hostcmd", description=__doc__.split("\n\n")[0])
    a.add_argument("--command", choices=("CA", "CC"), default="CA",
                   help="CA: TPK to ZPK (default); CC: ZPK to ZPK, hsmsvc bench's own TranslatePin body")
    a.add_argument("--concurrency", type=int, default=64, help="gRPC unary calls in flight (default 64)")
    a.add_argument("--connections", type=int, default=64, help="host-command connections (default 64)")
    a.add_argument("--pipeline", type=int, default=1, help="host commands in flight per connection (default 1)")
    a.add_argument("--duration", "--seconds", type=float, default=5.0, help="seconds measured per run (default 5)")
    a.add_argument("--warm-up", type=float, default=1.0, help="seconds of load before measuring (default 1)")
    a.add_argument("--rounds", type=int, default=3, help="rounds, each of echo, gRPC and host going first in turn")
    a.add_argument("--workers", type=int, default=1, help="server processes, hsmsvc and echo alike (default 1)")
    a.add_argument("--store", default="sqlite", type=p._store_spec,
                   help="sqlite or a postgresql:// URL (as hsmsvc bench)")
    a.add_argument("--log-level", default="INFO", help="the server's log level (default INFO, as hsmsvc bench)")
    a.add_argument("--out", default="bench-hostcmd", help="directory for hostcmd.json and the servers' logs")
    args = a.parse_args(argv)
    if not h2load.available():
        print("tools.bench.hostcmd: h2load not found (apt-get install nghttp2-client)", file=sys.stderr)
        return 2
    if args.rounds < 1 or args.duration <= 0 or not 1 <= args.pipeline <= 1024 or args.connections < 1:
        print("tools.bench.hostcmd: --rounds >= 1, --duration > 0, --pipeline 1-1024, --connections >= 1",
              file=sys.stderr)
        return 2
    exe = hostload()
    env = dict(os.environ)
    env[p._PASSPHRASE_ENV] = os.environ[p._PASSPHRASE_ENV] = secrets.token_hex(16)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hsmsvc-hostcmd-") as tmp, p._store(args.store, Path(tmp)) as url:
        work = Path(tmp)
        print(f"tools.bench.hostcmd: soft backend, {args.workers} worker(s), store {p._store_name(args.store)}; "
              "preparing keys", flush=True)
        table, keys = p._lmk_and_keys(work, "soft", env, store_url=url)
        t = _translation(work, url, keys, args.command)
        config = p._config(work, table, args.workers, args.log_level, store_url=url)
        listen = f"127.0.0.1:{_free_port() if args.workers > 1 else 0}"
        with open(config, "a") as f:  # one connection's commands in flight: at least the pipeline
            f.write(f'\n[hostcommands]\nlisten = "{listen}"\nheader_length = {len(_HEADER)}\n'
                    f"in_flight = {max(64, args.pipeline)}\nmax_connections = {max(1024, args.connections)}\n"
                    f"max_connections_per_principal = {max(1024, args.connections)}\n")
        hsm = p._Server([sys.executable, "-m", "hsmsvc", "serve", "--config", str(config),
                         "--ready-file", str(work / "ready.json")], work / "ready.json", out / "server.log", env)
        try:
            ech = p._Server([sys.executable, "-m", "tools.bench.echo", "--workers", str(args.workers),
                             "--ready-file", str(work / "echo.json")], work / "echo.json", out / "echo.log", env)
            try:
                t = _verify(t, hsm.port, int(hsm.info["host_port"]))
                print(f"  checked: {t.command} over a socket and gRPC TranslatePin give the same block "
                      f"({t.expect[12:28].decode()})", flush=True)
                for i in range(args.rounds):
                    rows.append(_round(i, t, hsm, ech, exe, args))
            finally:
                ech.stop()
        finally:
            hsm.stop()
    ratios = sorted(r["host_to_grpc"] or 0.0 for r in rows)
    middle = sorted(rows, key=lambda r: r["host_to_grpc"] or 0.0)[(len(rows) - 1) // 2]
    summary = {"host_to_grpc_median": round(statistics.median(ratios), 3), "host_to_grpc_min": ratios[0],
               "host_to_grpc_max": ratios[-1], "median_round": middle["round"],
               "host_rate": middle["host"]["rate"], "grpc_rate": middle["grpc"]["rate"],
               "echo_rate": middle["echo"]["rate"], "target": 0.8,
               "met": statistics.median(ratios) >= 0.8}
    print(f"tools.bench.hostcmd: {args.command} {summary['host_rate']:,.0f}/s against gRPC TranslatePin "
          f"{summary['grpc_rate']:,.0f}/s (round {middle['round']}): {args.command}/gRPC median "
          f"{summary['host_to_grpc_median']:.3f} ({ratios[0]:.3f}-{ratios[-1]:.3f}); target 0.8 "
          f"{'met' if summary['met'] else 'NOT met'}", flush=True)
    doc = {
        "tool": "tools.bench.hostcmd",
        "settings": {
            "command": args.command, "translation": f"{'TPK' if args.command == 'CA' else 'ZPK'} to ZPK, two-key TDES, "
                                                   "ISO 0 to ISO 0, the same PIN block and PAN on both doors",
            "key_form": "S and the stored cryptogram", "workers": args.workers, "backend": "soft",
            "store": p._store_name(args.store), "transport": "plaintext on loopback (insecure_dev)",
            "server_log_level": args.log_level, "duration_seconds": args.duration, "warm_up_seconds": args.warm_up,
            "rounds": args.rounds, "grpc_load": f"h2load, {h2load.Load.of(args.concurrency)}",
            "host_load": f"tools/bench/hostload.c (gcc -O2, epoll), {args.connections} connections x "
                         f"{args.pipeline} in flight, every reply compared with the checked one",
            "load_generator": p._h2load_version(),
        },
        "machine": {"cpus": os.cpu_count(), "cpu": p._cpu_model(), "python": platform.python_version(),
                    "grpcio": grpc.__version__, "platform": platform.platform(), "commit": report.commit()},
        "check": {"frame": t.frame.hex(), "reply": t.expect.hex()},
        "rounds": rows,
        "summary": summary,
    }
    (out / "hostcmd.json").write_text(json.dumps(doc, indent=2))
    print(f"tools.bench.hostcmd: wrote {out / 'hostcmd.json'}")
    return 1 if any(r["grpc"]["errors"] or r["host"]["errors"] or r["echo"]["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
