"""``hsmsvc bench``: the pre-go-live pressure test (bank test plan 000, clause 7.1.5).

It starts a real hsmsvc server (soft or SoftHSM backend, N worker processes)
on a throw-away LMK and key store, and a bare gRPC echo server with the same
worker count. For each operation, form and concurrency it drives first hsmsvc,
then echo, with h2load and the same prepared body, and reports hsmsvc's rate as
a ratio of echo's measured in the same run, with latency percentiles, errors and
the server's CPU, memory, connections and file handles. Writes ``report.json``,
``report.md`` and ``latency.png`` to ``--out``.

The cost of mTLS is measured apart (``--mtls-concurrency``): a second hsmsvc
and echo serve TLS with client certificates, h2load reaches them through one
haproxy holding the client certificate (:mod:`tools.bench.terminator`), and
each is set beside its plaintext figure from the same minute.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc

from tools.bench import echo, h2load, report, terminator
from tools.bench.pki import ThrowawayCA
from tools.bench.probe import Probe, Usage, spread_evenly
from tools.bench.workload import (
    PAYMENT_OPERATIONS, Body, Form, Keys, Op, PinKeys, body, make_keys, messages, storage_request,
)

__all__ = ["add_arguments", "run"]

_PASSPHRASE_ENV = "HSMSVC_BENCH_PASSPHRASE"
_PIN_ENV = "HSMSVC_BENCH_TOKEN_PIN"
_SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"
_CLIENT = "bench-client"
_ROTATION = {"TPK": (43200, 2500), "ZPK": (43200, 1_000_000), "MAK": (43200, 1_000_000), "DEK": (43200, 1_000_000)}


def _ints(text: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("comma-separated integers") from None
    if not out or any(x < 1 for x in out):
        raise argparse.ArgumentTypeError("positive integers")
    return out


def _names(kind: type[Op] | type[Form]) -> Any:
    def parse(text: str) -> list[Any]:
        by = {m.value.lower(): m for m in kind}
        try:
            return [by[x.strip().lower()] for x in text.split(",") if x.strip()]
        except KeyError as e:
            raise argparse.ArgumentTypeError(f"unknown {e.args[0]!r}; one of {', '.join(by)}") from None
    return parse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="bench-report", help="directory for report.json, report.md, latency.png")
    p.add_argument("--record", help="also add the ratios to the table of runs in this file (docs/performance.md)")
    p.add_argument("--ops", type=_names(Op), default=list(PAYMENT_OPERATIONS),
                   help="TranslatePin,VerifyPin,GenerateMac,VerifyMac,Encrypt (the default), Sign, CoSign "
                        "(unary only: an SM2 signature; the server's round of a two-party signature), "
                        "VerifyCvv, VerifyArqc (unary and batch: a CVV2, a Visa CVN 18 ARQC with an ARPC)")
    p.add_argument("--forms", type=_names(Form), default=list(Form), help="unary,stream,batch (default all)")
    p.add_argument("--concurrency", type=_ints, default=[1, 8, 64], help="unary calls in flight (default 1,8,64)")
    p.add_argument("--stream-concurrency", type=_ints, default=[4], help="bidi streams in flight (default 4)")
    p.add_argument("--batch-concurrency", type=_ints, default=[4], help="batch calls in flight (default 4)")
    p.add_argument("--stream-messages", type=int, default=200, help="messages per bidi stream (default 200)")
    p.add_argument("--batch-size", type=_ints, default=[100, 1000],
                   help="items per batch call, one run at each (default 100,1000)")
    p.add_argument("--duration", type=float, default=5.0, help="seconds measured per run (default 5)")
    p.add_argument("--warm-up", type=float, default=1.0, help="seconds of load before measuring (default 1)")
    p.add_argument("--rounds", type=int, default=3,
                   help="measured rounds per row, hsmsvc and echo taking turns; the row is the round with the "
                        "median ratio, and the report gives the ratios' range (default 3)")
    p.add_argument("--workers", type=int, default=1, help="server processes, for hsmsvc and echo alike (default 1)")
    p.add_argument("--pin-keys", type=PinKeys, choices=list(PinKeys), default=PinKeys.TDES, metavar="{tdes,aes}",
                   help="TranslatePin between two-key TDES ZPKs in format 0 (default) or AES-128 ZPKs in format 4")
    p.add_argument("--store", default="sqlite", type=_store_spec,
                   help="sqlite (default: a file for the run) or postgresql://USER@HOST:PORT/DB: a fresh database "
                        "made on that server for the run through DB, dropped after")
    p.add_argument("--backend", choices=("soft", "softhsm"), default="soft",
                   help="soft (default) or a SoftHSM2 token made for the run (TranslatePin only)")
    p.add_argument("--log-level", default="INFO", help="the server's log level (default INFO: one line per call)")
    p.add_argument("--mtls-concurrency", type=_ints, default=[1, 64],
                   help="unary TranslatePin calls in flight for the mTLS cost runs (default 1,64)")
    p.add_argument("--no-mtls", dest="mtls", action="store_false", help="skip the mTLS cost runs (no haproxy needed)")


class _Server:
    """A subprocess that writes a ready file; stopped with SIGTERM."""

    def __init__(self, cmd: list[str], ready: Path, log: Path, env: dict[str, str]) -> None:
        self.log = log
        with open(log, "wb") as f:
            self.proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env,
                                         cwd=str(Path(__file__).resolve().parents[2]))
        deadline = time.monotonic() + 90
        while not ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server did not start; see {log}:\n{log.read_text()[-2000:]}")
            time.sleep(0.05)
        self.info = json.loads(ready.read_text())
        self.port = int(self.info["port"])
        workers = self.info["workers"]
        # The supervisor as well as its workers (one process when there is one worker).
        self.pids = sorted({int(self.info["pid"]), *(int(w["pid"]) for w in workers)})
        self.workers = [int(w["pid"]) for w in workers] or [int(self.info["pid"])]
        self.metrics_ports = [int(w["metrics_port"]) for w in workers if w.get("metrics_port")]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def calls(self) -> Counter[tuple[str, str]]:
        """Calls so far by (method, code), summed over the workers' metrics endpoints."""
        out: Counter[tuple[str, str]] = Counter()
        for port in self.metrics_ports:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
            for line in text.splitlines():
                if line.startswith("hsmsvc_rpc_calls_total{"):
                    labels, value = line.rsplit(" ", 1)
                    d = dict(kv.split("=", 1) for kv in labels[len("hsmsvc_rpc_calls_total{"):-1].split(","))
                    out[(d["method"].strip('"'), d["code"].strip('"'))] += int(float(value))
        return out


