"""How to build a backend: picklable settings, so a pool can build one in a spawned worker.

Secrets (passphrase, token PIN) are never in a config: it names where to read
them (an environment variable, a file, a file descriptor, a systemd
credential, or a prompt at the terminal), and the process that builds the
backend reads them itself.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from pathlib import Path

from hsmsvc.errors import InvalidInput, PermissionDenied
from hsmsvc.hsm.backend import Backend

__all__ = ["Pkcs11Config", "SecretSource", "SoftConfig", "build"]


@dataclass(frozen=True)
class SecretSource:
    """Exactly one of: an environment variable's name, a file path, an open file descriptor
    (read to its end once, then closed), a systemd credential's name
    (``$CREDENTIALS_DIRECTORY/<name>``, from ``LoadCredential=``/``SetCredential=``), or
    the prompt an interactive command asks it with, unechoed, at the terminal."""

    env: str | None = None
    file: str | None = None
    fd: int | None = None
    credential: str | None = None
    prompt: str | None = None

    def __post_init__(self) -> None:
        named = (self.env, self.file, self.fd, self.credential, self.prompt)
        if sum(x is not None for x in named) != 1:
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
        if self.prompt is not None:
            return getpass.getpass(self.prompt).encode()
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
    """The soft backend: a sealed LMK file and where its passphrase comes from; for an LMK
    migration, also the retiring LMK's sealed file and passphrase (key change storage).

    ``passphrase`` is None for a share-sealed LMK (``hsm/soft/sharesealed.py``): custodians'
    shares open it, at a running server (``hsmsvc unseal``) or at the ceremony console."""

    sealed_lmk: str
    passphrase: SecretSource | None
    old_sealed_lmk: str | None = None
    old_passphrase: SecretSource | None = None

    def __post_init__(self) -> None:
        if (self.old_sealed_lmk is None) != (self.old_passphrase is None):
            raise InvalidInput("old_sealed_lmk", "the old LMK's sealed file and its passphrase, or neither")


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

        if config.passphrase is None:
            from hsmsvc.hsm.soft import sharesealed

            if sharesealed.kind_of(Path(config.sealed_lmk)) is sharesealed.SealKind.SHARES:
                raise PermissionDenied("sealed_lmk", "share-sealed: custodians open it with their shares "
                                                     "(`hsmsvc unseal` at a running server, or at the console)")
            raise PermissionDenied("passphrase", "required: where the LMK passphrase comes from")
        passphrase = config.passphrase.read(forget)
        old = None
        if config.old_sealed_lmk is not None and config.old_passphrase is not None:
            old = (Path(config.old_sealed_lmk), config.old_passphrase.read(forget))
        return SoftBackend.from_sealed(Path(config.sealed_lmk), passphrase, old=old)
    if isinstance(config, Pkcs11Config):
        from hsmsvc.hsm.pkcs11.backend import Pkcs11Backend

        return Pkcs11Backend(config.module, config.token_label, config.pin.read(forget).decode())
    raise InvalidInput("backend", "a SoftConfig or Pkcs11Config")
