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
from typing import TYPE_CHECKING, Any

from hsmsvc import __version__
from hsmsvc.errors import HsmsvcError, InvalidInput, Unsupported
from hsmsvc.hsm import selftest
from hsmsvc.hsm.backend import Backend
from hsmsvc.hsm.config import Pkcs11Config, SecretSource, SoftConfig, build
from hsmsvc.types import Algorithm

if TYPE_CHECKING:
    from hsmsvc.ceremony.console import Console
    from hsmsvc.ceremony.lmk import Record, Target
    from hsmsvc.keys.store import KeyStore
    from hsmsvc_client import ClientTls


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


def _secret_named(args: argparse.Namespace, what: str) -> SecretSource | None:
    """The source ``--WHAT-env/-file/-fd/-credential`` name, if any was given."""
    env, file = getattr(args, f"{what}_env", None), getattr(args, f"{what}_file", None)
    fd, credential = getattr(args, f"{what}_fd", None), getattr(args, f"{what}_credential", None)
    if env or file or fd is not None or credential:
        return SecretSource(env=env, file=file, fd=fd, credential=credential)
    return None


def _secret(args: argparse.Namespace, what: str, confirm: bool = False) -> SecretSource | bytes:
    source = _secret_named(args, what)
    if source is not None:
        return source
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
    from hsmsvc.ceremony.lmk import SealedTarget, TokenTarget
    from hsmsvc.crypto import components

    parts = _components(args.component_file or [])
    if args.pkcs11_module:
        if len(parts) < 2:
            raise InvalidInput("component_file", "at least 2 components (dual control) for a token LMK")
        check = TokenTarget(args.pkcs11_module, args.token, _read(_secret(args, "pin")).decode()).install(parts)
        print(f"LMK created in token {args.token!r}; KCV {check.hex().upper()}")
        return 0
    if not args.sealed:
        raise InvalidInput("sealed", "a path for the sealed LMK file (or --pkcs11-module)")
    out = Path(args.sealed)
    if out.exists():
        raise InvalidInput("sealed", "file exists; an LMK is never overwritten")
    if parts:
        for i, k in enumerate(components.component_kcvs(Algorithm.AES_256, parts), 1):
            print(f"component {i} KCV {k.hex().upper()}")
    else:
        print("development LMK: random, not formed from custodian components", file=sys.stderr)
        parts = [secrets.token_bytes(32), secrets.token_bytes(32)]
    target = SealedTarget(out, _read(_secret(args, "passphrase", confirm=True)), args.scrypt_log2_n)
    print(f"sealed LMK written to {out}; KCV {target.install(parts).hex().upper()}")
    return 0


def backend_from_args(args: argparse.Namespace) -> Backend:
    if args.pkcs11_module:
        pin = _secret(args, "pin")
        if isinstance(pin, bytes):
            from hsmsvc.hsm.pkcs11.backend import Pkcs11Backend

            return Pkcs11Backend(args.pkcs11_module, args.token, pin.decode())
        return build(Pkcs11Config(args.pkcs11_module, args.token, pin))
    if not args.sealed:
        raise InvalidInput("sealed", "a sealed LMK file (or --pkcs11-module)")
    source = _secret(args, "passphrase")
    if getattr(args, "old_sealed", None):
        from hsmsvc.hsm.soft.backend import SoftBackend

        old = (Path(args.old_sealed), _read(_secret(args, "old_passphrase")))
        return SoftBackend.from_sealed(Path(args.sealed), _read(source), old=old)
    if isinstance(source, bytes):
        from hsmsvc.hsm.soft.backend import SoftBackend

        return SoftBackend.from_sealed(Path(args.sealed), source)
    return build(SoftConfig(args.sealed, source))


@contextmanager
def _opened(args: argparse.Namespace, migrate: bool,
            checkpoints: Path | None = None) -> Iterator[tuple[Backend, KeyStore]]:
    from hsmsvc.keys.store import KeyStore

    _existing(args.store, creating=migrate and not getattr(args, "existing_only", False))
    backend = backend_from_args(args)
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


