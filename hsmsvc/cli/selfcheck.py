"""``hsmsvc selfcheck``: the power-on known-answer tests, on demand."""

from __future__ import annotations

import argparse
import json

from hsmsvc.hsm import selftest

HELP = "run the power-on known-answer tests"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    results = selftest.run()
    failed = [r for r in results if not r.passed]
    if args.json:
        print(json.dumps([{"name": r.name, "standard": r.standard, "passed": r.passed} for r in results]))
    else:
        for r in results:
            print(f"{'PASS' if r.passed else 'FAIL'}  {r.name:<34} {r.standard}")
        print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0
