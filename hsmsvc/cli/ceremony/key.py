"""``hsmsvc ceremony key form``: a ZMK or TMK from components typed at the backend, offline
(:func:`hsmsvc.ceremony.offline.form`): the way in for a key stronger than the CTK can carry."""

from __future__ import annotations

import argparse
from pathlib import Path

from hsmsvc.cli import backend
from hsmsvc.errors import HsmsvcError, InvalidInput


def add_arguments(parser: argparse.ArgumentParser, officer: str | None) -> None:
    steps = parser.add_subparsers(dest="key_step", required=True)
    p = steps.add_parser("form", help="form a ZMK or TMK of any strength from custodians' components, at the "
                                      "backend (offline, as the LMK ceremony)")
    backend.add_arguments(p)
    p.add_argument("--store", required=True, help="the key store (database URL) the servers use")
    p.add_argument("--key-id", required=True)
    p.add_argument("--alias")
    p.add_argument("--key-type", choices=("ZMK", "TMK"), default="ZMK")
    p.add_argument("--algorithm", required=True, help="TDES_2KEY, TDES_3KEY, AES_128, AES_192, AES_256 or SM4")
    p.add_argument("--usage", choices=("K0", "K1"), default="K1",
                   help="K1: TR-31 key blocks (default); K0: the legacy ECB form")
    p.add_argument("--zone", default="", help="the zone (ZMK) or terminal group (TMK)")
    p.add_argument("--legacy-types", help="K0 only: key types it may carry in ECB form, e.g. ZPK,MAK")
    p.add_argument("--legacy-form", choices=("X917_ECB", "PAYSHIELD_VARIANT", "HSMSVC_VARIANT"),
                   help="K0 only: the form the partner uses (docs/operations.md, legacy key forms)")
    p.add_argument("--custodians", type=int, help="how many custodians (2 to 9)")
    p.add_argument("--custodian", action="append", help="a custodian's name, in order (else asked)")
    p.add_argument("--officer", default=officer, help="the key officer running the ceremony (else asked)")
    p.add_argument("--journal", help="ceremony journal file (default: beside the sealed file)")


def run(args: argparse.Namespace) -> int:
    from hsmsvc.ceremony import offline
    from hsmsvc.ceremony.console import Console
    from hsmsvc.ceremony.entry import check_custodians, person
    from hsmsvc.ceremony.record import JOURNALED, Record, reason
    from hsmsvc.hsm.model import LegacyForm
    from hsmsvc.keys.hierarchy import kek_spec
    from hsmsvc.types import KeyType

    console = Console()
    journal = args.journal or (str(args.sealed) + ".ceremony.log" if args.sealed else None)
    record = Record(person(console, "Key officer's name: ", args.officer, "officer"),
                    Path(journal) if journal else None, args.store)
    try:
        try:
            legacy = frozenset(KeyType(t.strip()) for t in (args.legacy_types or "").split(",") if t.strip())
        except ValueError:
            raise InvalidInput("legacy_types", "key types, e.g. ZPK,MAK") from None
        # Everything that can be refused is refused before anyone types a component.
        form = LegacyForm[args.legacy_form] if args.legacy_form else LegacyForm.NONE
        spec = kek_spec(KeyType(args.key_type), key_id=args.key_id, algorithm=args.algorithm, usage=args.usage,
                        zone=args.zone, legacy_types=legacy, legacy_form=form)
        n = args.custodians or len(args.custodian or [])
        if not n:
            raise InvalidInput("custodians", "how many (--custodians N, or one --custodian NAME each)")
        check_custodians(int(n))
        with backend.opened(args, migrate=True) as (hsm, store):
            offline.form(console, store=store, backend=hsm, spec=spec, n=int(n), record=record,
                         names=args.custodian or [], alias=args.alias or None, legacy_types=legacy,
                         legacy_form=form)
    except BaseException as e:
        # What stopped it before the ceremony began is journaled too; the ceremony journals its own end.
        if JOURNALED not in getattr(e, "__notes__", ()) and record.journal is not None \
                and not isinstance(e, SystemExit):
            try:
                record.line("", "key-form.abandoned", reason=f"before it began: {reason(e)}")
            except HsmsvcError:
                pass  # the error that stopped it is the one to report
        raise
    return 0
