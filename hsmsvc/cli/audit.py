"""``hsmsvc audit verify``, ``reanchor``, ``export`` (for a SIEM) and ``verify-export`` (check such a copy)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hsmsvc.cli import backend

HELP = "audit log: verify, reanchor, export for a SIEM, verify-export"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    aud = parser.add_subparsers(dest="audit_command", required=True)
    p = aud.add_parser("verify", help="check the audit chain, its MACs, its anchor and checkpoints")
    backend.add_arguments(p)
    p.add_argument("--store", required=True, help="database URL (sqlite:///... or postgresql+psycopg://...)")
    p.add_argument("--checkpoints", help="the append-only checkpoint file (or a syslog file holding them)")

    p = aud.add_parser("reanchor", help="after a database restore: accept the chain's head (dual control)")
    backend.add_arguments(p)
    p.add_argument("--store", required=True, help="database URL")
    p.add_argument("--officer", action="append", help="a key officer; give two, each confirms at the console")
    p.add_argument("--reason", required=True, help="why, e.g. the restore's change ticket")
    p.add_argument("--checkpoints", help="the checkpoint file: read, and the new anchor appended to it")

    from hsmsvc.cli import auditcopy

    auditcopy.add_arguments(aud)


def run(args: argparse.Namespace) -> int:
    if args.audit_command in ("export", "verify-export"):
        from hsmsvc.cli import auditcopy

        return auditcopy.run(args)
    return verify(args) if args.audit_command == "verify" else reanchor(args)


def verify(args: argparse.Namespace) -> int:
    checkpoints = Path(args.checkpoints) if args.checkpoints else None
    with backend.opened(args, migrate=False) as (_, store):
        report = store.verify_audit(checkpoints)
    for note in report.notes:
        print(f"NOTE  {note}")
    for p in report.problems:
        print(f"FAIL  {p}")
    if checkpoints is None:
        print("NOTE  no --checkpoints: a rollback of anchor and table together is not detectable")
    print(f"{report.rows} audit rows; {'chain intact' if report.ok else f'BROKEN: {len(report.problems)} problems'}")
    return 0 if report.ok else 1


def reanchor(args: argparse.Namespace) -> int:
    from hsmsvc.ceremony import reanchor as ceremony
    from hsmsvc.ceremony.console import Console

    officers = ceremony.check_officers(args.officer or [])
    checkpoints = Path(args.checkpoints) if args.checkpoints else None
    console = Console()
    with backend.opened(args, migrate=False, checkpoints=checkpoints) as (hsm, store):
        ceremony.reanchor(console, store=store, backend=hsm, officers=officers, reason=args.reason,
                          checkpoints=checkpoints)
    return 0