def _audit_verify(args: argparse.Namespace) -> int:
    checkpoints = Path(args.checkpoints) if args.checkpoints else None
    with _opened(args, migrate=False) as (_, store):
        report = store.verify_audit(checkpoints)
    for note in report.notes:
        print(f"NOTE  {note}")
    for p in report.problems:
        print(f"FAIL  {p}")
    if checkpoints is None:
        print("NOTE  no --checkpoints: a rollback of anchor and table together is not detectable")
    print(f"{report.rows} audit rows; {'chain intact' if report.ok else f'BROKEN: {len(report.problems)} problems'}")
    return 0 if report.ok else 1


def _audit_reanchor(args: argparse.Namespace) -> int:
    from hsmsvc.ceremony.console import Console
    from hsmsvc.keys.reanchor import reanchor

    officers = args.officer or []
    if len(officers) != 2 or officers[0] == officers[1]:
        raise InvalidInput("officer", "two distinct officers (dual control)")
    checkpoints = Path(args.checkpoints) if args.checkpoints else None
    console = Console()
    with _opened(args, migrate=False, checkpoints=checkpoints) as (backend, store):
        report = store.verify_audit(checkpoints)
        console.say(f"store {store.store_id}: {report.rows} audit rows")
        for p in report.problems:
            console.say(f"  {p}")
        console.say("Re-anchoring accepts this chain as the store's whole history from now on.")
        # Each officer answers in person: a name typed at the console, not taken from the command line.
        for officer in officers:
            if console.ask(f"{officer}: type your name to confirm: ") != officer:
                raise InvalidInput("officer", f"{officer} did not confirm; nothing re-anchored")
        done = reanchor(store, backend, first_officer=officers[0], second_officer=officers[1],
                        reason=args.reason, checkpoints=checkpoints)
    console.say(f"re-anchored: store {done.old_store} -> {done.new_store}; {done.restored_rows} rows kept, "
                f"anchor seq {done.anchored_seq} given up")
    return 0


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
        "workers": args.workers, "reuse_port": True if args.worker_index is not None else None,
    }
    if args.sealed:
        overrides["backend"] = {"kind": "soft", "sealed_lmk": args.sealed,
                                "passphrase_env": args.passphrase_env, "passphrase_file": args.passphrase_file,
                                "passphrase_fd": args.passphrase_fd,
                                "passphrase_credential": args.passphrase_credential}
    cfg = api_config.load(args.config, overrides)
    logs.configure(cfg.log_level)
    if cfg.workers > 1:
        from hsmsvc.api.workers import supervise

        return supervise(cfg, args.argv, args.ready_file)
    if cfg.insecure_dev and args.worker_index in (None, 0):
        print("hsmsvc: --insecure-dev: plaintext gRPC and one all-powerful principal; never in production",
              file=sys.stderr)

    def ready(running: Running) -> None:
        if args.ready_file:
            tmp = Path(args.ready_file + ".tmp")
            tmp.write_text(json.dumps({"port": running.port, "metrics_port": running.metrics_port,
                                       "pid": os.getpid(), "workers": [{"pid": os.getpid(),
                                                                        "metrics_port": running.metrics_port}]}))
            os.replace(tmp, args.ready_file)

    asyncio.run(serve(cfg, ready))
    return 0


def _dev_seed(args: argparse.Namespace) -> int:
    from hsmsvc import devseed

    with _opened(args, migrate=True) as (backend, store):
        for line in devseed.seed(store, backend):
            print(line)
    return 0


# -- ceremonies ---------------------------------------------------------------------


def _passphrase(console: Console, args: argparse.Namespace, prefix: str = "", confirm: bool = False) -> bytes:
    from hsmsvc.ceremony.console import zeroize

    source = _secret_named(args, f"{prefix}passphrase")
    if source is not None:
        return source.read()
    first = console.secret(f"{prefix.replace('_', ' ')}LMK passphrase (hidden): ")
    try:
        if confirm:
            again = console.secret("again: ")
            try:
                if again != first:
                    raise InvalidInput("passphrase", "the two entries differ")
            finally:
                zeroize(again)
        return bytes(first)
    finally:
        zeroize(first)


