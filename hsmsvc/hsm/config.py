"""How to build a backend: picklable settings, so a pool can build one in a spawned worker.

Secrets (passphrase, token PIN) are never in a config: it names where to read
them, an environment variable or a file, and the process that builds the
backend reads them itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hsmsvc.errors import InvalidInput, PermissionDenied
from hsmsvc.hsm.backend import Backend

__all__ = ["Pkcs11Config", "SecretSource", "SoftConfig", "build"]


@dataclass(frozen=True)
class SecretSource:
    """Exactly one of: the name of an environment variable, or a file path."""

    env: str | None = None
    file: str | None = None

    def __post_init__(self) -> None:
        if (self.env is None) == (self.file is None):
            raise InvalidInput("secret", "exactly one of env or file")

    def read(self) -> bytes:
        if self.env is not None:
            value = os.environ.get(self.env)
            if not value:
                raise PermissionDenied("secret", f"environment variable {self.env} is not set")
            return value.encode()
        try:
            return Path(str(self.file)).read_bytes().rstrip(b"\r\n")
        except OSError:
            raise PermissionDenied("secret", "file cannot be read") from None


@dataclass(frozen=True)
class SoftConfig:
    """The soft backend: a sealed LMK file and where its passphrase comes from."""

    sealed_lmk: str
    passphrase: SecretSource


@dataclass(frozen=True)
class Pkcs11Config:
    """A PKCS#11 token holding an hsmsvc LMK, and where its user PIN comes from."""

    module: str
    token_label: str
    pin: SecretSource


def build(config: SoftConfig | Pkcs11Config) -> Backend:
    """Open the backend a config describes."""
    if isinstance(config, SoftConfig):
        from hsmsvc.hsm.soft.backend import SoftBackend

        return SoftBackend.from_sealed(Path(config.sealed_lmk), config.passphrase.read())
    if isinstance(config, Pkcs11Config):
        from hsmsvc.hsm.pkcs11.backend import Pkcs11Backend

        return Pkcs11Backend(config.module, config.token_label, config.pin.read().decode())
    raise InvalidInput("backend", "a SoftConfig or Pkcs11Config")
