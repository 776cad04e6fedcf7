from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.batch.sites import PASS, Site, init_lmk
from tests.pg import throwaway_db


@pytest.fixture(autouse=True)
def _passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sealed LMK's passphrase, where `hsmsvc reencrypt --passphrase-env` reads it."""
    monkeypatch.setenv("HSMSVC_TEST_LMK_PASS", PASS)


@pytest.fixture(params=["sqlite", "postgresql"])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    lmk = init_lmk(tmp_path / "lmk.sealed")
    if request.param == "sqlite":
        yield Site(lmk, f"sqlite:///{tmp_path / 'keys.db'}", f"sqlite:///{tmp_path / 'bank.db'}")
    else:
        with throwaway_db() as url:
            # application_name lets the test see the job's open transactions in pg_stat_activity.
            yield Site(lmk, url, url + "?application_name=hsmsvc-reencrypt-test")
