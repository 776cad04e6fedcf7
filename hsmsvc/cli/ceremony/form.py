"""``hsmsvc ceremony zmk|tmk form``: form a key through the server (:func:`hsmsvc.ceremony.forming.form`)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from hsmsvc.errors import InvalidInput

if TYPE_CHECKING:
    from hsmsvc.ceremony.console import Console
    from hsmsvc_client.v1 import key_service_pb2 as km
    from hsmsvc_client import ClientTls


def _server(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", required=True, help="hsmsvc address, host:port")
    p.add_argument("--ca", required=True, help="CA certificate that signed the server (PEM)")
    p.add_argument("--server-name", help="the name in the server's certificate, if not its address")


def _own(p: argparse.ArgumentParser, who: str) -> None:
    _server(p)
    p.add_argument("--cert", required=True, help=f"{who}'s own certificate (PEM)")
    p.add_argument("--key", required=True, help=f"{who}'s own private key (PEM)")


def add_arguments(parser: argparse.ArgumentParser, kind: str) -> None:
    steps = parser.add_subparsers(dest=f"{kind}_step", required=True)
    p = steps.add_parser("form", help=f"form a {kind.upper()} at one console (every credential in one process)")
    _server(p)
    p.add_argument("--officer", dest="officer_tls", action="append",
                   help="a key manager's CERT,KEY; give two (dual control)")
    p.add_argument("--custodian", dest="custodian_tls", action="append", required=True,
                   help="a custodian's CERT,KEY, one per component, in order")
    _template(p)
    p.set_defaults(command_key=kind)
    # One person a step, each with only their own credential (hsmsvc.ceremony.steps).
    p = steps.add_parser("start", help="first officer: start a ceremony; prints its id")
    _own(p, "the first key manager")
    p.add_argument("--components", type=int, default=2, help="how many custodians' components (2 to 9)")
    _template(p)
    p = steps.add_parser("approve", help="second officer: read a ceremony and approve it")
    _own(p, "the approving key manager")
    p.add_argument("--ceremony-id", required=True)
    p.add_argument("--yes", action="store_true", help="approve without asking (the summary is still printed)")
    p = steps.add_parser("component", help="custodian: enter your component, sent under the CTK")
    _own(p, "the custodian")
    p.add_argument("--ceremony-id", required=True)
    p.add_argument("--ctk-fingerprint", help="the CTK fingerprint in the ceremony script (else asked)")
    p = steps.add_parser("status", help="where a ceremony stands")
    _own(p, "an officer, custodian or auditor")
    p.add_argument("--ceremony-id", required=True)
    p = steps.add_parser("cancel", help="stop a ceremony; its wrapped components are discarded")
    _own(p, "a key manager")
    p.add_argument("--ceremony-id", required=True)
    p.add_argument("--reason", default="cancelled by an officer")
    parser.set_defaults(command_key=kind)


def _template(p: argparse.ArgumentParser) -> None:
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
    p.add_argument("--legacy-form", choices=("X917_ECB", "PAYSHIELD_VARIANT", "HSMSVC_VARIANT"),
                   help="K0 only, and needed: the form keys cross this KEK in (X917_ECB: plain ECB, UnionPay; "
                        "PAYSHIELD_VARIANT: key schemes U/T; HSMSVC_VARIANT: hsmsvc's own table)")


def _tls(pair: str, args: argparse.Namespace) -> ClientTls:
    from hsmsvc_client import ClientTls

    cert, _, key = pair.partition(",")
    if not key:
        raise InvalidInput("credential", "CERT,KEY (two PEM files)")
    return ClientTls(args.ca, cert, key, args.server_name)


def run(args: argparse.Namespace) -> int:
    from hsmsvc.ceremony import steps
    from hsmsvc.ceremony.console import Console
    from hsmsvc_client import Client, ClientTls

    step = getattr(args, f"{args.command_key}_step")
    console = Console()
    if step == "form":
        return _form(args, console)
    fingerprint = bytes.fromhex(args.ctk_fingerprint) if getattr(args, "ctk_fingerprint", None) else None
    with Client(args.server, ClientTls(args.ca, args.cert, args.key, args.server_name)) as client:
        if step == "start":
            steps.start(console, client, template=_template_of(args), ctk=args.transport_key, count=args.components,
                        fingerprint=fingerprint)
        elif step == "approve":
            steps.approve(console, client, args.ceremony_id, confirmed=args.yes)
        elif step == "component":
            steps.add_component(console, client, args.ceremony_id, fingerprint=fingerprint)
        elif step == "status":
            steps.status(console, client, args.ceremony_id)
        else:
            steps.cancel(console, client, args.ceremony_id, reason=args.reason)
    return 0


def _template_of(args: argparse.Namespace) -> km.KeyTemplate:
    from hsmsvc.ceremony import forming
    from hsmsvc.types import KeyType

    kind = KeyType.ZMK if args.command_key == "zmk" else KeyType.TMK
    return forming.template(kind, key_id=args.key_id, alias=args.alias or "", algorithm=args.algorithm,
                            usage=args.usage, mode_of_use=args.mode_of_use, zone=args.zone or "",
                            legacy_types=[t for t in (args.legacy_types or "").split(",") if t],
                            legacy_form=args.legacy_form or "")


def _form(args: argparse.Namespace, console: Console) -> int:
    from hsmsvc.ceremony import forming

    officers = [_tls(o, args) for o in args.officer_tls or []]
    if len(officers) != 2:
        raise InvalidInput("officer", "exactly two officers (dual control): --officer CERT,KEY twice")
    fingerprint = bytes.fromhex(args.ctk_fingerprint) if args.ctk_fingerprint else None
    forming.form(console, address=args.server, officers=(officers[0], officers[1]),
                 custodians=[_tls(c, args) for c in args.custodian_tls], template=_template_of(args),
                 ctk=args.transport_key, fingerprint=fingerprint)
    return 0
