"""``hsmsvc config check FILE``: the server config checked as ``serve`` reads it, without its secrets.

Every setting is checked (types, unknown keys, the rules between them) and, unless ``--no-files``,
every file it names: the TLS files and sealed LMK can be read, the policy file is a valid policy.
Nothing secret is read: no passphrase, PIN or LMK is opened. ``HSMSVC_*`` variables are ignored:
what is checked is the file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hsmsvc.errors import HsmsvcError, unreadable

HELP = "check a server configuration file"
DESCRIPTION = __doc__


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="config_command", required=True)
    c = sub.add_parser("check", help="check FILE: prints FILE: ok, or one line saying what is wrong (exit 2)")
    c.add_argument("file", metavar="FILE")
    c.add_argument("--no-files", action="store_true",
                   help="check the settings only, not the files they name (on a machine without them)")


def run(args: argparse.Namespace) -> int:
    try:
        check(args.file, files=not args.no_files)
    except HsmsvcError as e:
        print(e, file=sys.stderr)
        return 2
    print(f"{args.file}: ok")
    return 0


def check(path: str, *, files: bool) -> None:
    """Load ``path`` as ``serve`` would (no environment overrides); with ``files``, open what it names."""
    from hsmsvc.api import config as api_config
    from hsmsvc.hsm.config import SoftConfig
    from hsmsvc.service.authz import Policy

    cfg = api_config.load(path, environ={})
    if not files:
        return
    if cfg.policy:
        Policy.load(cfg.policy)
    named = [(f"tls.{n}", getattr(cfg.tls, n)) for n in ("cert", "key", "client_ca")] if cfg.tls else []
    named += [("sealed_lmk", m.sealed_lmk) for m in cfg.backend.members if isinstance(m, SoftConfig)]
    for field, name in named:
        try:
            with open(name, "rb"):
                pass
        except OSError as e:
            raise unreadable(field, name, e) from None
    if cfg.audit_checkpoints and not Path(cfg.audit_checkpoints).parent.is_dir():
        raise unreadable("audit_checkpoints", Path(cfg.audit_checkpoints).parent,
                         FileNotFoundError(2, "No such directory"))
