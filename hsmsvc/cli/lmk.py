"""``hsmsvc lmk init``: form the LMK, as a sealed file (soft) or a token key (pkcs11)."""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path

from hsmsvc.cli import backend
from hsmsvc.cli.ceremony.lmk import algorithm_argument, lmk_algorithm
from hsmsvc.errors import InvalidInput

HELP = "local master key"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    lmk = parser.add_subparsers(dest="lmk_command", required=True)
    p = lmk.add_parser("init", help="form the LMK: a sealed file (soft) or a token key (pkcs11)")
    backend.add_arguments(p)
    p.add_argument("--component-file", action="append", help="a custodian's component, in hex (repeat)")
    p.add_argument("--scrypt-log2-n", type=int, default=17, help="scrypt cost (default 17)")
    algorithm_argument(p)


def run(args: argparse.Namespace) -> int:
    return init(args)


def _components(paths: list[str]) -> list[bytes]:
    parts = []
    for p in paths:
        try:
            parts.append(bytes.fromhex(Path(p).read_text().strip()))
        except (OSError, ValueError):
            raise InvalidInput("component_file", "a readable file of hex digits") from None
    return parts


def init(args: argparse.Namespace) -> int:
    from hsmsvc.ceremony.lmk import SealedTarget, TokenTarget, install
    from hsmsvc.crypto import components

    parts = _components(args.component_file or [])
    algorithm = lmk_algorithm(args)
    if args.pkcs11_module:
        if len(parts) < 2:
            raise InvalidInput("component_file", "at least 2 components (dual control) for a token LMK")
        token = TokenTarget(args.pkcs11_module, args.token, backend.read_secret(args, "pin").decode())
        check = install(token, parts, "lmk-init")
        print(f"LMK created in token {args.token!r}; KCV {check.hex().upper()}")
        return 0
    if not args.sealed:
        raise InvalidInput("sealed", "a path for the sealed LMK file (or --pkcs11-module)")
    out = Path(args.sealed)
    if out.exists():
        raise InvalidInput("sealed", "file exists; an LMK is never overwritten")
    if parts:
        for i, k in enumerate(components.component_kcvs(algorithm, parts), 1):
            print(f"component {i} KCV {k.hex().upper()}")
    else:
        print("development LMK: random, not formed from custodian components", file=sys.stderr)
        parts = [secrets.token_bytes(algorithm.key_length) for _ in range(2)]
    target = SealedTarget(out, backend.read_secret(args, "passphrase", confirm=True), args.scrypt_log2_n, algorithm)
    print(f"sealed LMK written to {out}; KCV {install(target, parts, 'lmk-init').hex().upper()}")
    return 0
