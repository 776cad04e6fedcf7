"""``hsmsvc dev seed``: the published demo keys, or a ZMK or TMK from known components; development only.

``dev seed --zmk|--tmk KEY_ID`` forms a key from components the integrator holds in clear (a
partner's test key sheet). It runs only with ``--insecure-dev`` given explicitly, the flag that
also puts ``serve`` in its development mode: a production store's ZMKs are formed with
``hsmsvc ceremony zmk form`` under dual control, and this command is the one way around that.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hsmsvc.cli import backend
from hsmsvc.errors import InvalidInput

if TYPE_CHECKING:
    from hsmsvc.hsm.model import LegacyForm
    from hsmsvc.types import KeyType

HELP = "development helpers"
_FORMS = ("X917_ECB", "PAYSHIELD_VARIANT", "HSMSVC_VARIANT")
_KEY_OPTIONS = ("component_file", "component", "legacy_types", "legacy_form", "alias")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    dev = parser.add_subparsers(dest="dev_command", required=True)
    p = dev.add_parser("seed", help="store the published demo keys (insecure: their values are public), or with "
                                    "--zmk/--tmk a key formed from known components")
    backend.add_arguments(p)
    p.add_argument("--store", required=True, help="database URL")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--zmk", metavar="KEY_ID", help="form this ZMK from components instead of the demo keys")
    kind.add_argument("--tmk", metavar="KEY_ID", help="form this TMK from components instead of the demo keys")
    p.add_argument("--insecure-dev", action="store_true",
                   help="required with --zmk/--tmk: this store is for development, never production")
    p.add_argument("--component-file", action="append", metavar="FILE",
                   help="a component in hex (spaces allowed), one per file; repeat, 2 to 9")
    p.add_argument("--component", action="append", metavar="HEX",
                   help="a component in hex; repeat. Visible to ps and kept in shell history: prefer files or "
                        "the prompt")
    p.add_argument("--component-count", type=int, default=2,
                   help="without --component-file or --component: how many to type at a hidden prompt (default 2)")
    p.add_argument("--algorithm", default="TDES_2KEY", help="TDES_2KEY (default), TDES_3KEY, AES_128/192/256, SM4")
    p.add_argument("--usage", choices=("K0", "K1"), default="K1",
                   help="K1: TR-31 key blocks (default); K0: the legacy ECB form")
    p.add_argument("--legacy-types", help="K0 only, and needed: key types it may carry in ECB form, e.g. ZPK,MAK")
    p.add_argument("--legacy-form", choices=_FORMS,
                   help="K0 only, and needed: X917_ECB (plain ECB, UnionPay), PAYSHIELD_VARIANT (schemes U/T) "
                        "or HSMSVC_VARIANT (hsmsvc's own table, for old ZMKs)")
    p.add_argument("--zone", default="", help="the zone (ZMK) or terminal group (TMK)")
    p.add_argument("--alias")


def run(args: argparse.Namespace) -> int:
    from hsmsvc import devseed

    if args.zmk or args.tmk:
        return _form(args)
    given = [n for n in _KEY_OPTIONS if getattr(args, n)]
    if given:
        raise InvalidInput(given[0], "only with --zmk or --tmk")
    with backend.opened(args, migrate=True) as (hsm, store):
        for line in devseed.seed(store, hsm):
            print(line)
    return 0


def _form(args: argparse.Namespace) -> int:
    from hsmsvc import devseed
    from hsmsvc.ceremony.console import zeroize
    from hsmsvc.types import KeyType

    # The guard comes first: nothing is read, opened or created without it.
    if not args.insecure_dev:
        raise InvalidInput("insecure_dev", "--zmk and --tmk form a key from clear components: development "
                                           "only, so give --insecure-dev (production: hsmsvc ceremony zmk form)")
    kind = KeyType.ZMK if args.zmk else KeyType.TMK
    legacy = _legacy_types(args.legacy_types)
    spec_form = _legacy_form(args.legacy_form)
    spec = devseed.kek_spec(kind, key_id=args.zmk or args.tmk, algorithm=args.algorithm, usage=args.usage,
                            zone=args.zone, legacy_types=legacy, legacy_form=_legacy_form(args.legacy_form))
    # Every component is read and checked before the store is opened, so a bad one leaves nothing.
    parts = _components(args, spec.algorithm.key_length)
    try:
        with backend.opened(args, migrate=True) as (hsm, store):
            lines = devseed.form_kek(store, hsm, spec=spec, components=parts, alias=args.alias or None,
                                     legacy_types=legacy, legacy_form=spec_form)
    finally:
        for p in parts:
            zeroize(p)
    print("\n".join(lines))
    print(f"hsmsvc: warning: development only: {kind.value} {spec.key_id}'s components are in clear "
          f"{_where(args)}; never use this key, or its components, in production", file=sys.stderr)
    return 0


def _legacy_form(name: str | None) -> LegacyForm:
    from hsmsvc.hsm.model import LegacyForm

    return LegacyForm[name] if name else LegacyForm.NONE


def _legacy_types(text: str | None) -> frozenset[KeyType]:
    from hsmsvc.types import KeyType

    try:
        return frozenset(KeyType(t.strip()) for t in (text or "").split(",") if t.strip())
    except ValueError:
        raise InvalidInput("legacy_types", "key types, e.g. ZPK,MAK") from None


def _where(args: argparse.Namespace) -> str:
    if args.component:
        return "in this command line (visible to ps) and your shell history"
    if args.component_file:
        return "in the component files"
    return "on the key sheet they were typed from"


def _components(args: argparse.Namespace, length: int) -> list[bytearray]:
    """The components as buffers the caller zeroizes; each checked for hex and length."""
    from hsmsvc.ceremony.console import Console, parse_hex, zeroize

    if args.component_file and args.component:
        raise InvalidInput("component", "give --component-file or --component, not both")
    raws: list[bytearray] = []
    parts: list[bytearray] = []
    try:
        if args.component_file:
            for f in args.component_file:
                try:
                    raws.append(bytearray(Path(f).read_bytes()))
                except OSError:
                    raise InvalidInput("component_file", f"cannot read {f}") from None
        elif args.component:
            raws = [bytearray(c.encode()) for c in args.component]
        else:
            if not 2 <= args.component_count <= 9:
                raise InvalidInput("component_count", "2 to 9")
            console = Console(out=sys.stderr)
            for i in range(args.component_count):
                raws.append(console.secret(f"component {i + 1} of {args.component_count} (hex, hidden): "))
        if not 2 <= len(raws) <= 9:
            raise InvalidInput("components", "2 to 9 (dual control)")
        for i, raw in enumerate(raws, 1):
            # Line ends count as the spaces parse_hex skips (in place: no copy left to wipe).
            for j, c in enumerate(raw):
                if c in b"\r\n":
                    raw[j] = 0x20
            part = parse_hex(raw, f"component {i}")
            parts.append(part)
            if len(part) != length:
                raise InvalidInput(f"component {i}", f"{2 * length} hex digits for {args.algorithm}")
        return parts
    except BaseException:
        for p in parts:
            zeroize(p)
        raise
    finally:
        for r in raws:
            zeroize(r)
