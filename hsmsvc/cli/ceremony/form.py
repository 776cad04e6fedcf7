"""``hsmsvc ceremony zmk|tmk form``: form a key through the server (:func:`hsmsvc.ceremony.forming.form`)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from hsmsvc.errors import InvalidInput

if TYPE_CHECKING:
    from hsmsvc_client import ClientTls


def add_arguments(parser: argparse.ArgumentParser, kind: str) -> None:
    steps = parser.add_subparsers(dest=f"{kind}_step", required=True)
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
    p.set_defaults(command_key=kind)


def _tls(pair: str, args: argparse.Namespace) -> ClientTls:
    from hsmsvc_client import ClientTls

    cert, _, key = pair.partition(",")
    if not key:
        raise InvalidInput("credential", "CERT,KEY (two PEM files)")
    return ClientTls(args.ca, cert, key, args.server_name)


def run(args: argparse.Namespace) -> int:
    from hsmsvc.ceremony import forming
    from hsmsvc.ceremony.console import Console
    from hsmsvc.types import KeyType

    officers = [_tls(o, args) for o in args.officer_tls or []]
    if len(officers) != 2:
        raise InvalidInput("officer", "exactly two officers (dual control): --officer CERT,KEY twice")
    kind = KeyType.ZMK if args.command_key == "zmk" else KeyType.TMK
    template = forming.template(kind, key_id=args.key_id, alias=args.alias or "", algorithm=args.algorithm,
                                usage=args.usage, mode_of_use=args.mode_of_use, zone=args.zone or "",
                                legacy_types=[t for t in (args.legacy_types or "").split(",") if t])
    fingerprint = bytes.fromhex(args.ctk_fingerprint) if args.ctk_fingerprint else None
    forming.form(Console(), address=args.server, officers=(officers[0], officers[1]),
                 custodians=[_tls(c, args) for c in args.custodian_tls], template=template, ctk=args.transport_key,
                 fingerprint=fingerprint)
    return 0
