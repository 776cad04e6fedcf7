"""How to build a backend: picklable settings, so a pool can build one in a spawned worker.

Secrets (passphrase, token PIN) are never in a config: it names where to read
them (an environment variable, a file, a file descriptor or a systemd
credential), and the process that builds the backend reads them itself.
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
    """Exactly one of: an environment variable's name, a file path, an open file descriptor
    (read to its end once, then closed), or a systemd credential's name
    (``$CREDENTIALS_DIRECTORY/<name>``, from ``LoadCredential=``/``SetCredential=``)."""

    env: str | None = None
    file: str | None = None
    fd: int | None = None
    credential: str | None = None

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.env, self.file, self.fd, self.credential)) != 1:
            raise InvalidInput("secret", "exactly one of env, file, fd or credential")
        if self.fd is not None and (isinstance(self.fd, bool) or not isinstance(self.fd, int) or self.fd < 0):
            raise InvalidInput("secret", "fd: a file descriptor number")
        if self.credential is not None and (not self.credential or "/" in self.credential
                                            or self.credential in (".", "..")):
            raise InvalidInput("secret", "credential: a systemd credential name, no '/'")

    def read(self, forget: bool = False) -> bytes:
        """The secret, without a trailing newline. ``forget``: remove an environment variable it
        came from, so no child process inherits it (``/proc/PID/environ`` keeps the initial
        environment regardless: prefer a file, an fd or a credential)."""
        if self.env is not None:
            value = os.environ.pop(self.env, None) if forget else os.environ.get(self.env)
            if not value:
                raise PermissionDenied("secret", f"environment variable {self.env} is not set")
            return value.encode()
        if self.fd is not None:
            return _read_fd(self.fd)
        if self.credential is not None:
            directory = os.environ.get("CREDENTIALS_DIRECTORY")
            if not directory:
                raise PermissionDenied("secret", "no systemd credentials: CREDENTIALS_DIRECTORY is not set")
            return _read_file(Path(directory) / self.credential)
        return _read_file(Path(str(self.file)))


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes().rstrip(b"\r\n")
    except OSError:
        raise PermissionDenied("secret", "file cannot be read") from None


def _read_fd(fd: int) -> bytes:
    # One read to EOF, then closed: a pipe's secret is gone from the process once consumed.
    try:
        with os.fdopen(fd, "rb", closefd=True) as f:
            return f.read().rstrip(b"\r\n")
    except OSError:
        raise PermissionDenied("secret", f"file descriptor {fd} cannot be read") from None


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


def build(config: SoftConfig | Pkcs11Config, forget: bool = False) -> Backend:
    """Open the backend a config describes; ``forget``: see :meth:`SecretSource.read`."""
    if isinstance(config, SoftConfig):
        from hsmsvc.hsm.soft.backend import SoftBackend

        return SoftBackend.from_sealed(Path(config.sealed_lmk), config.passphrase.read(forget))
    if isinstance(config, Pkcs11Config):
        from hsmsvc.hsm.pkcs11.backend import Pkcs11Backend

        return Pkcs11Backend(config.module, config.token_label, config.pin.read(forget).decode())
    raise InvalidInput("backend", "a SoftConfig or Pkcs11Config")
