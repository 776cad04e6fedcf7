"""The store's one database: its connections, its reads and its write transactions.

The only module that opens SQLAlchemy connections; the repositories run their
statements through :meth:`Database.read` and :meth:`Database.transaction`
(the PIN-attempt reads through :attr:`Database.raw`, :mod:`hsmsvc.keys.store.rawread`) (an audited write goes through
:meth:`hsmsvc.keys.store.chain.AuditChain.write`, which is one of these). What a
database fault answers is :mod:`hsmsvc.keys.faults`'s.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TypeVar

from sqlalchemy import Engine
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.pool import PoolProxiedConnection

from hsmsvc.errors import InvalidInput
from hsmsvc.keys import faults
from hsmsvc.keys.store import engine as _engine
from hsmsvc.keys.store import revisions
from hsmsvc.keys.store.rawread import RawReads
from hsmsvc.loopguard import may_block

__all__ = ["Database", "now", "utc"]

T = TypeVar("T")


def utc(value: datetime | None) -> datetime | None:
    """A stored time as aware UTC (SQLite hands back naive datetimes)."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def now() -> datetime:
    return datetime.now(timezone.utc)


class Database:
    """Connections to the store's database, with their fault handling."""

    def __init__(self, url: str) -> None:
        self._checked = threading.local()
        """Its ``on`` is set while this thread checks out a connection that must be pinged first."""
        self.engine: Engine = _engine.create(url, lambda: getattr(self._checked, "on", False))
        self.sqlite = self.engine.dialect.name == "sqlite"
        self.changes = 0
        """Key and audit writes committed through this object (a cache's cue to look again at once)."""
        self.raw = RawReads(self.engine, self._raw_connection)
        """The PIN-verification read's own path (:mod:`hsmsvc.keys.store.rawread`)."""

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        try:
            with self.connect() as conn:
                revisions.upgrade(conn)
                conn.commit()
        except SQLAlchemyError as e:
            raise faults.unavailable(e, "migrate") from None

    def revision(self) -> str | None:
        """The schema's Alembic revision (None: no schema yet); reads only."""
        try:
            with self.connect() as conn:
                return revisions.current(conn)
        except SQLAlchemyError as e:
            raise faults.unavailable(e, "schema revision") from None

    def check_schema(self) -> bool:
        """Refuse a schema behind this version's head (``hsmsvc db upgrade`` brings it there); False for
        one ahead of it (a later version's, during a rolling upgrade)."""
        try:
            with self.connect() as conn:
                return revisions.check(conn)
        except SQLAlchemyError as e:
            raise faults.unavailable(e, "schema revision") from None

    def close(self) -> None:
        self.raw.close()
        self.engine.dispose()

    def connect(self, checked: bool = False) -> Connection:
        """A pooled connection; ``checked``: pinged first, whatever its idle time (a retry after a drop).

        A drop makes the pool let go of the dropped connection and those older than
        it, not those made since, which the same restart or termination may have
        dropped too: a retry that took one of those would fail again.
        """
        may_block()
        self._checked.on = checked
        try:
            return self.engine.connect()
        except SQLAlchemyError as e:  # refused, timed out, or the pool's wait for a connection ran out
            raise faults.unavailable(e, "connect") from None
        finally:
            self._checked.on = False

    def _raw_connection(self, checked: bool) -> PoolProxiedConnection:
        """A pooled DBAPI connection, pinged as :meth:`connect`'s are."""
        may_block()
        self._checked.on = checked
        dbapi = self.engine.dialect.loaded_dbapi
        try:
            return self.engine.raw_connection()
        except SQLAlchemyError as e:
            raise faults.unavailable(e, "connect") from None
        except dbapi.Error as e:  # the pool hands the driver's own error on, unwrapped
            wrapped = DBAPIError.instance(None, None, e, dbapi.Error, dialect=self.engine.dialect)
            raise faults.unavailable(wrapped, "connect") from None
        finally:
            self._checked.on = False

    def writer(self, checked: bool = False) -> Connection:
        """A connection whose next transaction takes SQLite's write lock at BEGIN."""
        conn = self.connect(checked)
        conn.info["immediate"] = True
        return conn

    # -- reads ----------------------------------------------------------------------

    def read(self, work: Callable[[Connection], T], during: str,
             invalid: tuple[str, str] = ("request", "a value the database cannot hold")) -> T:
        """``work(conn)`` on a pooled connection, once more on a checked one if the database dropped it."""
        return faults.read(self.connect, work, during, invalid, lambda: self.connect(checked=True))

    def ping(self) -> None:
        """One round trip to the database, for the health monitor; UNAVAILABLE if it is unreachable."""
        self.read(lambda conn: conn.exec_driver_sql("SELECT 1").scalar(), "ping")

    # -- writes ---------------------------------------------------------------------

    def transaction(self, work: Callable[[Connection], T], conflicts: bool = False) -> T:
        """Run ``work(conn)`` in one write transaction.

        A connection the database dropped (a server restart, a failover, an idle
        timeout) fails its next statement. If that happens before COMMIT is sent,
        the transaction is known not to have happened, and ``work`` runs once more
        on a new connection. At COMMIT the outcome is not known: the write may or
        may not be in, so it answers UNAVAILABLE rather than risk doing it twice.
        An IntegrityError is the caller's to answer when ``conflicts``
        (:meth:`hsmsvc.keys.store.chain.AuditChain.write`); any other database
        fault is UNAVAILABLE.
        """
        for again in (True, False):
            committing = False
            try:
                with self.writer(checked=not again) as conn:
                    with conn.begin():
                        result = work(conn)
                        committing = True
                    return result
            except IntegrityError as e:
                if conflicts:
                    raise
                raise faults.unavailable(e, "write") from None
            except DataError:
                raise InvalidInput("request", "a value the database cannot store") from None
            except SQLAlchemyError as e:
                if not (again and faults.dropped(e) and not committing):
                    raise faults.unavailable(e, "commit" if committing else "write") from None
        raise AssertionError("not reached")