def _target(console: Console, args: argparse.Namespace, creating: bool) -> Target:
    from hsmsvc.ceremony import lmk

    if args.pkcs11_module:
        if not args.token:
            raise InvalidInput("token", "the token label")
        return lmk.TokenTarget(args.pkcs11_module, args.token, _read(_secret(args, "pin")).decode())
    if not args.sealed:
        raise InvalidInput("sealed", "a sealed LMK file (or --pkcs11-module)")
    return lmk.SealedTarget(Path(args.sealed), _passphrase(console, args, confirm=creating),
                            getattr(args, "scrypt_log2_n", 17))


def _record(args: argparse.Namespace) -> Record:
    from hsmsvc.ceremony import lmk

    journal = args.journal or (str(args.sealed) + ".ceremony.log" if getattr(args, "sealed", None) else None)
    return lmk.Record(args.officer, Path(journal) if journal else None, getattr(args, "store", None))


def _custodian_count(args: argparse.Namespace) -> int:
    """How many custodians; refused before anyone types anything."""
    from hsmsvc.ceremony.lmk import check_custodians

    n = args.custodians or len(args.custodian or [])
    if not n:
        raise InvalidInput("custodians", "how many (--custodians N, or one --custodian NAME each)")
    check_custodians(int(n))
    return int(n)


def _ceremony_lmk(args: argparse.Namespace) -> int:
    from hsmsvc.ceremony import lmk
    from hsmsvc.ceremony.console import Console

    console = Console()
    record = _record(args)
    names = args.custodian or []
    mailers = Path(args.mailer_dir) if getattr(args, "mailer_dir", None) else None
    if args.lmk_ceremony == "create":
        n = _custodian_count(args)
        target = _target(console, args, creating=True)
        lmk.create(console, n, target, record, names, mailers)
    elif args.lmk_ceremony == "restore":
        n = _custodian_count(args)
        expect = bytes.fromhex(args.expect_kcv) if args.expect_kcv else None
        target = _target(console, args, creating=True)
        lmk.restore(console, n, target, record, expect, names)
    else:
        n = _custodian_count(args)
        if args.pkcs11_module:
            raise Unsupported("lmk", "a token LMK is non-extractable: its backup is the components it was "
                                     "created from; restore it with `hsmsvc ceremony lmk restore --pkcs11-module`")
        backend = _target(console, args, creating=False).open()
        try:
            lmk.backup(console, backend, n, record, names, mailers)
        finally:
            backend.close()
    return 0


def _ceremony_lmk_migrate(args: argparse.Namespace) -> int:
    from hsmsvc.ceremony import lmk
    from hsmsvc.ceremony.console import Console

    console = Console()
    old = lmk.SealedTarget(Path(args.sealed), _passphrase(console, args))
    new = lmk.SealedTarget(Path(args.new_sealed), _passphrase(console, args, prefix="new_"))
    report = lmk.migrate(console, old, new, args.store, args.officer, args.batch, args.limit, args.delete_old)
    return 0 if report.verified or report.remaining else 1


def _tls(pair: str, args: argparse.Namespace) -> ClientTls:
    from hsmsvc_client import ClientTls

    cert, _, key = pair.partition(",")
    if not key:
        raise InvalidInput("credential", "CERT,KEY (two PEM files)")
    return ClientTls(args.ca, cert, key, args.server_name)


