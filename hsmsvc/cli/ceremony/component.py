"""``hsmsvc ceremony component print``: a new key's component mailers
(:func:`hsmsvc.ceremony.forming.print_components`)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from hsmsvc.errors import InvalidInput
from hsmsvc.types import Algorithm

CEREMONY_ID = re.compile(r"[A-Za-z0-9._-]{1,80}-[0-9]{8}T[0-9]{6}Z-[0-9a-f]{4}")
"""A ceremony's id as :meth:`hsmsvc.ceremony.record.Record.session` makes it."""


def add_arguments(parser: argparse.ArgumentParser, officer: str | None) -> None:
    steps = parser.add_subparsers(dest="component_step", required=True)
    p = steps.add_parser("print", help="draw a new key's components and write one mailer each (text + PDF)")
    p.add_argument("--out", required=True, help="directory for the mailers")
    p.add_argument("--label", required=True, help="what the key is, e.g. zmk-branch-0001")
    p.add_argument("--key-type", default="ZMK")
    p.add_argument("--algorithm", default="TDES_2KEY")
    p.add_argument("--custodian", action="append", required=True, help="a custodian's name, one per component")
    p.add_argument("--officer", default=officer, help="the key officer (else asked)")
    p.add_argument("--journal", help="ceremony journal file (default: OUT/ceremony.log)")
    p = steps.add_parser("destroy", help="once printed and sealed: overwrite and remove a ceremony's mailer files")
    p.add_argument("--dir", required=True, help="the directory holding the mailers")
    p.add_argument("--ceremony", required=True, help="the ceremony id the mailers' names begin with")
    p.add_argument("--officer", default=officer, help="the key officer (else asked)")
    p.add_argument("--journal", help="ceremony journal file (default: DIR/ceremony.log)")


def run(args: argparse.Namespace) -> int:
    if args.component_step == "destroy":
        return destroy(args)
    from hsmsvc.ceremony import forming
    from hsmsvc.ceremony.console import Console
    from hsmsvc.ceremony.entry import person
    from hsmsvc.ceremony.record import Record
    from hsmsvc.types import KeyType

    try:
        kind, alg = KeyType(args.key_type), Algorithm[args.algorithm]
    except (KeyError, ValueError):
        raise InvalidInput("key_type", "a known key type and algorithm") from None
    console = Console()
    record = Record(person(console, "Key officer's name: ", args.officer, "officer"),
                    Path(args.journal) if args.journal else Path(args.out) / "ceremony.log")
    forming.print_components(console, out=Path(args.out), label=args.label, key_type=kind, algorithm=alg,
                             names=args.custodian or [], record=record)
    return 0


def destroy(args: argparse.Namespace) -> int:
    """The mailer files are a step to paper, not a place to keep components: once the sheets are
    printed and sealed in their envelopes, the files go, and the journal says so."""
    from hsmsvc.ceremony import mailer
    from hsmsvc.ceremony.console import Console
    from hsmsvc.ceremony.entry import person
    from hsmsvc.ceremony.record import Record
    from hsmsvc.ceremony.staging import shred

    # The whole id (kind, time, random digits): a prefix such as "print" took every ceremony's mailers.
    if not CEREMONY_ID.fullmatch(args.ceremony):
        raise InvalidInput("ceremony", "a whole ceremony id, as the mailers' names begin "
                                       "(e.g. lmk-backup-20260101T120000Z-1a2b)")
    directory = Path(args.dir)
    files = sorted(p for p in directory.glob(f"{args.ceremony}-[1-9]-*")
                   if p.suffix in (".txt", ".pdf") and mailer.CUSTODIAN_NAME.fullmatch(p.stem))
    if not files:
        raise InvalidInput("ceremony", f"no mailer of {args.ceremony} in {directory}")
    console = Console()
    record = Record(person(console, "Key officer's name: ", args.officer, "officer"),
                    Path(args.journal) if args.journal else directory / "ceremony.log")
    for f in files:
        shred(f)
        console.say(f"  destroyed {f}")
    record.line(args.ceremony, "mailers.destroyed", files=",".join(f.name for f in files))
    return 0
