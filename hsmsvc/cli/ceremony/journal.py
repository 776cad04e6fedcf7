"""``hsmsvc ceremony journal verify``: check a ceremony journal's hash chain (:mod:`hsmsvc.ceremony.journal`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hsmsvc.errors import InvalidInput


def add_arguments(parser: argparse.ArgumentParser) -> None:
    steps = parser.add_subparsers(dest="journal_step", required=True)
    p = steps.add_parser("verify", help="check every line's hash and its link to the line before")
    p.add_argument("journal", help="the journal file (e.g. lmk.sealed.ceremony.log)")


def run(args: argparse.Namespace) -> int:
    from hsmsvc.ceremony import journal

    try:
        check = journal.verify(Path(args.journal))
    except OSError as e:
        raise InvalidInput("journal", f"{args.journal} cannot be read: {e.strerror}") from None
    for problem in check.problems:
        print(problem)
    print(f"{check.lines} lines, chain {'intact' if check.ok else 'BROKEN'}; head {check.head or '-'}: compare it "
          "with the last head in the paper ceremony log")
    return 0 if check.ok else 1
