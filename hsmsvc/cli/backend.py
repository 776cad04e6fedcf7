"""The options that name a backend, and the one way a command opens it: the arguments become a
:mod:`hsmsvc.hsm.config` object and :func:`hsmsvc.hsm.config.build` opens it, as for a server."""

from __future__ import annotations

import argparse
import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from hsmsvc.errors import InvalidInput
if TYPE_CHECKING:
    # At run time imported where used: hsm.backend pulls every command module (~0.5 s), which
    # each `hsmsvc` process would pay at start-up, whatever its command.
    from hsmsvc.hsm.backend import Backend
    from hsmsvc.hsm.config import Pkcs11Config, SecretSource, SoftConfig
    from hsmsvc.keys.store import KeyStore

__all__ = ["add_arguments", "config", "open_backend", "opened", "read_secret", "secret", "secret_arguments",
           "secret_named"]


def secret_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--passphrase-fd", type=int, help="inherited file descriptor to read the LMK passphrase from")
    p.add_argument("--passphrase-credential",
                   help="systemd credential holding the LMK passphrase ($CREDENTIALS_DIRECTORY/NAME)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sealed", help="sealed LMK file (soft backend)")
    p.add_argument("--passphrase-env", help="environment variable holding the LMK passphrase")
    p.add_argument("--passphrase-file", help="file holding the LMK passphrase")
    secret_arguments(p)
    p.add_argument("--pkcs11-module", help="PKCS#11 library (pkcs11 backend)")
    p.add_argument("--token", help="token label")
    p.add_argument("--pin-env", help="environment variable holding the token user PIN")
    p.add_argument("--pin-file", help="file holding the token user PIN")


def secret_named(args: argparse.Namespace, what: str) -> SecretSource | None:
    """The source ``--WHAT-env/-file/-fd/-credential`` name, if any was given."""
    from hsmsvc.hsm.config import SecretSource

    env, file = getattr(args, f"{what}_env", None), getattr(args, f"{what}_file", None)
    fd, credential = getattr(args, f"{what}_fd", None), getattr(args, f"{what}_credential", None)
    if env or file or fd is not None or credential:
        return SecretSource(env=env, file=file, fd=fd, credential=credential)
    return None


def secret(args: argparse.Namespace, what: str) -> SecretSource:
    """The source the options name, else a prompt ``WHAT: `` at the terminal."""
    from hsmsvc.hsm.config import SecretSource

    return secret_named(args, what) or SecretSource(prompt=f"{what}: ")


def read_secret(args: argparse.Namespace, what: str, confirm: bool = False) -> bytes:
    """The secret, read now; ``confirm``: a typed one is typed twice, and refused if they differ."""
    source = secret(args, what)
    value = source.read()
    if confirm and source.prompt is not None and getpass.getpass(f"{what} again: ").encode() != value:
        raise InvalidInput(what, "the two entries differ")
    return value


def config(args: argparse.Namespace) -> SoftConfig | Pkcs11Config:
    """The backend the options describe (secrets are read when it is built, not here)."""
    from hsmsvc.hsm.config import Pkcs11Config, SoftConfig

    if args.pkcs11_module:
        return Pkcs11Config(args.pkcs11_module, args.token, secret(args, "pin"))
    if not args.sealed:
        raise InvalidInput("sealed", "a sealed LMK file (or --pkcs11-module)")
    old_sealed = getattr(args, "old_sealed", None)
    return SoftConfig(args.sealed, secret(args, "passphrase"), old_sealed_lmk=old_sealed or None,
                      old_passphrase=secret(args, "old_passphrase") if old_sealed else None)


def open_backend(args: argparse.Namespace) -> Backend:
    """The backend the options name; a share-sealed LMK (``hsmsvc ceremony lmk reseal``) is opened by k of
    its holders, each typing their share at this terminal (dual control, as at a running server)."""
    if not args.pkcs11_module and args.sealed and secret_named(args, "passphrase") is None:
        from hsmsvc.hsm.soft import sharesealed

        if Path(args.sealed).is_file() and sharesealed.kind_of(Path(args.sealed)) is sharesealed.SealKind.SHARES:
            from hsmsvc.ceremony.console import Console
            from hsmsvc.ceremony.shareseal import open_at_console

            return open_at_console(Console(), Path(args.sealed))[0]
    from hsmsvc.hsm.config import build

    return build(config(args))


@contextmanager
def opened(args: argparse.Namespace, migrate: bool,
           checkpoints: Path | None = None) -> Iterator[tuple[Backend, KeyStore]]:
    """The backend and the key store ``--store``, closed on the way out; ``migrate``: the schema
    brought up to date first (a SQLite store is then created if need be)."""
    from hsmsvc.keys.store import KeyStore

    _existing(args.store, creating=migrate and not getattr(args, "existing_only", False))
    backend = open_backend(args)
    store = KeyStore(args.store, backend, checkpoints=checkpoints)
    try:
        if migrate:
            store.migrate()
        yield backend, store
    finally:
        store.close()
        backend.close()


def _existing(url: str, *, creating: bool) -> None:
    """Refuse a SQLite path with no file, unless this command may create the store: opening one
    would create an empty database, which is not the store the operator meant."""
    prefix = "sqlite:///"
    if creating or not url.startswith(prefix) or url == prefix + ":memory:":
        return
    if not Path(url[len(prefix):].split("?", 1)[0]).is_file():
        raise InvalidInput("store", "no database at that path (nothing was created)")
