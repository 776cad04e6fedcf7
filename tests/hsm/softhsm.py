"""SoftHSM2 tokens for the tests: one configuration per test session, tokens made up front.

SoftHSM reads its token directory when the library is first loaded in a
process, so every token the session needs is initialised before that, and the
LMK is provisioned into each from the known components.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from hsmsvc.hsm.config import Pkcs11Config, SecretSource, SoftConfig
from tests.hsm.components_env import LMK_COMPONENTS, require_or_skip, softhsm_available

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "246810"
PIN_ENV = "HSMSVC_TEST_TOKEN_PIN"
TOKENS = ("conformance", "pool-1", "pool-2", "kill-1", "kill-2", "other-lmk", "store", "running")
# Initialised with no LMK, for the LMK ceremonies to create one in.
EMPTY_TOKENS = ("ceremony-a", "ceremony-b", "ceremony-c")
OTHER_LMK = (bytes(range(32)), bytes(range(1, 33)))

_ready = False


def setup() -> None:
    """Initialise every token once per session (CI fails without SoftHSM; laptops skip)."""
    global _ready
    require_or_skip(
        softhsm_available(), "SoftHSM2", "apt-get install softhsm2 (`.ci/run` does this under CI)"
    )
    if _ready:
        return
    root = Path(tempfile.mkdtemp(prefix="hsmsvc-softhsm-"))
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root}/tokens\nobjectstore.backend = file\nlog.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    os.environ[PIN_ENV] = PIN
    for label in TOKENS + EMPTY_TOKENS:
        subprocess.run(
            ["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin", "13579111"],
            check=True,
            capture_output=True,
        )
    from hsmsvc.hsm.pkcs11.backend import provision_lmk

    for label in TOKENS:
        provision_lmk(MODULE, label, PIN, list(OTHER_LMK if label == "other-lmk" else LMK_COMPONENTS))
    _ready = True


def config(label: str) -> Pkcs11Config:
    setup()
    return Pkcs11Config(MODULE, label, SecretSource(env=PIN_ENV))


def backend(tmp: pytest.TempPathFactory, label: str):  # type: ignore[no-untyped-def]
    from hsmsvc.hsm.pkcs11.backend import Pkcs11Backend

    setup()
    return Pkcs11Backend(MODULE, label, PIN)


def pool(tmp: pytest.TempPathFactory, name: str, members: int = 2):  # type: ignore[no-untyped-def]
    from hsmsvc.hsm.pool import Pool

    return Pool([config(f"pool-{i + 1}") for i in range(members)])


def soft_config(tmp: Path, passphrase_env: str = "HSMSVC_TEST_LMK_PASSPHRASE") -> SoftConfig:
    """A sealed LMK file from the known components (cheap scrypt, for tests only)."""
    from hsmsvc.hsm.soft import sealed
    from tests.hsm.components_env import LMK
    from hsmsvc.types import Algorithm

    os.environ[passphrase_env] = "correct horse battery staple"
    path = tmp / "lmk.sealed"
    if not path.exists():
        path.write_bytes(
            sealed.seal(Algorithm.AES_256, LMK, os.environ[passphrase_env].encode(), sealed.ScryptParams(log2_n=14))
        )
    return SoftConfig(str(path), SecretSource(env=passphrase_env))
