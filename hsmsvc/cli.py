"""The ``hsmsvc`` command line."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from hsmsvc import __version__
from hsmsvc.errors import HsmsvcError, InvalidInput
from hsmsvc.hsm import selftest
from hsmsvc.hsm.backend import Backend
from hsmsvc.hsm.config import Pkcs11Config, SecretSource, SoftConfig, build

if TYPE_CHECKING:
    from hsmsvc.keys.store import KeyStore


def _selfcheck(args: argparse.Namespace) -> int:
    results = selftest.run()
    failed = [r for r in results if not r.passed]
    if args.json:
        print(json.dumps([{"name": r.name, "standard": r.standard, "passed": r.passed} for r in results]))
    else:
        for r in results:
            print(f"{'PASS' if r.passed else 'FAIL'}  {r.name:<34} {r.standard}")
        print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def _secret(args: argparse.Namespace, what: str, confirm: bool = False) -> SecretSource | bytes:
    env, file = getattr(args, f"{what}_env"), getattr(args, f"{what}_file")
    if env or file:
        return SecretSource(env=env, file=file)
    value = getpass.getpass(f"{what}: ").encode()
    if confirm and getpass.getpass(f"{what} again: ").encode() != value:
        raise InvalidInput(what, "the two entries differ")
    return value


def _read(source: SecretSource | bytes) -> bytes:
    return source if isinstance(source, bytes) else source.read()


def _components(paths: list[str]) -> list[bytes]:
    parts = []
    for p in paths:
        try:
            parts.append(bytes.fromhex(Path(p).read_text().strip()))
        except (OSError, ValueError):
            raise InvalidInput("component_file", "a readable file of hex digits") from None
    return parts


def _lmk_init(args: argparse.Namespace) -> int:
    from hsmsvc.crypto import components, kcv
    from hsmsvc.types import Algorithm

    parts = _components(args.component_file or [])
    if args.pkcs11_module:
        from hsmsvc.hsm.pkcs11.backend import provision_lmk

        if len(parts) < 2:
            raise InvalidInput("component_file", "at least 2 components (dual control) for a token LMK")
        pin = _read(_secret(args, "pin")).decode()
        check = provision_lmk(args.pkcs11_module, args.token, pin, parts)
        print(f"LMK created in token {args.token!r}; KCV {check.hex().upper()}")
        return 0
    if not args.sealed:
        raise InvalidInput("sealed", "a path for the sealed LMK file (or --pkcs11-module)")
    out = Path(args.sealed)
    if out.exists():
        raise InvalidInput("sealed", "file exists; an LMK is never overwritten")
    from hsmsvc.hsm.soft import sealed

    if parts:
        lmk = components.combine(Algorithm.AES_256, parts)
        for i, k in enumerate(components.component_kcvs(Algorithm.AES_256, parts), 1):
            print(f"component {i} KCV {k.hex().upper()}")
    else:
        print("development LMK: random, not formed from custodian components", file=sys.stderr)
        lmk = secrets.token_bytes(32)
    passphrase = _read(_secret(args, "passphrase", confirm=True))
    blob = sealed.seal(Algorithm.AES_256, lmk, passphrase, sealed.ScryptParams(log2_n=args.scrypt_log2_n))
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(blob)
    print(f"sealed LMK written to {out}; KCV {kcv.kcv(Algorithm.AES_256, lmk).hex().upper()}")
    return 0


def _backend(args: argparse.Namespace) -> Backend:
    if args.pkcs11_module:
        pin = _secret(args, "pin")
        if isinstance(pin, bytes):
            from hsmsvc.hsm.pkcs11.backend import Pkcs11Backend

            return Pkcs11Backend(args.pkcs11_module, args.token, pin.decode())
        return build(Pkcs11Config(args.pkcs11_module, args.token, pin))
    if not args.sealed:
        raise InvalidInput("sealed", "a sealed LMK file (or --pkcs11-module)")
    source = _secret(args, "passphrase")
    if isinstance(source, bytes):
        from hsmsvc.hsm.soft.backend import SoftBackend

        return SoftBackend.from_sealed(Path(args.sealed), source)
    return build(SoftConfig(args.sealed, source))


@contextmanager
def _opened(args: argparse.Namespace, migrate: bool) -> Iterator[tuple[Backend, KeyStore]]:
    from hsmsvc.keys.store import KeyStore

    backend = _backend(args)
    store = KeyStore(args.store, backend)
    try:
        if migrate:
            store.migrate()
        yield backend, store
    finally:
        store.close()
        backend.close()


def _audit_verify(args: argparse.Namespace) -> int:
    with _opened(args, migrate=False) as (_, store):
        report = store.verify_audit()
    for p in report.problems:
        print(f"FAIL  {p}")
    print(f"{report.rows} audit rows; {'chain intact' if report.ok else f'{len(report.problems)} problems'}")
    return 0 if report.ok else 1


def _status(args: argparse.Namespace) -> int:
    with _opened(args, migrate=True) as (backend, store):
        report = store.verify_audit()
        caps = backend.capabilities
        print(f"backend   {backend!r}")
        print(f"LMK KCV   {backend.lmk_kcv().hex().upper()}")
        print(f"commands  {len(caps.commands)}; algorithms {', '.join(sorted(a.value for a in caps.algorithms))}")
        print(f"store     {store!r}; audit {report.rows} rows, {'intact' if report.ok else 'BROKEN'}")
    return 0 if report.ok else 1


def _serve(args: argparse.Namespace) -> int:
    import asyncio

    from hsmsvc.api import config as api_config
    from hsmsvc.api import logs
    from hsmsvc.api.server import Running, serve

    overrides: dict[str, object] = {
        "listen": args.listen, "metrics_listen": args.metrics_listen, "store": args.store, "policy": args.policy,
        "insecure_dev": True if args.insecure_dev else None,
    }
    if args.sealed:
        overrides["backend"] = {"kind": "soft", "sealed_lmk": args.sealed,
                                "passphrase_env": args.passphrase_env, "passphrase_file": args.passphrase_file}
    cfg = api_config.load(args.config, overrides)
    logs.configure(cfg.log_level)
    if cfg.insecure_dev:
        print("hsmsvc: --insecure-dev: plaintext gRPC and one all-powerful principal; never in production",
              file=sys.stderr)

    def ready(running: Running) -> None:
        if args.ready_file:
            tmp = Path(args.ready_file + ".tmp")
            tmp.write_text(json.dumps({"port": running.port, "metrics_port": running.metrics_port,
                                       "pid": os.getpid()}))
            os.replace(tmp, args.ready_file)

    asyncio.run(serve(cfg, ready))
    return 0


def _dev_seed(args: argparse.Namespace) -> int:
    from hsmsvc import devseed

    with _opened(args, migrate=True) as (backend, store):
        for line in devseed.seed(store, backend):
            print(line)
    return 0


def _backend_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sealed", help="sealed LMK file (soft backend)")
    p.add_argument("--passphrase-env", help="environment variable holding the LMK passphrase")
    p.add_argument("--passphrase-file", help="file holding the LMK passphrase")
    p.add_argument("--pkcs11-module", help="PKCS#11 library (pkcs11 backend)")
    p.add_argument("--token", help="token label")
    p.add_argument("--pin-env", help="environment variable holding the token user PIN")
    p.add_argument("--pin-file", help="file holding the token user PIN")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hsmsvc", description=__doc__)
    parser.add_argument("--version", action="version", version=f"hsmsvc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("selfcheck", help="run the power-on known-answer tests")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_selfcheck)

    lmk = sub.add_parser("lmk", help="local master key").add_subparsers(dest="lmk_command", required=True)
    p = lmk.add_parser("init", help="form the LMK: a sealed file (soft) or a token key (pkcs11)")
    _backend_args(p)
    p.add_argument("--component-file", action="append", help="a custodian's component, in hex (repeat)")
    p.add_argument("--scrypt-log2-n", type=int, default=17, help="scrypt cost (default 17)")
    p.set_defaults(func=_lmk_init)

    aud = sub.add_parser("audit", help="audit log").add_subparsers(dest="audit_command", required=True)
    p = aud.add_parser("verify", help="check the audit chain, its MACs and its anchor")
    _backend_args(p)
    p.add_argument("--store", required=True, help="database URL (sqlite:///... or postgresql+psycopg://...)")
    p.set_defaults(func=_audit_verify)

    p = sub.add_parser("status", help="open backend and store, migrate, verify the audit chain")
    _backend_args(p)
    p.add_argument("--store", required=True, help="database URL")
    p.set_defaults(func=_status)

    p = sub.add_parser("serve", help="run the gRPC server")
    p.add_argument("--config", help="TOML configuration file (HSMSVC_* variables override it)")
    p.add_argument("--listen", help="address to bind, e.g. 127.0.0.1:8443 (port 0: any free port)")
    p.add_argument("--metrics-listen", help="Prometheus endpoint address; empty to disable")
    p.add_argument("--store", help="database URL")
    p.add_argument("--policy", help="authorization policy file (TOML)")
    p.add_argument("--insecure-dev", action="store_true", help="plaintext and one principal: development only")
    p.add_argument("--sealed", help="sealed LMK file (soft backend), instead of [backend] in the config")
    p.add_argument("--passphrase-env", help="environment variable holding the LMK passphrase")
    p.add_argument("--passphrase-file", help="file holding the LMK passphrase")
    p.add_argument("--ready-file", help="write the bound ports here as JSON once serving")
    p.set_defaults(func=_serve)

    dev = sub.add_parser("dev", help="development helpers").add_subparsers(dest="dev_command", required=True)
    p = dev.add_parser("seed", help="store the published demo keys (insecure: their values are public)")
    _backend_args(p)
    p.add_argument("--store", required=True, help="database URL")
    p.set_defaults(func=_dev_seed)

    args = parser.parse_args(argv)
    try:
        rc: int = args.func(args)
    except HsmsvcError as e:
        print(f"hsmsvc: {e}", file=sys.stderr)
        return 2
    return rc


if __name__ == "__main__":
    sys.exit(main())
