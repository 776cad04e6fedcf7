"""The backend options: arguments become an hsm.config object, and hsm.config.build opens it."""

from __future__ import annotations

import argparse
import getpass
from pathlib import Path

import pytest

from hsmsvc.cli import backend, main
from hsmsvc.errors import InvalidInput
from hsmsvc.hsm.config import SecretSource, SoftConfig

PASS = "a long enough passphrase"


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    backend.add_arguments(p)
    return p.parse_args(list(argv))


def test_a_typed_passphrase_is_a_prompt_read_when_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LMK_PASS", PASS)
    sealed = tmp_path / "lmk.sealed"
    assert main(["lmk", "init", "--sealed", str(sealed), "--passphrase-env", "LMK_PASS", "--scrypt-log2-n", "14"]) == 0
    cfg = backend.config(_args("--sealed", str(sealed)))
    assert cfg == SoftConfig(str(sealed), SecretSource(prompt="passphrase: "))
    prompts: list[str] = []

    def typed(prompt: str = "") -> str:
        prompts.append(prompt)
        return PASS

    monkeypatch.setattr(getpass, "getpass", typed)
    assert prompts == []  # nothing asked until the backend is built
    backend.open_backend(_args("--sealed", str(sealed))).close()
    assert prompts == ["passphrase: "]


def test_an_old_lmk_needs_both_its_file_and_its_passphrase() -> None:
    cfg = backend.config(_args("--sealed", "new.sealed", "--passphrase-env", "P"))
    assert cfg == SoftConfig("new.sealed", SecretSource(env="P"))
    with pytest.raises(InvalidInput):
        SoftConfig("new.sealed", SecretSource(env="P"), old_sealed_lmk="old.sealed")
    with pytest.raises(InvalidInput):
        backend.config(_args())