def _lmk_and_keys(work: Path, backend_kind: str, env: dict[str, str],
                  pin_keys: PinKeys = PinKeys.TDES, store_url: str = "") -> tuple[str, Keys]:
    """A throw-away LMK and store with the bench's keys; returns the [backend] TOML table and the keys."""
    from hsmsvc.hsm.config import Pkcs11Config, SecretSource, SoftConfig, build
    from hsmsvc.keys.store import KeyStore

    store_url = store_url or _sqlite(work)
    if backend_kind == "soft":
        sealed = work / "lmk.sealed"
        subprocess.run([sys.executable, "-m", "hsmsvc", "lmk", "init", "--sealed", str(sealed),
                        "--passphrase-env", _PASSPHRASE_ENV, "--scrypt-log2-n", "14"],
                       env=env, check=True, capture_output=True)
        cfg: Any = SoftConfig(str(sealed), SecretSource(env=_PASSPHRASE_ENV))
        table = f'kind = "soft"\nsealed_lmk = "{sealed}"\npassphrase_env = "{_PASSPHRASE_ENV}"\n'
    else:
        if not Path(_SOFTHSM).exists() or shutil.which("softhsm2-util") is None:
            raise SystemExit("hsmsvc bench: --backend softhsm needs SoftHSM2 (apt-get install softhsm2)")
        from hsmsvc.hsm.pkcs11.backend import provision_lmk

        (work / "tokens").mkdir()
        conf = work / "softhsm2.conf"
        conf.write_text(f"directories.tokendir = {work}/tokens\nobjectstore.backend = file\nlog.level = ERROR\n")
        env["SOFTHSM2_CONF"] = os.environ["SOFTHSM2_CONF"] = str(conf)
        pin = env[_PIN_ENV] = os.environ[_PIN_ENV] = secrets.token_hex(4)
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "bench", "--pin", pin,
                        "--so-pin", secrets.token_hex(4)], check=True, capture_output=True)
        provision_lmk(_SOFTHSM, "bench", pin, [secrets.token_bytes(32), secrets.token_bytes(32)])
        cfg = Pkcs11Config(_SOFTHSM, "bench", SecretSource(env=_PIN_ENV))
        table = f'kind = "pkcs11"\nmodule = "{_SOFTHSM}"\ntoken_label = "bench"\npin_env = "{_PIN_ENV}"\n'
    backend = build(cfg)
    try:
        store = KeyStore(store_url, backend)
        store.migrate()
        keys = make_keys(store, backend, full=backend_kind == "soft", pin_keys=pin_keys)
        store.close()
    finally:
        backend.close()
    return table, keys


