"""Backends for the conformance suite: soft, PKCS#11 on SoftHSM2, and a pool of two.

Every backend holds the same LMK, formed from components the tests know, so a
cryptogram made by one is usable by another only where the backend formats
agree (they do not: soft and PKCS#11 store keys differently).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hsmsvc.hsm.backend import Backend
from tests.hsm import components_env

BACKENDS = ["soft", "pkcs11", "pool"]


@pytest.fixture(params=BACKENDS, scope="module")
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    b = components_env.make_backend(request.param, tmp_path_factory)
    try:
        yield b
    finally:
        b.close()
