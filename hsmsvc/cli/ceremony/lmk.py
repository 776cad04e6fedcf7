"""``hsmsvc ceremony lmk create|backup|restore|migrate|reseal`` (:mod:`hsmsvc.ceremony.lmk`,
:mod:`hsmsvc.ceremony.shareseal`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from hsmsvc.cli import backend
from hsmsvc.errors import HsmsvcError, InvalidInput, Unsupported

if TYPE_CHECKING:
    from hsmsvc.ceremony.console import Console
    from hsmsvc.ceremony.lmk import Target
    from hsmsvc.ceremony.record import Record
    from hsmsvc.hsm.backend import Backend
    from hsmsvc.types import Algorithm


def add_arguments(parser: argparse.ArgumentParser, officer: str | None) -> None:
    steps = parser.add_subparsers(dest="lmk_ceremony", required=True)
    for name, text in (("create", "form a new LMK from 2-9 custodians' components"),
                       ("backup", "give the LMK out as fresh components, one per custodian (soft backend)"),
                       ("restore", "re-create the LMK from its components, each checked by its KCV")):
        p = steps.add_parser(name, help=text)
        backend.add_arguments(p)
        p.add_argument("--custodians", type=int, help="how many custodians (2 to 9)")
        p.add_argument("--custodian", action="append", help="a custodian's name, in order (else asked)")
        p.add_argument("--officer", default=officer, help="the key officer running the ceremony (else asked)")
        p.add_argument("--journal", help="ceremony journal file (default: beside the sealed file)")
        p.add_argument("--store", help="also audit the step in this key store (database URL)")
        if name != "restore":
            p.add_argument("--mailer-dir", help="write drawn components to mailers here instead of the screen")
        if name != "backup":
            algorithm_argument(p)
        if name == "create":
            p.add_argument("--scrypt-log2-n", type=int, default=17, help="scrypt cost (default 17)")
        if name == "restore":
            p.add_argument("--expect-kcv", help="the LMK's recorded KCV (else asked)")
            p.add_argument("--scrypt-log2-n", type=int, default=17, help="scrypt cost (default 17)")
        if name != "backup":
            _share_arguments(p)
    p = steps.add_parser("reseal", help="seal the soft LMK under custodians' shares (k of n) instead of a passphrase")
    p.add_argument("--sealed", required=True, help="the sealed LMK file; the file it replaces is kept as "
                                                   "FILE.previous until you destroy it")
    p.add_argument("--passphrase-env", help="environment variable holding the LMK passphrase (passphrase-sealed)")
    p.add_argument("--passphrase-file", help="file holding the LMK passphrase (passphrase-sealed)")
    p.add_argument("--custodian", action="append", help="for a share-sealed file: who opens it, in order (else asked)")
    p.add_argument("--officer", default=officer, help="the key officer running the ceremony")
    p.add_argument("--journal", help="ceremony journal file (default: beside the sealed file)")
    p.add_argument("--store", help="also audit the step in this key store (database URL)")
    _share_arguments(p, required=True)
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
    p.add_argument("--officer", default=officer, help="the key officer running the migration (else asked)")


def run(args: argparse.Namespace) -> int:
    from hsmsvc.ceremony.console import Console

    if args.lmk_ceremony == "migrate":
        return migrate(args)
    if args.lmk_ceremony == "reseal":
        return reseal(args)
    console = Console()
    record = _record(console, args)
    try:
        _ceremony(console, args, record)
    except BaseException as e:
        # What stopped it before the ceremony began (a passphrase typed twice differently, Ctrl-C at
        # the prompt, a token that cannot be opened) is journaled too; later steps journal their own.
        from hsmsvc.ceremony.record import JOURNALED, reason

        if JOURNALED not in getattr(e, "__notes__", ()) and record.journal is not None \
                and not isinstance(e, SystemExit):
            try:
                record.line("", f"lmk-{args.lmk_ceremony}.abandoned", reason=f"before it began: {reason(e)}")
            except HsmsvcError:
                pass  # the error that stopped it is the one to report
        raise
    return 0


def _ceremony(console: Console, args: argparse.Namespace, record: Record) -> None:
    from hsmsvc.ceremony import lmk

    names = args.custodian or []
    mailers = Path(args.mailer_dir) if getattr(args, "mailer_dir", None) else None
    if args.lmk_ceremony == "create":
        n = _custodian_count(args)
        target = _target(console, args, creating=True)
        lmk.create(console, n=n, target=target, record=record, names=names, mailer_dir=mailers)
    elif args.lmk_ceremony == "restore":
        n = _custodian_count(args)
        expect = bytes.fromhex(args.expect_kcv) if args.expect_kcv else None
        target = _target(console, args, creating=True)
        lmk.restore(console, n=n, target=target, record=record, expect_kcv=expect, names=names)
    else:
        n = _custodian_count(args)
        if args.pkcs11_module:
            raise Unsupported("lmk", "a token LMK is non-extractable: its backup is the components it was "
                                     "created from; restore it with `hsmsvc ceremony lmk restore --pkcs11-module`")
        hsm = _opened_for_backup(console, args, record)
        try:
            lmk.backup(console, backend=hsm, n=n, record=record, names=names, mailer_dir=mailers)
        finally:
            hsm.close()


def migrate(args: argparse.Namespace) -> int:
    from hsmsvc.ceremony import lmk, migration
    from hsmsvc.ceremony.console import Console
    from hsmsvc.ceremony.entry import person

    console = Console()
    officer = person(console, "Key officer's name: ", args.officer, "officer")
    old = lmk.SealedTarget(Path(args.sealed), _passphrase(console, args))
    new = lmk.SealedTarget(Path(args.new_sealed), _passphrase(console, args, prefix="new_"))
    report = migration.migrate(console, old=old, new=new, store_url=args.store, officer=officer, batch=args.batch,
                         limit=args.limit, delete_old=args.delete_old)
    return 0 if report.verified or report.remaining else 1


def algorithm_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--algorithm", choices=("AES_256", "SM4"), default="AES_256",
                   help="the LMK's algorithm: AES_256 (default) or SM4 for a national-only deployment "
                        "(soft backend; a restore names the algorithm the LMK was created with)")


def lmk_algorithm(args: argparse.Namespace) -> Algorithm:
    """The ``--algorithm`` asked for; a token LMK is AES_256 only (PKCS#11 defines no SM4)."""
    from hsmsvc.types import Algorithm

    algorithm = Algorithm(getattr(args, "algorithm", None) or "AES_256")
    if algorithm is not Algorithm.AES_256 and getattr(args, "pkcs11_module", None):
        raise InvalidInput("algorithm", "a token LMK is AES_256: PKCS#11 defines no SM4 mechanism")
    return algorithm


def _share_arguments(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("--threshold", type=int, required=required,
                   help="seal under k-of-n custodians' shares: k, 2 to 9 (instead of a passphrase)")
    p.add_argument("--share-holder", action="append", required=required,
                   help="a share holder's name, once per share, in order (n of them)")


def _opened_for_backup(console: Console, args: argparse.Namespace, record: Record) -> Backend:
    """The LMK to back up: from k holders' shares for a share-sealed file (dual control), else as before,
    said to be single control."""
    from hsmsvc.ceremony import shareseal
    from hsmsvc.hsm.soft import sharesealed

    if args.sealed and sharesealed.kind_of(Path(args.sealed)) is sharesealed.SealKind.SHARES:
        hsm, entered = shareseal.open_at_console(console, Path(args.sealed))
        detail = {"where": "console", "holders": ",".join(h.name for h in entered.holders),
                  "indices": ",".join(str(h.index) for h in entered.holders), "seal_id": entered.header.seal_id}
        record.line("", "lmk.unseal", **detail)
        record.audit("lmk.unseal", hsm, **detail)
        return hsm
    if args.sealed:
        console.say("NOTE: this LMK is passphrase-sealed: whoever has the passphrase can give it out alone "
                    "(single control, for development). `hsmsvc ceremony lmk reseal` puts it under custodians' "
                    "shares.")
    return _target(console, args, creating=False).open()


def reseal(args: argparse.Namespace) -> int:
    from hsmsvc.ceremony import shareseal
    from hsmsvc.ceremony.console import Console
    from hsmsvc.hsm.soft import sharesealed

    console = Console()
    record = _record(console, args)
    path = Path(args.sealed)
    passphrase = None
    if sharesealed.kind_of(path) is sharesealed.SealKind.PASSPHRASE:
        passphrase = _passphrase(console, args)
    header, hsm, kept = shareseal.reseal(console, path=path, passphrase=passphrase, threshold=args.threshold,
                                         holders=args.share_holder, names=args.custodian or ())
    try:
        detail = {"seal_id": header.seal_id, "threshold": f"{header.threshold} of {header.count}",
                  "holders": ",".join(h.name for h in header.holders), "lmk_kcv": header.lmk_kcv.hex().upper(),
                  "kept": str(kept)}
        record.line("", "lmk.reseal", **detail)
        record.audit("lmk.reseal", hsm, **detail)
    finally:
        hsm.close()
    console.say(f"{path} is share-sealed: seal {header.prefix}, any {header.threshold} of {header.count} shares open "
                f"it; LMK KCV {header.lmk_kcv.hex().upper()} (unchanged).")
    console.say(f"The file it replaced is kept as {kept}: it still opens the LMK as before "
                f"({'with the passphrase alone' if passphrase is not None else 'with its own shares'}). "
                "Destroy it (shred -u) under dual control once a server has been unsealed from the new file.")
    return 0


def _passphrase(console: Console, args: argparse.Namespace, prefix: str = "", confirm: bool = False) -> bytes:
    source = backend.secret_named(args, f"{prefix}passphrase")
    if source is not None:
        return source.read()
    return console.passphrase(f"{prefix.replace('_', ' ')}LMK passphrase (hidden): ", confirm)


def _target(console: Console, args: argparse.Namespace, creating: bool) -> Target:
    from hsmsvc.ceremony import lmk

    algorithm = lmk_algorithm(args)
    if args.pkcs11_module:
        if not args.token:
            raise InvalidInput("token", "the token label")
        return lmk.TokenTarget(args.pkcs11_module, args.token, backend.read_secret(args, "pin").decode())
    if not args.sealed:
        raise InvalidInput("sealed", "a sealed LMK file (or --pkcs11-module)")
    if creating and (getattr(args, "threshold", None) or getattr(args, "share_holder", None)):
        from hsmsvc.ceremony.shareseal import ShareSealedTarget

        if not args.threshold or not args.share_holder:
            raise InvalidInput("threshold", "--threshold K with one --share-holder NAME per share")
        return ShareSealedTarget(Path(args.sealed), console, threshold=args.threshold, holders=args.share_holder,
                                 algorithm=algorithm)
    return lmk.SealedTarget(Path(args.sealed), _passphrase(console, args, confirm=creating),
                            getattr(args, "scrypt_log2_n", 17), algorithm)


def _record(console: Console, args: argparse.Namespace) -> Record:
    from hsmsvc.ceremony.entry import person
    from hsmsvc.ceremony.record import Record

    journal = args.journal or (str(args.sealed) + ".ceremony.log" if getattr(args, "sealed", None) else None)
    return Record(person(console, "Key officer's name: ", args.officer, "officer"), Path(journal) if journal else None,
                  getattr(args, "store", None))


def _custodian_count(args: argparse.Namespace) -> int:
    """How many custodians; refused before anyone types anything."""
    from hsmsvc.ceremony.entry import check_custodians

    n = args.custodians or len(args.custodian or [])
    if not n:
        raise InvalidInput("custodians", "how many (--custodians N, or one --custodian NAME each)")
    check_custodians(int(n))
    return int(n)