def _store_spec(text: str) -> str:
    if text == "sqlite" or text.startswith(("postgresql://", "postgresql+psycopg://")):
        return text
    raise argparse.ArgumentTypeError("sqlite, or a postgresql:// URL")


def _store_name(spec: str) -> str:
    """What the report says of the store: never a password."""
    if spec == "sqlite":
        return "SQLite (a file)"
    return f"PostgreSQL at {spec.split('://', 1)[1].rsplit('@', 1)[-1].split('/', 1)[0]}"


def _sqlite(work: Path) -> str:
    return f"sqlite:///{work / 'keys.db'}"


@contextmanager
def _store(spec: str, work: Path) -> Iterator[str]:
    """The run's store URL: SQLite in the run's directory, or a fresh database on the PostgreSQL
    server ``spec`` names (through its database there), dropped after the run."""
    if spec == "sqlite":
        yield _sqlite(work)
        return
    import psycopg

    name = f"hsmsvc_bench_{secrets.token_hex(6)}"
    admin = spec.replace("postgresql+psycopg://", "postgresql://")
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as c:
            c.execute(f"CREATE DATABASE {name}")
    except psycopg.Error as e:
        raise SystemExit(f"hsmsvc bench: --store: cannot create a database on {admin}: {e}") from None
    try:
        yield f"postgresql+psycopg://{admin.split('://', 1)[1].rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _config(work: Path, backend_table: str, workers: int, log_level: str,
            tls: tuple[str, str, str] | None = None, store_url: str = "") -> Path:
    rotation = "".join(f"\n[rotation.{t}]\nmax_age_seconds = {age}\nmax_uses = {uses}\n"
                       for t, (age, uses) in _ROTATION.items())
    if tls is None:
        path, mode = work / "hsmsvc.toml", "insecure_dev = true\n"
    else:
        path = work / "hsmsvc-mtls.toml"
        (work / "policy.toml").write_text(f'[[principals]]\nname = "{_CLIENT}"\nroles = ["operator"]\nkeys = ["*"]\n')
        mode = (f'policy = "{work / "policy.toml"}"\n\n[tls]\ncert = "{tls[0]}"\nkey = "{tls[1]}"\n'
                f'client_ca = "{tls[2]}"\n')
    path.write_text(
        f'listen = "127.0.0.1:0"\nmetrics_listen = "127.0.0.1:0"\nstore = "{store_url or _sqlite(work)}"\n'
        f'workers = {workers}\nlog_level = "{log_level}"\n{mode}\n[backend]\n{backend_table}'
        f"\n[attempts]\nper_pan = 3\nper_principal = 1000000\n{rotation}")
    return path


