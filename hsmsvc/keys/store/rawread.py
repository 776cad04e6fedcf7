"""The PIN-verification read on a DBAPI connection a thread keeps, without SQLAlchemy's execution path.

Issue 34: a VerifyPin that matched spent most of its time confirming its counters, and
most of that in SQLAlchemy's checkout, execution context and result processing around a
statement the database answers in tens of microseconds (docs/performance.md, "Issue 34").
So the confirmation alone runs as fixed SQL text on the driver's own connection: each thread
keeps one (up to :data:`MAX_KEPT`), in autocommit, and psycopg prepares the statement after its
fifth run. The per-item pre-read of a batch (:meth:`AttemptCounters.failures`) goes the same way.

Faults answer as :func:`hsmsvc.keys.faults.read`'s: a connection the database dropped is let go
and the read goes once more on a new one, pinged first; anything else is UNAVAILABLE, logged
with the driver's error class and SQLSTATE, never the parameters.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Final

from sqlalchemy import Engine
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import PoolProxiedConnection

from hsmsvc.errors import InvalidInput
from hsmsvc.keys import faults
from hsmsvc.loopguard import may_block

__all__ = ["RawReads"]

MAX_KEPT: Final = 8
"""Threads that keep a raw connection; others borrow one from the pool for each read."""


class RawReads:
    """Fixed SQL on kept DBAPI connections of ``engine``'s pool; ``connect(checked)`` borrows one."""

    def __init__(self, engine: Engine, connect: Callable[[bool], PoolProxiedConnection]) -> None:
        self._engine = engine
        self._connect = connect
        self._pg = engine.dialect.name == "postgresql"
        self._local = threading.local()
        self._kept: set[PoolProxiedConnection] = set()
        self._lock = threading.Lock()

    def rows(self, sql: str, params: Sequence[Any], during: str) -> list[tuple[Any, ...]]:
        """The rows ``sql`` selects with ``params`` (the driver's placeholders)."""
        may_block()
        for again in (True, False):
            conn, kept = self._take(checked=not again)
            try:
                cursor = conn.driver_connection.cursor()  # type: ignore[union-attr]
                try:
                    cursor.execute(sql, params)
                    return list(cursor.fetchall())
                finally:
                    cursor.close()
            except self._engine.dialect.loaded_dbapi.DataError:
                raise InvalidInput("request", "a value the database cannot hold") from None
            except self._engine.dialect.loaded_dbapi.Error as e:
                gone = self._engine.dialect.is_disconnect(e, conn.driver_connection, None)
                self._drop(conn, kept)
                kept = False
                if again and gone:
                    faults.log.info("store: connection dropped; reading again on a new one", extra={"during": during})
                    continue
                wrapped = DBAPIError.instance(sql, None, e, self._engine.dialect.loaded_dbapi.Error,
                                              connection_invalidated=gone, dialect=self._engine.dialect)
                raise faults.unavailable(wrapped, during) from None
            finally:
                if not kept and conn.is_valid:
                    self._give_back(conn)
        raise AssertionError("not reached")

    def close(self) -> None:
        with self._lock:
            kept, self._kept = self._kept, set()
        for conn in kept:
            conn.invalidate()  # never back to the pool in autocommit

    def _take(self, *, checked: bool) -> tuple[PoolProxiedConnection, bool]:
        held: PoolProxiedConnection | None = getattr(self._local, "conn", None)
        if held is not None and not checked:
            return held, True
        conn = self._connect(checked)
        self._autocommit(conn.dbapi_connection, True)
        with self._lock:
            keep = len(self._kept) < MAX_KEPT
            if keep:
                self._kept.add(conn)
        if keep:
            self._local.conn = conn
        return conn, keep

    def _drop(self, conn: PoolProxiedConnection, kept: bool) -> None:
        if kept:
            self._local.conn = None
            with self._lock:
                self._kept.discard(conn)
        conn.invalidate()

    def _give_back(self, conn: PoolProxiedConnection) -> None:
        """A borrowed connection goes back to the pool as it came (not in autocommit)."""
        try:
            self._autocommit(conn.dbapi_connection, False)
        except self._engine.dialect.loaded_dbapi.Error:
            conn.invalidate()
            return
        conn.close()

    def _autocommit(self, dbapi_conn: DBAPIConnection | None, on: bool) -> None:
        # SQLite's connections are in autocommit already (engine.py); PostgreSQL's save BEGIN and ROLLBACK.
        if self._pg and dbapi_conn is not None:
            dbapi_conn.autocommit = on
