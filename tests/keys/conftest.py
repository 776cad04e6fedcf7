"""Key-store fixtures: the same tests on SQLite and PostgreSQL.

PostgreSQL is the machine's (127.0.0.1:5432, trust auth); each test module gets
its own throw-away database created from ``test``. Under CI a missing server
fails the run; on a laptop those tests skip and say how to enable them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hsmsvc.hsm.backend import Backend
from hsmsvc.hsm.soft.backend import SoftBackend
from hsmsvc.keys.store import KeyStore
from tests import pg
from tests.hsm.components_env import LMK

@pytest.fixture
def pg_url() -> Iterator[str]:
    with pg.throwaway_db() as url:
        yield url


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
