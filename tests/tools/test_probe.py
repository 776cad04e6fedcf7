"""The bench's view of how connections sit on a server's processes, on real loopback sockets."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from tools.bench.probe import connections_per_process, spread_evenly


def test_connections_are_counted_on_the_process_that_accepted_them() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        accepted = [server.accept()[0] for _ in clients]
        other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            # The client ends are not connections *to* the port; the accepted ends are.
            assert connections_per_process([os.getpid(), other.pid], port) == [3, 0]
            assert not spread_evenly([os.getpid(), other.pid], port, 3, wait=0)
            assert spread_evenly([os.getpid()], port, 3, wait=0)
            # Not all up yet: not even, whatever the split.
            assert not spread_evenly([os.getpid()], port, 4, wait=0.1)
        finally:
            other.kill()
            other.wait()
            for c in clients + accepted:
                c.close()