def _call(port: int, path: str, data: bytes, stream: bool) -> bytes:
    """One real gRPC call with the prepared body; the response's messages, framed again."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        if stream:
            answers = list(ch.stream_stream(path)(iter(messages(data)), timeout=30))
        else:
            answers = [ch.unary_unary(path)(messages(data)[0], timeout=30)]
    return b"".join(b"\0" + len(a).to_bytes(4, "big") + a for a in answers)


def _one(b: Body, conc: int, hsm: _Server, ech: _Server, args: argparse.Namespace) -> dict[str, Any]:
    why = b.check(_call(hsm.port, b.path, b.data, b.form is Form.STREAM))
    if why is not None:
        raise RuntimeError(f"{b.op.value} {b.form.value}: the server did not answer OK: {why}")
    load = h2load.Load.of(conc)
    method = b.path.rsplit("/", 2)[-2].rsplit(".", 1)[-1] + "." + b.path.rsplit("/", 1)[-1]
    echo_path = echo.STREAM if b.form is Form.STREAM else echo.UNARY
    before = hsm.calls()
    rounds = []
    for i in range(args.rounds):
        # The rate of these machines drifts within a minute: paired rounds, each server going
        # first in turn, give a ratio whose spread shows, where one pair would give one draw.
        if i % 2 == 0:
            res, usage = _measure(hsm, hsm.port, b.path, b, load, args)
            eres, eusage = _measure(ech, ech.port, echo_path, b, load, args)
        else:
            eres, eusage = _measure(ech, ech.port, echo_path, b, load, args)
            res, usage = _measure(hsm, hsm.port, b.path, b, load, args)
        ratio = res.per_second / eres.per_second if eres.per_second else 0.0
        rounds.append((ratio, res, usage, eres, eusage))
    after = hsm.calls()
    delta = {code: after[(m, code)] - before[(m, code)] for (m, code) in after if m == method}
    # h2load ends its streams by cancelling them when a run's time is up: the server logs and
    # counts those CANCELLED, as the client did (issue 31), which is no failure of the server's.
    errors = sum(v for c, v in delta.items() if c not in ("OK", "CANCELLED")) + sum(r[1].failed for r in rounds)
    # The middle round by ratio (of an even number, the lower middle one), whole: its rates,
    # latencies and resource figures belong together.
    ordered = sorted(rounds, key=lambda r: r[0])
    ratio, res, usage, eres, eusage = ordered[(len(ordered) - 1) // 2]
    low, high = ordered[0][0], ordered[-1][0]
    rate, erate = res.per_second * b.items, eres.per_second * b.items
    row = {
        "operation": b.op.value, "form": b.form.value, "method": method, "concurrency": load.in_flight,
        "connections": load.connections, "items_per_request": b.items, "body_bytes": len(b.data),
        "rate": round(rate, 1), "requests_per_second": round(res.per_second, 1),
        "p50_ms": res.p50_ms, "p95_ms": res.p95_ms, "p99_ms": res.p99_ms, "max_ms": res.max_ms,
        "requests": res.requests, "server_ok": delta.get("OK", 0), "errors": errors, "load_starts": res.starts,
        "server": dataclasses.asdict(usage),
        "echo": {"rate": round(erate, 1), "p50_ms": eres.p50_ms, "p95_ms": eres.p95_ms, "p99_ms": eres.p99_ms,
                 "errors": sum(r[3].failed for r in rounds), "server": dataclasses.asdict(eusage),
                 "load_starts": eres.starts},
        "ratio": round(ratio, 3) if erate else None,
        "ratio_min": round(low, 3), "ratio_max": round(high, 3),
        "rounds": [{"rate": round(r[1].per_second * b.items, 1), "echo_rate": round(r[3].per_second * b.items, 1),
                    "ratio": round(r[0], 3)} for r in rounds],
    }
    unit = {"unary": "calls/s", "stream": "msgs/s", "batch": "items/s"}[b.form.value]
    form = f"batch {b.items}" if b.form is Form.BATCH else b.form.value
    spread = f" ({low:.2f}-{high:.2f})" if len(rounds) > 1 else ""
    print(f"  {b.op.value:<13} {form:<10} c={load.in_flight:<3} {rate:>11,.0f} {unit:<8} "
          f"p50 {res.p50_ms:6.2f} p99 {res.p99_ms:7.2f} ms  errors {errors}  "
          f"echo {erate:>11,.0f}  ratio {ratio:.2f}{spread}  cpu {usage.cpu_cores:.2f}", flush=True)
    return row


def _measure(srv: _Server, port: int, path: str, b: Body, load: h2load.Load,
             args: argparse.Namespace) -> tuple[h2load.Result, Usage]:
    """h2load against ``port`` (the server's own, or a terminator's front for it), with ``srv`` probed."""
    probe = Probe(srv.pids, srv.port)
    probe.start()
    # The kernel's SO_REUSEPORT hash places each connection on a worker: with 4 connections over
    # 2 workers a run was split 3:1 or 4:0 more often than 2:2, and its rate was that luck's.
    even = (lambda: spread_evenly(srv.workers, srv.port, load.connections)) if len(srv.workers) > 1 else None
    res = h2load.run(f"http://127.0.0.1:{port}{path}", b.data, load, args.duration, args.warm_up, even)
    return res, probe.stop()


def _side(res: h2load.Result, usage: Usage) -> dict[str, Any]:
    return {"rate": round(res.per_second, 1), "p50_ms": res.p50_ms, "p99_ms": res.p99_ms, "failed": res.failed,
            "server": dataclasses.asdict(usage),
            "server_cpu_us_per_call": round(usage.cpu_cores / res.per_second * 1e6, 1) if res.per_second else None}


def _mtls(work: Path, table: str, keys: Keys, hsm: _Server, ech: _Server, args: argparse.Namespace,
          out: Path, env: dict[str, str], store_url: str) -> list[dict[str, Any]]:
    """Unary TranslatePin with and without mTLS, for hsmsvc and echo alike, one level at a time."""
    if not terminator.available():
        raise SystemExit("hsmsvc bench: the mTLS runs need haproxy (apt-get install haproxy), or pass --no-mtls")
    (work / "pki").mkdir()
    ca = ThrowawayCA(work / "pki")
    server_id, client_id = ca.issue("localhost", server=True), ca.issue(_CLIENT)
    tls = (server_id.cert, server_id.key, ca.ca_file)
    config = _config(work, table, args.workers, args.log_level, tls, store_url)
    b = body(Op.TRANSLATE_PIN, Form.UNARY, keys)
    rows: list[dict[str, Any]] = []
    hsm_tls = _Server([sys.executable, "-m", "hsmsvc", "serve", "--config", str(config), "--ready-file",
                       str(work / "ready-mtls.json")], work / "ready-mtls.json", out / "server-mtls.log", env)
    try:
        creds = grpc.ssl_channel_credentials(Path(ca.ca_file).read_bytes(), Path(client_id.key).read_bytes(),
                                             Path(client_id.cert).read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{hsm_tls.port}", creds,
                                 (("grpc.ssl_target_name_override", "localhost"),)) as ch:
            answer = ch.unary_unary(b.path)(messages(b.data)[0], timeout=30)
        why = b.check(b"\0" + len(answer).to_bytes(4, "big") + answer)
        if why is not None:
            raise RuntimeError(f"TranslatePin over mTLS: the server did not answer OK: {why}")
        ech_tls = _Server([sys.executable, "-m", "tools.bench.echo", "--workers", str(args.workers), "--tls",
                           ",".join(tls), "--ready-file", str(work / "echo-mtls.json")],
                          work / "echo-mtls.json", out / "echo-mtls.log", env)
        try:
            term = terminator.Terminator(work, [hsm_tls.port, ech_tls.port], client_id.cert, client_id.key,
                                         ca.ca_file)
            try:
                for conc in args.mtls_concurrency:
                    load = h2load.Load.of(conc)
                    before = hsm_tls.calls()
                    term_probe = Probe([term.pid], 0)
                    runs = {
                        "plaintext": _measure(hsm, hsm.port, b.path, b, load, args),
                        "echo_plaintext": _measure(ech, ech.port, echo.UNARY, b, load, args),
                    }
                    term_probe.start()
                    runs["mtls"] = _measure(hsm_tls, term.front[hsm_tls.port], b.path, b, load, args)
                    term_usage = term_probe.stop()
                    runs["echo_mtls"] = _measure(ech_tls, term.front[ech_tls.port], echo.UNARY, b, load, args)
                    after = hsm_tls.calls()
                    method = "PinService.TranslatePin"
                    errors = sum(after[(m, c)] - before[(m, c)] for (m, c) in after
                                 if m == method and c not in ("OK", "CANCELLED"))
                    row: dict[str, Any] = {"operation": "TranslatePin", "form": "unary", "concurrency": load.in_flight,
                                           **{k: _side(*v) for k, v in runs.items()},
                                           "mtls_errors": errors + runs["mtls"][0].failed,
                                           "terminator_cpu_cores": term_usage.cpu_cores}
                    p, m, ep, em = (row[k]["rate"] for k in ("plaintext", "mtls", "echo_plaintext", "echo_mtls"))
                    row["ratio_plaintext"] = round(p / ep, 3) if ep else None
                    row["ratio_mtls"] = round(m / em, 3) if em else None
                    row["mtls_rate_change"] = round(m / p - 1, 3) if p else None
                    cp, cm = row["plaintext"]["server_cpu_us_per_call"], row["mtls"]["server_cpu_us_per_call"]
                    row["mtls_server_cpu_us_per_call"] = round(cm - cp, 1) if cp and cm else None
                    rows.append(row)
                    print(f"  TranslatePin  mTLS   c={load.in_flight:<3} {m:>11,.0f} calls/s (plaintext {p:,.0f}, "
                          f"{row['mtls_rate_change']:+.0%})  p99 {row['mtls']['p99_ms']:.2f} ms  "
                          f"echo {em:>9,.0f}  ratio {row['ratio_mtls']:.2f}  "
                          f"server CPU/call {row['mtls_server_cpu_us_per_call']:+.1f} us", flush=True)
            finally:
                term.stop()
        finally:
            ech_tls.stop()
    finally:
        hsm_tls.stop()
    return rows


def run(args: argparse.Namespace) -> int:
    if not h2load.available():
        print("hsmsvc bench: h2load not found (Debian: apt-get install nghttp2-client)", file=sys.stderr)
        return 2
    if not 1 <= args.workers <= 64 or args.duration <= 0 or args.stream_messages < 1 or args.rounds < 1:
        print("hsmsvc bench: --workers 1-64, --duration > 0, --stream-messages >= 1, --rounds >= 1",
              file=sys.stderr)
        return 2
    ops = args.ops if args.backend == "soft" else [o for o in args.ops if o is Op.TRANSLATE_PIN]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env[_PASSPHRASE_ENV] = secrets.token_hex(16)
    os.environ[_PASSPHRASE_ENV] = env[_PASSPHRASE_ENV]
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    rows: list[dict[str, Any]] = []
    mtls_rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hsmsvc-bench-") as tmp, _store(args.store, Path(tmp)) as store_url:
        work = Path(tmp)
        print(f"hsmsvc bench: {args.backend} backend, {args.workers} worker(s), store {_store_name(args.store)}; "
              "preparing keys", flush=True)
        table, keys = _lmk_and_keys(work, args.backend, env, args.pin_keys, store_url)
        config = _config(work, table, args.workers, args.log_level, store_url=store_url)
        hsm = _Server([sys.executable, "-m", "hsmsvc", "serve", "--config", str(config),
                       "--ready-file", str(work / "ready.json")], work / "ready.json", out / "server.log", env)
        try:
            ech = _Server([sys.executable, "-m", "tools.bench.echo", "--workers", str(args.workers),
                           "--ready-file", str(work / "echo.json")], work / "echo.json", out / "echo.log", env)
            try:
                if Op.VERIFY_PIN in ops:
                    with grpc.insecure_channel(f"127.0.0.1:{hsm.port}") as ch:
                        r = ch.unary_unary("/hsmsvc.v1.PinService/EncryptPinForStorage")(
                            storage_request(keys).SerializeToString(), timeout=30)
                    from hsmsvc_client.v1 import pin_service_pb2 as pm
                    keys = dataclasses.replace(keys,
                                               stored_pin=pm.EncryptPinForStorageResponse.FromString(r).stored_pin)
                for op in ops:
                    for form in [f for f in args.forms if f in op.forms] or [Form.UNARY]:
                        levels = {Form.UNARY: args.concurrency, Form.STREAM: args.stream_concurrency,
                                  Form.BATCH: args.batch_concurrency}[form]
                        for size in args.batch_size if form is Form.BATCH else args.batch_size[:1]:
                            b = body(op, form, keys, args.stream_messages, size)
                            for conc in levels:
                                rows.append(_one(b, conc, hsm, ech, args))
                if args.mtls:
                    mtls_rows = _mtls(work, table, keys, hsm, ech, args, out, env, store_url)
            finally:
                ech.stop()
        finally:
            hsm.stop()
    doc = {
        "tool": "hsmsvc bench",
        "settings": {
            "backend": args.backend, "store": _store_name(args.store), "workers": args.workers,
            "transport": "plaintext HTTP/2 (h2c) on loopback",
            "duration_seconds": args.duration, "warm_up_seconds": args.warm_up, "rounds": args.rounds,
            "stream_messages": args.stream_messages, "batch_size": args.batch_size,
            "server_log_level": args.log_level, "translate_pin_keys": args.pin_keys.describe,
            "rotation": {t: {"max_age_seconds": a, "max_uses": u} for t, (a, u) in _ROTATION.items()},
            "rotation_note": "the bench's keys carry no per-key use limit, so no key rotates during a run",
            "connections": ("with several workers, h2load is started again until its connections are spread "
                            "evenly over them (the kernel's SO_REUSEPORT hash places each connection), "
                            "for hsmsvc and echo alike"),
            "load_generator": _h2load_version(), "echo": "grpc.aio generic handlers, raw bytes, same worker count",
            "mtls": ("hsmsvc and echo serving TLS 1.3 with client certificates (ECDSA P-256), reached through one "
                     "haproxy (TCP mode) holding the client certificate; h2load speaks plaintext HTTP/2 to it"),
        },
        "machine": {"cpus": os.cpu_count(), "cpu": _cpu_model(), "python": platform.python_version(),
                    "grpcio": grpc.__version__, "platform": platform.platform(), "host": platform.node(),
                    "commit": report.commit()},
        "results": rows,
        "mtls": mtls_rows,
    }
    (out / "report.json").write_text(json.dumps(doc, indent=2))
    (out / "report.md").write_text(report.markdown(doc))
    report.plot(doc, out / "latency.png")
    if args.record:
        report.record(doc, Path(args.record))
    print(f"hsmsvc bench: wrote {out / 'report.json'}, {out / 'report.md'}, {out / 'latency.png'}")
    return 1 if any(r["errors"] for r in rows) or any(r["mtls_errors"] for r in mtls_rows) else 0


def _h2load_version() -> str:
    try:
        return subprocess.run(["h2load", "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "h2load"


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()
