"""``hsmsvc ceremony``: key ceremonies for key officers and custodians (:mod:`hsmsvc.ceremony`)."""

from __future__ import annotations

import argparse

from hsmsvc.cli.ceremony import component, form, journal, key, lmk

HELP = "key ceremonies for key officers and custodians"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Asked at the console when not given: the journal names a person, not the login that ran it.
    officer = None
    groups = parser.add_subparsers(dest="ceremony_command", required=True)
    lmk.add_arguments(groups.add_parser("lmk", help="create, back up, restore or migrate the LMK (at the backend)"),
                      officer)
    for kind in ("zmk", "tmk"):
        form.add_arguments(groups.add_parser(kind, help=f"form a {kind.upper()} through the server (dual control)"),
                           kind)
    key.add_arguments(groups.add_parser("key", help="form a ZMK or TMK of any strength at the backend (offline)"),
                      officer)
    component.add_arguments(groups.add_parser("component", help="key component mailers"), officer)
    journal.add_arguments(groups.add_parser("journal", help="check a ceremony journal's hash chain"))


def run(args: argparse.Namespace) -> int:
    from hsmsvc.ceremony.record import stop_on_signals

    stop_on_signals()  # a closed terminal discards and journals, as Ctrl-C does
    if args.ceremony_command == "lmk":
        return lmk.run(args)
    if args.ceremony_command == "component":
        return component.run(args)
    if args.ceremony_command == "journal":
        return journal.run(args)
    if args.ceremony_command == "key":
        return key.run(args)
    return form.run(args)