def _ceremony_form(args: argparse.Namespace) -> int:
    from hsmsvc.api import convert as cv
    from hsmsvc.ceremony import forming
    from hsmsvc.ceremony.console import Console
    from hsmsvc.types import Exportability, KeyType, KeyUsage, ModeOfUse
    from hsmsvc.v1 import key_service_pb2 as km

    officers = [_tls(o, args) for o in args.officer_tls or []]
    if len(officers) != 2:
        raise InvalidInput("officer", "exactly two officers (dual control): --officer CERT,KEY twice")
    kind = KeyType.ZMK if args.command_key == "zmk" else KeyType.TMK
    try:
        template = km.KeyTemplate(
            key_id=args.key_id, alias=args.alias or "", key_type=cv.KEY_TYPE.to_pb[kind],
            algorithm=cv.ALGORITHM.to_pb[Algorithm[args.algorithm]],
            usage=cv.KEY_USAGE.to_pb[KeyUsage.KBPK if args.usage == "K1" else KeyUsage.KEK],
            mode_of_use=cv.MODE_OF_USE.to_pb[ModeOfUse(args.mode_of_use)],
            exportability=cv.EXPORTABILITY.to_pb[Exportability.NON_EXPORTABLE],
            zone=args.zone or "",
            legacy_key_types=[cv.KEY_TYPE.to_pb[KeyType(t)] for t in (args.legacy_types or "").split(",") if t],
        )
    except (KeyError, ValueError):
        raise InvalidInput("template", "a known algorithm, mode of use and key types") from None
    fingerprint = bytes.fromhex(args.ctk_fingerprint) if args.ctk_fingerprint else None
    forming.form(Console(), args.server, (officers[0], officers[1]),
                 [_tls(c, args) for c in args.custodian_tls], template, args.transport_key, fingerprint)
    return 0


def _component_print(args: argparse.Namespace) -> int:
    from hsmsvc.ceremony import forming, lmk
    from hsmsvc.ceremony.console import Console
    from hsmsvc.types import KeyType

    try:
        kind, alg = KeyType(args.key_type), Algorithm[args.algorithm]
    except (KeyError, ValueError):
        raise InvalidInput("key_type", "a known key type and algorithm") from None
    record = lmk.Record(args.officer, Path(args.journal) if args.journal else Path(args.out) / "ceremony.log")
    forming.print_components(Console(), Path(args.out), args.label, kind, alg, args.custodian or [], record)
    return 0


