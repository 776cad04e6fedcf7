"""``hsmsvc db upgrade|current``: the store's schema, under the database owner's control.

``serve`` runs no DDL unless ``auto_migrate`` is set (development): the DBA upgrades the schema
with this command as the owning role (``--sql`` prints the statements instead, without
connecting, for review), and the serving role needs only SELECT, INSERT, UPDATE and DELETE.
"""

from __future__ import annotations

import argparse
import os
import sys

from hsmsvc.errors import InvalidInput

HELP = "upgrade the store's schema, or show its revision"
DESCRIPTION = __doc__


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="db_command", required=True)
    up = sub.add_parser("upgrade", help="bring the schema to this version's revision (as the owning role)")
    cur = sub.add_parser("current", help="the schema's revision, and this version's")
    for s in (up, cur):
        where = s.add_mutually_exclusive_group(required=True)
        where.add_argument("--store", help="database URL")
        where.add_argument("--config", help="the server's config file: its store (HSMSVC_STORE overrides it)")
    up.add_argument("--sql", action="store_true",
                    help="print the SQL instead of running it; connects to nothing (Alembic offline mode)")
    up.add_argument("--from", dest="start", metavar="REV",
                    help="with --sql: the revision the database is at (default: an empty database)")


def _url(args: argparse.Namespace) -> str:
    if args.store:
        return str(args.store)
    from hsmsvc import tomlfile
    from hsmsvc.api import configschema
    from hsmsvc.api.config import resolve_paths

    # The store only: the rest need not hold on a DBA's machine, which has no TLS files or LMK.
    doc = tomlfile.read(args.config)
    resolve_paths(doc, os.path.abspath(os.path.dirname(args.config)))
    return os.environ.get("HSMSVC_STORE") or tomlfile.decode(doc, configschema.File, source=args.config).store


def run(args: argparse.Namespace) -> int:
    from hsmsvc.keys.store import revisions
    from hsmsvc.keys.store.database import Database

    from hsmsvc.cli.backend import _existing

    url = _url(args)
    if args.db_command == "upgrade" and args.sql:
        revisions.upgrade_sql(url, sys.stdout, start=args.start)
        return 0
    if getattr(args, "start", None):
        raise InvalidInput("from", "only with --sql")
    _existing(url, creating=args.db_command == "upgrade")  # a SQLite path with no file: not created by `current`
    db = Database(url)
    try:
        before = db.revision()
        if before is not None and not revisions.known(before):
            print(f"store: at {before}, a later version's schema than this one's ({revisions.head()}): "
                  "nothing to do (this version runs on it if that version's migrations only add)")
            return 0
        if args.db_command == "upgrade":
            db.migrate()
            after = db.revision()
            print(f"store: upgraded from {before or 'empty'} to {after}" if before != after
                  else f"store: at {after}, up to date")
        else:
            head = revisions.head()
            state = "up to date" if before == head else "behind: run hsmsvc db upgrade"
            print(f"store: at {before or 'none (empty database)'}, this version's is {head}: {state}")
    finally:
        db.close()
    return 0
