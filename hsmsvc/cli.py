"""The ``hsmsvc`` command line."""

from __future__ import annotations

import argparse
import json
import sys

from hsmsvc import __version__
from hsmsvc.hsm import selftest


def _selfcheck(args: argparse.Namespace) -> int:
    results = selftest.run()
    failed = [r for r in results if not r.passed]
    if args.json:
        print(json.dumps([{"name": r.name, "standard": r.standard, "passed": r.passed} for r in results]))
    else:
        for r in results:
            print(f"{'PASS' if r.passed else 'FAIL'}  {r.name:<34} {r.standard}")
        print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hsmsvc", description=__doc__)
    parser.add_argument("--version", action="version", version=f"hsmsvc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("selfcheck", help="run the power-on known-answer tests")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_selfcheck)
    args = parser.parse_args(argv)
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
