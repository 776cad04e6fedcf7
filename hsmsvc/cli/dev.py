"""``hsmsvc dev seed``: the published demo keys, for development only."""

from __future__ import annotations

import argparse

from hsmsvc.cli import backend

HELP = "development helpers"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    dev = parser.add_subparsers(dest="dev_command", required=True)
    p = dev.add_parser("seed", help="store the published demo keys (insecure: their values are public)")
    backend.add_arguments(p)
    p.add_argument("--store", required=True, help="database URL")


def run(args: argparse.Namespace) -> int:
    from hsmsvc import devseed

    with backend.opened(args, migrate=True) as (hsm, store):
        for line in devseed.seed(store, hsm):
            print(line)
    return 0
