"""Throw-away PostgreSQL databases on the machine's server (127.0.0.1:5432, trust auth).

Under CI a missing server fails the run; on a laptop the tests skip and say how to enable them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from tests.hsm.components_env import require_or_skip

PG_ADMIN = os.environ.get("HSMSVC_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            return True
    except Exception:
        return False


@contextmanager
def throwaway_db() -> Iterator[str]:
    """A fresh database's SQLAlchemy URL, dropped afterwards."""
    require_or_skip(
        available(), "PostgreSQL at 127.0.0.1:5432",
        "start it (`.ci/run` runs pg_ctlcluster ... start) or set HSMSVC_TEST_PG",
    )
    import psycopg

    name = f"hsmsvc_{secrets.token_hex(6)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
