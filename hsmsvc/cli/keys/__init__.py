"""``hsmsvc keys``: manage keys on a running server over mTLS, as your own principal.

``list``, ``show`` and ``report`` read (manager or auditor); ``generate``, ``import``,
``export``, ``rotate`` and ``revoke`` change keys (manager). The server's policy
decides, by the name in your certificate (``--cert``), exactly as for any client.
Options ``--server``, ``--ca``, ``--cert``, ``--key`` may come from ``HSMSVC_SERVER``,
``HSMSVC_CA``, ``HSMSVC_CERT`` and ``HSMSVC_KEY``.
"""

from __future__ import annotations

import argparse

from hsmsvc.cli import remote

LAZY = True  # its options import the client and grpc: described only when chosen
HELP = "list, show, report, generate, import, export, rotate or revoke keys on a running server (mTLS)"
DESCRIPTION = __doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    remote.quiet_grpc()  # before manage imports the stubs, and with them grpc
    from hsmsvc.cli.keys.manage import add_arguments as add

    add(parser.add_subparsers(dest="keys_command", required=True))


def run(args: argparse.Namespace) -> int:
    from hsmsvc.cli.keys.manage import COMMANDS

    with remote.client(args) as c:
        return COMMANDS[args.keys_command](args, c)
