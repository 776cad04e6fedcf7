"""The options that reach a running server over mTLS as the caller's own principal, and the client they make.

Each option may come from the environment instead, so an operator's shell sets
them once: ``HSMSVC_SERVER``, ``HSMSVC_CA``, ``HSMSVC_CERT``, ``HSMSVC_KEY`` and
``HSMSVC_SERVER_NAME``. The certificate names the caller; the server's policy
decides what it may do.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Final

from hsmsvc.errors import InvalidInput

if TYPE_CHECKING:
    from hsmsvc_client import Client

__all__ = ["ENV", "add_arguments", "client", "given", "quiet_grpc", "setting"]

ENV: Final = {"server": "HSMSVC_SERVER", "ca": "HSMSVC_CA", "cert": "HSMSVC_CERT", "key": "HSMSVC_KEY",
              "server_name": "HSMSVC_SERVER_NAME"}


def add_arguments(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    need = " (required)" if required else ""
    p.add_argument("--server", help=f"a running hsmsvc, host:port{need}; env {ENV['server']}")
    p.add_argument("--ca", help=f"CA certificate that signed the server (PEM); env {ENV['ca']}")
    p.add_argument("--cert", help=f"your client certificate (PEM): it names you; env {ENV['cert']}")
    p.add_argument("--key", help=f"its private key (PEM); env {ENV['key']}")
    p.add_argument("--server-name", help=f"the name in the server's certificate, if not its address; "
                                         f"env {ENV['server_name']}")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds a call may take (default 30)")


def quiet_grpc() -> None:
    """Keep grpc's C core from writing its own lines to stderr (a refused handshake, say) beside
    the one line a command prints for the failure. grpc reads this when it starts: call it
    before anything imports grpc (the stubs in hsmsvc_client.v1 do). An operator's own setting stays."""
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")


def setting(args: argparse.Namespace, name: str) -> str | None:
    v: str | None = getattr(args, name, None) or os.environ.get(ENV[name]) or None
    return v


def given(args: argparse.Namespace) -> bool:
    """Whether a server is named, by option or environment."""
    return setting(args, "server") is not None


def client(args: argparse.Namespace) -> Client:
    """A client for ``--server`` with the mTLS identity the options name; one-line errors for what is missing."""
    quiet_grpc()
    from hsmsvc_client import Client, ClientTls

    server = setting(args, "server")
    if server is None:
        raise InvalidInput("--server", f"host:port of a running hsmsvc (or {ENV['server']})")
    files = {}
    for name in ("ca", "cert", "key"):
        path = setting(args, name)
        if path is None:
            raise InvalidInput(f"--{name}", f"required with --server: mTLS (or {ENV[name]})")
        if not Path(path).is_file() or not os.access(path, os.R_OK):
            raise InvalidInput(f"--{name}", f"{path}: no readable file there")
        files[name] = path
    # No retries of a key change: the client retries only idempotent calls anyway.
    return Client(server, ClientTls(files["ca"], files["cert"], files["key"], setting(args, "server_name")),
                  deadline=float(getattr(args, "timeout", 30.0)), retry_budget=3.0)
