"""``hsmsvc policy check FILE``: the authorization policy checked as ``serve`` loads it."""

from __future__ import annotations

import argparse
import sys

from hsmsvc.errors import HsmsvcError

HELP = "check an authorization policy file"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="policy_command", required=True)
    c = sub.add_parser("check", help="check FILE: prints FILE: ok, or one line saying what is wrong (exit 2)")
    c.add_argument("file", metavar="FILE")


def run(args: argparse.Namespace) -> int:
    from hsmsvc.service.authz import Policy

    try:
        policy = Policy.load(args.file)
    except HsmsvcError as e:
        print(e, file=sys.stderr)
        return 2
    print(f"{args.file}: ok ({len(policy)} principals)")
    return 0
