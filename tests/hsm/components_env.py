"""How the tests build each backend from one set of known LMK components."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from hsmsvc.crypto import components
from hsmsvc.hsm.backend import Backend
from hsmsvc.types import Algorithm

LMK_COMPONENTS = (
    bytes.fromhex("00112233445566778899AABBCCDDEEFF0123456789ABCDEFFEDCBA9876543210"),
    bytes.fromhex("F0E1D2C3B4A5968778695A4B3C2D1E0F1032547698BADCFEEFCDAB8967452301"),
)
LMK = components.combine(Algorithm.AES_256, LMK_COMPONENTS)


def require_or_skip(ok: bool, what: str, how: str) -> None:
    """Under CI a missing component fails the run; on a laptop the test skips and says how."""
    if ok:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required under CI: {how}")
    pytest.skip(f"{what} not available: {how}")


def make_backend(name: str, tmp: pytest.TempPathFactory) -> Backend:
    if name == "soft":
        from hsmsvc.hsm.soft.backend import SoftBackend

        return SoftBackend(LMK, anchor_path=tmp.mktemp("soft") / "lmk.anchor")
    if name == "pkcs11":
        from tests.hsm import softhsm

        return softhsm.backend(tmp, "conformance")
    if name == "pool":
        from tests.hsm import softhsm

        return softhsm.pool(tmp, "conformance-pool", members=2)
    raise ValueError(name)


def softhsm_available() -> bool:
    return shutil.which("softhsm2-util") is not None and Path("/usr/lib/softhsm/libsofthsm2.so").exists()
