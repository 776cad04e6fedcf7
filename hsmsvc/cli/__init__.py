"""The ``hsmsvc`` command line."""

from __future__ import annotations

import argparse
import sys
from types import ModuleType

from hsmsvc import __version__
from hsmsvc.cli import (
    audit, bench, ceremony, config, db, dev, keys, lmk, policy, reencrypt, selfcheck, serve, status, unseal,
)
from hsmsvc.errors import HsmsvcError

__all__ = ["main"]

# Each command is a module with HELP, add_arguments(parser) and run(args) -> int; the work
# itself is in the layer it uses (ceremony, batch, keys, api). In the order `--help` lists them.
COMMANDS: dict[str, ModuleType] = {
    "selfcheck": selfcheck, "lmk": lmk, "audit": audit, "status": status, "keys": keys, "serve": serve,
    "unseal": unseal,
    "ceremony": ceremony, "reencrypt": reencrypt, "bench": bench, "dev": dev,
    "config": config, "policy": policy, "db": db,
}


def parser(argv: list[str]) -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="hsmsvc", description=__doc__)
    top.add_argument("--version", action="version", version=f"hsmsvc {__version__}")
    sub = top.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.HELP, description=getattr(command, "DESCRIPTION", None))
        # A LAZY command's options are costly to describe: only when it is the one chosen.
        if not getattr(command, "LAZY", False) or argv[:1] == [name]:
            command.add_arguments(p)
        p.set_defaults(func=command.run)
    return top


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = parser(argv)
    args, unknown = top.parse_known_args(argv)
    # parse_args, except that a command unavailable here (bench outside a checkout) takes any
    # options, to say how to run it rather than that they are unknown.
    if unknown and not getattr(args, "any_options", False):
        top.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.argv = argv
    try:
        rc: int = args.func(args)
    except HsmsvcError as e:
        print(f"hsmsvc: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hsmsvc: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        from hsmsvc_client import ClientError

        if isinstance(e, ClientError):
            print(f"hsmsvc: the server refused: {e.code.name}: {e.details}", file=sys.stderr)
            return 2
        raise
    return rc


if __name__ == "__main__":
    sys.exit(main())
