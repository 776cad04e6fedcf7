"""Key-store fixtures: the same tests on SQLite and PostgreSQL.

PostgreSQL is the machine's (127.0.0.1:5432, trust auth); each test module gets
its own throw-away database created from ``test``. Under CI a missing server
fails the run; on a laptop those tests skip and say how to enable them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from hsmsvc.hsm.backend import Backend
from hsmsvc.hsm.soft.backend import SoftBackend
from hsmsvc.keys.store import KeyStore
from tests.hsm.components_env import LMK, require_or_skip

PG_ADMIN = os.environ.get("HSMSVC_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            return True
    except Exception:
        return False


@pytest.fixture
def pg_url() -> Iterator[str]:
    require_or_skip(
        _pg_available(), "PostgreSQL at 127.0.0.1:5432",
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


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/keys.db"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture(params=["soft", "pkcs11"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """The store's tests run over the soft backend and over SoftHSM (token "store")."""
    b: Backend
    if request.param == "soft":
        b = SoftBackend(LMK, anchor_path=tmp_path / "lmk.anchor")
    else:
        from tests.hsm import softhsm

        b = softhsm.backend(None, "store")  # type: ignore[arg-type]
        # One token anchors one store: start each test's fresh database with no anchor.
        for obj in b._anchor_objects():  # type: ignore[attr-defined]
            obj.destroy()
    yield b
    b.close()


@pytest.fixture
def store(store_url: str, backend: Backend) -> Iterator[KeyStore]:
    s = KeyStore(store_url, backend)
    s.migrate()
    yield s
    s.close()
