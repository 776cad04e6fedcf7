"""A TLS client terminator (haproxy, TCP mode) that holds the client certificate.

h2load has no client certificates, so the mTLS runs send plaintext HTTP/2 to
haproxy on loopback, which opens TLS to the server with the client
certificate and ALPN ``h2`` (gRPC's TLS server refuses a handshake without
ALPN, which rules out stunnel). hsmsvc and echo go through the same haproxy,
so the ratio between them stays a like-for-like one.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["Terminator", "available"]


def available() -> bool:
    return shutil.which("haproxy") is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Terminator:
    """One plaintext front port per server port; ``front[port]`` is where to point h2load."""

    def __init__(self, work: Path, server_ports: list[int], client_cert: str, client_key: str, ca_file: str,
                 server_name: str = "localhost") -> None:
        pem = work / "haproxy-client.pem"
        pem.write_text(Path(client_cert).read_text() + Path(client_key).read_text())
        pem.chmod(0o600)
        self.front = {p: _free_port() for p in server_ports}
        sections = "".join(
            f"frontend f{p}\n    bind 127.0.0.1:{f}\n    default_backend b{p}\n"
            f"backend b{p}\n    server s 127.0.0.1:{p} ssl crt {pem} ca-file {ca_file} verify required "
            f"verifyhost {server_name} sni str({server_name}) alpn h2\n"
            for p, f in self.front.items())
        cfg = work / "haproxy.cfg"
        cfg.write_text("global\n    maxconn 4096\n    nbthread 1\ndefaults\n    mode tcp\n    timeout connect 5s\n"
                       f"    timeout client 120s\n    timeout server 120s\n{sections}")
        self.log = work / "haproxy.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(cfg)], stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        for f in self.front.values():
            while True:
                try:
                    socket.create_connection(("127.0.0.1", f), timeout=1).close()
                    break
                except OSError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(f"haproxy did not start:\n{self.log.read_text()[-2000:]}") from None
                    time.sleep(0.05)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
