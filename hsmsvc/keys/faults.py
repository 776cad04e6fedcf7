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
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TypeVar

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DataError, DBAPIError, DisconnectionError, SQLAlchemyError

from hsmsvc.errors import BackendUnavailable, InvalidInput

__all__ = ["dropped", "read", "unavailable"]

log = logging.getLogger("hsmsvc.store")
T = TypeVar("T")


def dropped(e: BaseException) -> bool:
    """Whether ``e`` is a statement that failed because its connection is gone (a new one may work)."""
    return isinstance(e, DBAPIError) and bool(e.connection_invalidated)


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