def _ceremony_args(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    officer = os.environ.get("USER") or "officer"
    cer = sub.add_parser("ceremony", help="key ceremonies for key officers and custodians")
    groups = cer.add_subparsers(dest="ceremony_command", required=True)

    lmk = groups.add_parser("lmk", help="create, back up, restore or migrate the LMK (at the backend)")
    steps = lmk.add_subparsers(dest="lmk_ceremony", required=True)
    for name, text in (("create", "form a new LMK from 2-9 custodians' components"),
                       ("backup", "give the LMK out as fresh components, one per custodian (soft backend)"),
                       ("restore", "re-create the LMK from its components, each checked by its KCV")):
        p = steps.add_parser(name, help=text)
        backend_arguments(p)
        p.add_argument("--custodians", type=int, help="how many custodians (2 to 9)")
        p.add_argument("--custodian", action="append", help="a custodian's name, in order (else asked)")
        p.add_argument("--officer", default=officer, help="the key officer running the ceremony")
        p.add_argument("--journal", help="ceremony journal file (default: beside the sealed file)")
        p.add_argument("--store", help="also audit the step in this key store (database URL)")
        if name != "restore":
            p.add_argument("--mailer-dir", help="write drawn components to mailers here instead of the screen")
        if name == "create":
            p.add_argument("--scrypt-log2-n", type=int, default=17, help="scrypt cost (default 17)")
        if name == "restore":
            p.add_argument("--expect-kcv", help="the LMK's recorded KCV (else asked)")
            p.add_argument("--scrypt-log2-n", type=int, default=17, help="scrypt cost (default 17)")
        p.set_defaults(func=_ceremony_lmk)
    p = steps.add_parser("migrate", help="move every stored key to a new LMK (payShield BW); resumable")
    p.add_argument("--sealed", required=True, help="the old LMK's sealed file")
    p.add_argument("--passphrase-env", help="environment variable holding the old LMK's passphrase")
    p.add_argument("--passphrase-file", help="file holding the old LMK's passphrase")
    p.add_argument("--new-sealed", required=True, help="the new LMK's sealed file (from `ceremony lmk create`)")
    p.add_argument("--new-passphrase-env", help="environment variable holding the new LMK's passphrase")
    p.add_argument("--new-passphrase-file", help="file holding the new LMK's passphrase")
    p.add_argument("--store", required=True, help="database URL (stop the servers that use it first)")
    p.add_argument("--batch", type=int, default=500, help="keys per transaction (default 500)")
    p.add_argument("--limit", type=int, help="move at most this many keys in this run")
    p.add_argument("--delete-old", action="store_true", help="destroy the old LMK once everything verifies")
    p.add_argument("--officer", default=officer, help="the key officer running the migration")
    p.set_defaults(func=_ceremony_lmk_migrate)

    for kind in ("zmk", "tmk"):
        g = groups.add_parser(kind, help=f"form a {kind.upper()} through the server (dual control)")
        steps = g.add_subparsers(dest=f"{kind}_step", required=True)
        p = steps.add_parser("form", help=f"form a {kind.upper()} from custodians' components")
        p.add_argument("--server", required=True, help="hsmsvc address, host:port")
        p.add_argument("--ca", required=True, help="CA certificate that signed the server (PEM)")
        p.add_argument("--server-name", help="the name in the server's certificate, if not its address")
        p.add_argument("--officer", dest="officer_tls", action="append",
                       help="a key manager's CERT,KEY; give two (dual control)")
        p.add_argument("--custodian", dest="custodian_tls", action="append", required=True,
                       help="a custodian's CERT,KEY, one per component, in order")
        p.add_argument("--transport-key", required=True, help="the CTK the components travel under")
        p.add_argument("--ctk-fingerprint", help="the CTK fingerprint in the ceremony script (else asked)")
        p.add_argument("--key-id", required=True)
        p.add_argument("--alias")
        p.add_argument("--algorithm", default="TDES_2KEY", help="TDES_2KEY, TDES_3KEY, AES_128/192/256, SM4")
        p.add_argument("--usage", choices=("K0", "K1"), default="K1",
                       help="K1: TR-31 key blocks (default); K0: the legacy ECB form")
        p.add_argument("--mode-of-use", default="B", help="TR-31 mode of use (default B)")
        p.add_argument("--zone", help="the zone (ZMK) or terminal group (TMK)")
        p.add_argument("--legacy-types", help="K0 only: key types it may carry in ECB form, e.g. ZPK,MAK")
        p.set_defaults(func=_ceremony_form, command_key=kind)

    comp = groups.add_parser("component", help="key component mailers")
    steps = comp.add_subparsers(dest="component_step", required=True)
    p = steps.add_parser("print", help="draw a new key's components and write one mailer each (text + PDF)")
    p.add_argument("--out", required=True, help="directory for the mailers")
    p.add_argument("--label", required=True, help="what the key is, e.g. zmk-branch-0001")
    p.add_argument("--key-type", default="ZMK")
    p.add_argument("--algorithm", default="TDES_2KEY")
    p.add_argument("--custodian", action="append", required=True, help="a custodian's name, one per component")
    p.add_argument("--officer", default=officer)
    p.add_argument("--journal", help="ceremony journal file (default: OUT/ceremony.log)")
    p.set_defaults(func=_component_print)


def _secret_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--passphrase-fd", type=int, help="inherited file descriptor to read the LMK passphrase from")
    p.add_argument("--passphrase-credential",
                   help="systemd credential holding the LMK passphrase ($CREDENTIALS_DIRECTORY/NAME)")


def backend_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sealed", help="sealed LMK file (soft backend)")
    p.add_argument("--passphrase-env", help="environment variable holding the LMK passphrase")
    p.add_argument("--passphrase-file", help="file holding the LMK passphrase")
    _secret_arguments(p)
    p.add_argument("--pkcs11-module", help="PKCS#11 library (pkcs11 backend)")
    p.add_argument("--token", help="token label")
    p.add_argument("--pin-env", help="environment variable holding the token user PIN")
    p.add_argument("--pin-file", help="file holding the token user PIN")


def _bench_module() -> Any:
    """``tools.bench.pressure`` from the source checkout this package runs from, if there is one."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "tools" / "bench" / "pressure.py").exists():
        return None
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from tools.bench import pressure

    return pressure


def _no_bench() -> int:
    print("hsmsvc bench: run it from a source checkout (the tool is tools/bench)", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="hsmsvc", description=__doc__)
    parser.add_argument("--version", action="version", version=f"hsmsvc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("selfcheck", help="run the power-on known-answer tests")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_selfcheck)

    lmk = sub.add_parser("lmk", help="local master key").add_subparsers(dest="lmk_command", required=True)
    p = lmk.add_parser("init", help="form the LMK: a sealed file (soft) or a token key (pkcs11)")
    backend_arguments(p)
    p.add_argument("--component-file", action="append", help="a custodian's component, in hex (repeat)")
    p.add_argument("--scrypt-log2-n", type=int, default=17, help="scrypt cost (default 17)")
    p.set_defaults(func=_lmk_init)

    aud = sub.add_parser("audit", help="audit log").add_subparsers(dest="audit_command", required=True)
    p = aud.add_parser("verify", help="check the audit chain, its MACs, its anchor and checkpoints")
    backend_arguments(p)
    p.add_argument("--store", required=True, help="database URL (sqlite:///... or postgresql+psycopg://...)")
    p.add_argument("--checkpoints", help="the append-only checkpoint file (or a syslog file holding them)")
    p.set_defaults(func=_audit_verify)

    p = aud.add_parser("reanchor", help="after a database restore: accept the chain's head (dual control)")
    backend_arguments(p)
    p.add_argument("--store", required=True, help="database URL")
    p.add_argument("--officer", action="append", help="a key officer; give two, each confirms at the console")
    p.add_argument("--reason", required=True, help="why, e.g. the restore's change ticket")
    p.add_argument("--checkpoints", help="the checkpoint file: read, and the new anchor appended to it")
    p.set_defaults(func=_audit_reanchor)

    p = sub.add_parser("status", help="open backend and an existing store, migrate, verify the audit chain")
    backend_arguments(p)
    p.add_argument("--store", required=True, help="database URL")
    p.set_defaults(func=_status, existing_only=True)

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
    _secret_arguments(p)
    p.add_argument("--ready-file", help="write the bound ports here as JSON once serving")
    p.add_argument("--workers", type=int, help="server processes sharing the port (SO_REUSEPORT; default 1)")
    p.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    p.set_defaults(func=_serve)

    _ceremony_args(sub)

    p = sub.add_parser("reencrypt", help="move a table's stored PINs to a new key: resumable, parallel (batch)")
    backend_arguments(p)
    from hsmsvc.batch import command as batch_command

    batch_command.add_arguments(p)
    p.set_defaults(func=lambda a: batch_command.run(a, backend_from_args))

    p = sub.add_parser("bench", help="pressure test: the real server against a bare gRPC echo, with h2load",
                       description="Run from a source checkout: the tool lives in tools/bench.")
    # Imported only for this command: it pulls in the request builders and h2load driver.
    bench = _bench_module() if argv[:1] == ["bench"] else None
    if bench is not None:
        bench.add_arguments(p)
        p.set_defaults(func=bench.run)
    else:
        p.set_defaults(func=lambda a: _no_bench())

    dev = sub.add_parser("dev", help="development helpers").add_subparsers(dest="dev_command", required=True)
    p = dev.add_parser("seed", help="store the published demo keys (insecure: their values are public)")
    backend_arguments(p)
    p.add_argument("--store", required=True, help="database URL")
    p.set_defaults(func=_dev_seed)

    args = parser.parse_args(argv)
    args.argv = argv
    try:
        rc: int = args.func(args)
    except HsmsvcError as e:
        print(f"hsmsvc: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hsmsvc: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        from hsmsvc_client import ClientError

        if isinstance(e, ClientError):
            print(f"hsmsvc: the server refused: {e.code.name}: {e.details}", file=sys.stderr)
            return 2
        raise
    return rc


if __name__ == "__main__":
    sys.exit(main())
