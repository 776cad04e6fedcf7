"""Database faults in the key store: which go again on a new connection, and what each answers.

A connection the database dropped (a restart, a failover, ``pg_terminate_backend``,
an idle timeout) fails its next statement with the connection invalidated, and
SQLAlchemy's pool lets it and every older connection go, so one more try runs on
a new one. Anything else the database raises is UNAVAILABLE to the caller, never
INTERNAL: the client learns only that the store failed, the server log gets the
error's class, SQLSTATE and statement (never its parameters, which may hold key
ids, PAN hashes and cryptograms).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Final, TypeVar

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DataError, DBAPIError, DisconnectionError, IntegrityError, SQLAlchemyError

from hsmsvc.errors import BackendUnavailable, InvalidInput

__all__ = ["dropped", "duplicate", "lost_race", "read", "unavailable"]

log = logging.getLogger("hsmsvc.store")
T = TypeVar("T")


def dropped(e: BaseException) -> bool:
    """Whether ``e`` is a statement that failed because its connection is gone (a new one may work)."""
    return isinstance(e, DBAPIError) and bool(e.connection_invalidated)


# The unique keys two concurrent writers can both claim, the loser then to run again: the
# audit chain's next sequence number (the head is read without a lock) and a subject's
# first PIN-attempt counter. PostgreSQL's own names for the primary keys migrations 0001
# and 0002 create (unnamed there); a rename needs a migration and this set changed with it.
# SQLite needs none: its writers take the lock at BEGIN IMMEDIATE, so these never race there.
RACES: Final = frozenset({"audit_pkey", "pin_attempts_pkey"})
_UNIQUE_VIOLATION: Final = "23505"
_SQLITE_UNIQUE: Final = frozenset({"SQLITE_CONSTRAINT_PRIMARYKEY", "SQLITE_CONSTRAINT_UNIQUE"})


def _sqlstate(orig: object) -> str | None:
    state = getattr(orig, "sqlstate", None)  # psycopg 3
    return state if isinstance(state, str) else None


def lost_race(e: IntegrityError) -> bool:
    """Whether ``e`` is a writer losing one of the :data:`RACES` (run the transaction again).

    Told by SQLSTATE and constraint name, never by the message, which quotes the row's values.
    """
    orig = e.orig
    if _sqlstate(orig) != _UNIQUE_VIOLATION:
        return False
    return getattr(getattr(orig, "diag", None), "constraint_name", None) in RACES


def duplicate(e: IntegrityError) -> bool:
    """Whether ``e`` is a row whose primary or unique key another row holds (ALREADY_EXISTS)."""
    orig = e.orig
    if isinstance(orig, sqlite3.IntegrityError):
        return getattr(orig, "sqlite_errorname", None) in _SQLITE_UNIQUE
    return _sqlstate(orig) == _UNIQUE_VIOLATION


def unavailable(e: SQLAlchemyError, during: str) -> BackendUnavailable:
    """The caller's answer to a database fault: UNAVAILABLE, with the fault logged here.

    An unreachable database (no connection to be had, or one dropped again) is
    logged at DEBUG only: every call meets it, and the health monitor logs the
    outage once, at WARN. Any other fault is unexpected and is logged at WARN.
    """
    orig = getattr(e, "orig", None)
    unreachable = during == "connect" or dropped(e) or isinstance(e, DisconnectionError)
    log.log(
        logging.DEBUG if unreachable else logging.WARNING,
        "store: database error",
        extra={
            "during": during,
            "error": type(e).__name__,
            "driver_error": type(orig).__name__ if orig is not None else None,
            "sqlstate": getattr(orig, "sqlstate", None),
            "statement": (getattr(e, "statement", None) or "")[:200],
            "dropped": dropped(e),
        },
    )
    return BackendUnavailable("store", "database unreachable" if unreachable else "database error")


def read(
    connect: Callable[[], AbstractContextManager[Connection]],
    work: Callable[[Connection], T],
    during: str,
    invalid: tuple[str, str] = ("request", "a value the database cannot hold"),
    reconnect: Callable[[], AbstractContextManager[Connection]] | None = None,
) -> T:
    """``work(conn)`` on a connection from ``connect()``; once more, from ``reconnect()``
    (default ``connect``), if the first was dropped.

    A read changes nothing, so going again is always safe. A value the database
    refuses (out of range, a NUL byte) is the request's fault: INVALID_ARGUMENT
    with ``invalid`` (field, reason).
    """
    for again in (True, False):
        try:
            with (connect if again else reconnect or connect)() as conn:
                return work(conn)
        except DataError:
            raise InvalidInput(*invalid) from None
        except SQLAlchemyError as e:
            if not (again and dropped(e)):
                raise unavailable(e, during) from None
            log.info("store: connection dropped; reading again on a new one", extra={"during": during})
    raise AssertionError("not reached")
