"""The bare gRPC echo server every hsmsvc figure is divided by.

Same framework, same server kind (grpc.aio), same message-size limits and the
same SO_REUSEPORT worker count as the hsmsvc server under test. Handlers take
and return raw bytes: no parsing, no policy, nothing but gRPC's own cost.

``python -m tools.bench.echo --listen 127.0.0.1:0 --workers N --ready-file F``

With ``--tls CERT,KEY,CLIENT_CA`` it serves TLS and requires a client
certificate, as an hsmsvc server with ``[tls]`` does, for the mTLS runs.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc

UNARY = "/bench.Echo/Unary"
STREAM = "/bench.Echo/Stream"
_MAX = 16 * 1024 * 1024


async def _unary(request: bytes, _context: Any) -> bytes:
    return request


async def _stream(requests: AsyncIterator[bytes], _context: Any) -> AsyncIterator[bytes]:
    async for r in requests:
        yield r


async def _serve(listen: str, reuse: bool, ready: str | None, tls: str | None) -> None:
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", _MAX), ("grpc.max_send_message_length", _MAX),
        ("grpc.so_reuseport", 1 if reuse else 0),
    ])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Echo", {
        "Unary": grpc.unary_unary_rpc_method_handler(_unary),
        "Stream": grpc.stream_stream_rpc_method_handler(_stream),
    }),))
    if tls:
        cert, key, client_ca = (Path(x).read_bytes() for x in tls.split(","))
        port = server.add_secure_port(listen, grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=client_ca, require_client_auth=True))
    else:
        port = server.add_insecure_port(listen)
    await server.start()
    # As hsmsvc serve does, so neither server's full collections scan its start-up heap.
    gc.collect()
    gc.freeze()
    if ready:
        Path(ready + ".tmp").write_text(json.dumps({"port": port, "pid": os.getpid(),
                                                    "workers": [{"pid": os.getpid()}]}))
        os.replace(ready + ".tmp", ready)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0)


def _unblock() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tools.bench.echo")
    p.add_argument("--listen", default="127.0.0.1:0")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--ready-file")
    p.add_argument("--reuse-port", action="store_true")
    p.add_argument("--tls", help="CERT,KEY,CLIENT_CA: serve mTLS")
    a = p.parse_args(argv)
    if a.workers == 1:
        asyncio.run(_serve(a.listen, a.reuse_port, a.ready_file, a.tls))
        return 0
    # Several processes on one port, as `hsmsvc serve --workers N`: the first picks the port.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    host = a.listen.rpartition(":")[0]
    readies = [f"{a.ready_file}.{i}" for i in range(a.workers)]
    cmd = [sys.executable, "-m", "tools.bench.echo", "--reuse-port", *(["--tls", a.tls] if a.tls else []),
           "--ready-file"]
    procs = [subprocess.Popen([*cmd, readies[0], "--listen", a.listen], preexec_fn=_unblock)]
    while not os.path.exists(readies[0]):
        time.sleep(0.02)
    port = json.loads(Path(readies[0]).read_text())["port"]
    procs += [subprocess.Popen([*cmd, r, "--listen", f"{host}:{port}"], preexec_fn=_unblock) for r in readies[1:]]
    while not all(os.path.exists(r) for r in readies):
        time.sleep(0.02)
    workers = [{"pid": json.loads(Path(r).read_text())["pid"]} for r in readies]
    if a.ready_file:
        Path(a.ready_file + ".tmp").write_text(json.dumps({"port": port, "pid": os.getpid(), "workers": workers}))
        os.replace(a.ready_file + ".tmp", a.ready_file)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    for pr in procs:
        pr.terminate()
    for pr in procs:
        pr.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
