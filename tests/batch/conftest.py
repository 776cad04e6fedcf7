import pytest

from tests.batch.sites import PASS


@pytest.fixture(autouse=True)
def _passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sealed LMK's passphrase, where `hsmsvc reencrypt --passphrase-env` reads it."""
    monkeypatch.setenv("HSMSVC_TEST_LMK_PASS", PASS)
