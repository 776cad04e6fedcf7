"""The databases a batch job names, checked before it starts, and their faults as one-line errors.

A job that cannot reach its table or its key store, or finds either not what it
should be, stops before it opens the backend, with one line naming the option
(``--db``, ``--store``, ``--from-store``) and the URL with its password as
``***``. A driver's message is quoted only from a failed connection, which has
sent no row; a fault mid-run is named by its class and SQLSTATE, never by its
text, which may quote a row's values.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Final

from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from hsmsvc.batch.table import connect
from hsmsvc.errors import BackendUnavailable, HsmsvcError, InvalidInput, KeyNotFound, PermissionDenied
from hsmsvc.redact import redact_url

__all__ = ["check_store", "database_error", "open_table_db"]

_STORE_TABLES: Final = frozenset({"keys", "audit", "store_meta"})
_CONNECT_TIMEOUT: Final = 5
"""Seconds a PostgreSQL connection attempt waits: an unreachable host fails in this, not in TCP's minutes."""

# Substrings of libpq's and SQLite's messages for a failed connection, and what each means.
_CAUSES: Final = (
    ("does not exist", None),  # database "x" / role "x": quoted from the server as it is
    ("Connection refused", "connection refused (is the server running, on that port?)"),
    ("timeout expired", "no answer before the connect timeout"),
    ("could not translate host name", "unknown host"),
    ("Name or service not known", "unknown host"),
    ("password authentication failed", "authentication failed"),
    ("no password supplied", "authentication failed (no password given)"),
    ("file is not a database", "not a SQLite database"),
    ("unable to open database file", "cannot open the SQLite file (permissions?)"),
)


def open_table_db(url: str, option: str = "--db") -> Engine:
    """An engine for the customer database, connected once to prove it is there."""
    _sqlite_file(url, option)
    engine = connect(url)
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as e:
        engine.dispose()
        raise connect_error(e, option=option, url=url) from None
    return engine


def check_store(url: str, option: str = "--store") -> None:
    """The key store is there, reachable, and migrated to this hsmsvc's schema; creates nothing."""
    _sqlite_file(url, option)
    try:
        engine = create_engine(url, poolclass=NullPool, hide_parameters=True,
                               connect_args={"connect_timeout": _CONNECT_TIMEOUT}
                               if url.startswith("postgresql") else {})
    except (ArgumentError, NoSuchModuleError, ValueError, ImportError):
        raise InvalidInput(option, "a SQLAlchemy database URL") from None
    try:
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            revision = (conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
                        if "alembic_version" in tables else None)
    except SQLAlchemyError as e:
        raise connect_error(e, option=option, url=url) from None
    finally:
        engine.dispose()
    shown = redact_url(url)
    if not _STORE_TABLES <= tables:
        raise InvalidInput(option, f"no key tables in {shown}: not a key store, or not migrated "
                                   f"(`hsmsvc status --store URL` migrates an existing store)")
    head = _head_revision()
    if revision != head:
        raise InvalidInput(option, f"key store schema {revision or 'unversioned'} in {shown}, this hsmsvc needs "
                                   f"{head} (`hsmsvc status --store URL` migrates it)")


def connect_error(e: SQLAlchemyError, *, option: str, url: str) -> HsmsvcError:
    """One line for a connection that failed: which database, and why, without its password."""
    shown = redact_url(url)
    message = str(getattr(e, "orig", None) or e)
    for secret in _secrets(url):
        message = message.replace(secret, "***")
    for marker, cause in _CAUSES:
        if marker in message:
            if cause is None:
                line = next(ln for ln in message.splitlines() if marker in ln)
                # libpq: 'connection failed: ... failed: FATAL:  database "x" does not exist'
                cause = line.rsplit("FATAL:", 1)[-1].strip()
                return KeyNotFound(option, f"{cause} at {shown}")
            if cause.startswith("authentication"):
                return PermissionDenied(option, f"{cause} at {shown}")
            return BackendUnavailable(option, f"cannot reach {shown}: {cause}")
    first = message.strip().splitlines()[0] if message.strip() else type(e).__name__
    return BackendUnavailable(option, f"cannot reach {shown}: {first[:200]}")


def database_error(e: SQLAlchemyError, option: str = "--db") -> HsmsvcError:
    """One line for a fault mid-run: its class and SQLSTATE, and that a run again resumes."""
    orig = getattr(e, "orig", None)
    state = getattr(orig, "sqlstate", None) or getattr(orig, "sqlite_errorname", None)
    what = f"{type(orig or e).__name__}{f' (SQLSTATE {state})' if state else ''}"
    if isinstance(e, OperationalError) or (isinstance(e, DBAPIError) and e.connection_invalidated):
        return BackendUnavailable(option, f"the database failed mid-run: {what}; run again to resume")
    if state in ("42501", "SQLITE_READONLY"):
        return PermissionDenied(option, f"the database refused the job's statement: {what}")
    return BackendUnavailable(option, f"the database refused a statement: {what}; nothing of the failed "
                                      "chunk was kept (run again to resume)")


def _sqlite_file(url: str, option: str) -> None:
    """A SQLite URL names an existing file: opening a missing one would create an empty database."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise InvalidInput(option, "a SQLAlchemy database URL") from None
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if not path.parent.is_dir():
        raise InvalidInput(option, f"no directory {path.parent} for the SQLite database (nothing was created)")
    if not path.is_file():
        raise InvalidInput(option, f"no SQLite database at {path} (nothing was created)")


def _secrets(url: str) -> list[str]:
    """The URL's password, wherever it was given, to scrub from a driver's message."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return []
    found = [parsed.password, *(v for k, v in parsed.query.items() if k.lower() in ("password", "sslpassword"))]
    return [s for s in found if isinstance(s, str) and s]


def _head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("hsmsvc.keys") / "migrations"))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head
