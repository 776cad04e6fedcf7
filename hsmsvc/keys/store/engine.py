"""The store's SQLAlchemy engine: pool sizes, PostgreSQL's bounds, SQLite's locking, the idle ping."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, Final

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DisconnectionError, SQLAlchemyError

from hsmsvc.errors import InvalidInput

__all__ = ["create"]

# On PostgreSQL nothing the store does may wait without end: a connection attempt, a row
# lock another session holds, a statement. A call that meets one of these answers
# UNAVAILABLE within the bound, and a shutdown's drain is not held past it. (SQLite
# waits busy_timeout, 10 s, for its write lock: _sqlite_connect.)
_PG_BOUNDS: Final = {"connect_timeout": 5, "options": "-c lock_timeout=5000 -c statement_timeout=30000"}
# Connections per process: the server's executor threads (two lanes of 8 by default), each
# holding at most one connection at a time, the PIN-attempt readers kept by up to
# rawread.MAX_KEPT of them, and the monitor's and the use meter's threads. A checkout that
# finds none free waits at most 5 s (UNAVAILABLE), never the 30 s SQLAlchemy's pool would.
_POOL: Final = {"pool_size": 16, "max_overflow": 16, "pool_timeout": 5}

# A pooled connection idle this long is pinged before use. SQLAlchemy's pool_pre_ping pings
# at every checkout, a round trip that doubled the attempt read on every PIN verification.
# Under load a connection is back in use within milliseconds; one the server dropped
# meanwhile fails its statement, the pool lets it and its elders go, and the read or write
# goes again on a new one (Database.transaction, faults.read) unless it had reached COMMIT.
_PING_AFTER: Final = 1.0


def create(url: str, ping_always: Callable[[], bool]) -> Engine:
    """The engine for ``url``; on PostgreSQL a checkout pings while ``ping_always()`` (a retry)."""
    try:
        # hide_parameters: a database error's text never carries a row's values.
        engine = create_engine(url, hide_parameters=True, **_engine_options(url))
    except (SQLAlchemyError, ValueError, ImportError):
        raise InvalidInput("store_url", "a SQLAlchemy database URL") from None
    if engine.dialect.name == "sqlite":
        _create_private(engine.url.database)
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    else:
        event.listen(engine, "checkin", _idle_from)
        event.listen(engine, "checkout", _ping_if_idle(engine.dialect, ping_always))
    return engine


def _engine_options(url: str) -> dict[str, Any]:
    if url.startswith("postgresql"):
        return {"connect_args": dict(_PG_BOUNDS), **_POOL}
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":  # a file: a QueuePool
        return dict(_POOL)
    return {}


def _idle_from(_dbapi_conn: Any, record: Any) -> None:
    record.info["idle_from"] = time.monotonic()


def _ping_if_idle(dialect: Any, always: Callable[[], bool]) -> Any:
    """A pool checkout listener: ``dialect``'s ping (as pool_pre_ping's), for a connection idle
    for :data:`_PING_AFTER` or longer, or for any while ``always()``."""

    def checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        idle_from = record.info.get("idle_from")
        if (idle_from is None or time.monotonic() - idle_from < _PING_AFTER) and not always():
            return
        try:
            dialect.do_ping(dbapi_conn)
        except Exception:
            # The pool's documented answer: it drops this connection and checks out another.
            raise DisconnectionError() from None

    return checkout


def _create_private(database: str | None) -> None:
    """Create a SQLite store file 0600 before SQLite would create it 0644 (umask permitting).

    Its -wal and -shm files take the database file's mode (SQLite's unix VFS copies it), so
    key cryptograms, audit rows and attempt counters are readable by the service's user only.
    """
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    try:
        os.close(os.open(database, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass  # an existing store keeps the mode its operator gave it
    except OSError:
        pass  # a missing directory: SQLite's own open reports it as it always has


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN IMMEDIATE itself.
    dbapi_conn.isolation_level = None
    dbapi_conn.execute("PRAGMA busy_timeout = 10000")
    dbapi_conn.execute("PRAGMA journal_mode = WAL")


def _sqlite_begin(conn: Connection) -> None:
    # Writers take the lock at BEGIN so two processes never interleave a chain
    # append; readers (every key lookup) take none and do not queue behind them.
    # info belongs to the pooled connection, not to this checkout: marks are removed after use.
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.pop("immediate", False) else "BEGIN")
