"""``hsmsvc status``: open the backend and an existing store, migrate it, verify its audit chain."""

from __future__ import annotations

import argparse

from hsmsvc.cli import backend

HELP = "open backend and an existing store, migrate, verify the audit chain"


def add_arguments(p: argparse.ArgumentParser) -> None:
    backend.add_arguments(p)
    p.add_argument("--store", required=True, help="database URL")
    p.set_defaults(existing_only=True)


def run(args: argparse.Namespace) -> int:
    with backend.opened(args, migrate=True) as (hsm, store):
        report = store.verify_audit()
        caps = hsm.capabilities
        print(f"backend   {hsm!r}")
        print(f"LMK KCV   {hsm.lmk_kcv().hex().upper()}")
        print(f"commands  {len(caps.commands)}; algorithms {', '.join(sorted(a.value for a in caps.algorithms))}")
        print(f"store     {store!r}; audit {report.rows} rows, {'intact' if report.ok else 'BROKEN'}")
    return 0 if report.ok else 1
