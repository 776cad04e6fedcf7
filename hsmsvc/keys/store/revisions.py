"""The store's schema revision (Alembic): where it stands, the upgrade, and the SQL an upgrade would run.

Upgrading is the database owner's step (``hsmsvc db upgrade``), or ``serve``'s when ``auto_migrate``
is set (development): a server without it checks the revision and refuses a schema that is behind,
so the role it connects as needs no DDL rights.
"""

from __future__ import annotations

from importlib import resources
from typing import TextIO

from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from hsmsvc.errors import InvalidInput

__all__ = ["check", "current", "head", "known", "upgrade", "upgrade_sql"]


def _config(url: str | None = None, out: TextIO | None = None) -> Config:
    cfg = Config(output_buffer=out) if out is not None else Config()
    cfg.set_main_option("script_location", str(resources.files("hsmsvc.keys") / "migrations"))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # the ini's interpolation
    return cfg


def head() -> str:
    """The newest revision this version of hsmsvc knows."""
    rev = ScriptDirectory.from_config(_config()).get_current_head()
    assert rev is not None
    return rev


def current(conn: Connection) -> str | None:
    """The revision the database is at; None before the first migration. Reads only."""
    rev: str | None = MigrationContext.configure(conn).get_current_revision()
    return rev


def check(conn: Connection) -> bool:
    """Refuse a schema behind this version's, in one line saying what to run. A revision this version
    does not know is a later one's (a rolling upgrade: the DBA upgraded first, and a later version's
    migrations only add): allowed, and False returned so that the caller can say so."""
    rev, want = current(conn), head()
    if rev == want:
        return True
    if rev is not None and not known(rev):
        return False
    raise InvalidInput("store", f"schema at {rev or 'none (empty database)'}, expected {want}: "
                                "run hsmsvc db upgrade")


def known(rev: str) -> bool:
    """Whether ``rev`` is one of this version's revisions (else a later version's)."""
    try:
        return ScriptDirectory.from_config(_config()).get_revision(rev) is not None
    except CommandError:
        return False


def upgrade(conn: Connection) -> None:
    """Bring the schema on ``conn`` to the head revision (the caller commits); a later version's schema
    is left as it is (Alembic cannot place a revision it does not know)."""
    rev = current(conn)
    if rev is not None and not known(rev):
        return
    cfg = _config()
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")


def upgrade_sql(url: str, out: TextIO, *, start: str | None = None) -> None:
    """Write the SQL that upgrading ``url``'s kind of database (from ``start``, else from empty) would run,
    without connecting (Alembic's offline mode), for a DBA to review or run."""
    command.upgrade(_config(url, out), f"{start}:head" if start else "head", sql=True)
