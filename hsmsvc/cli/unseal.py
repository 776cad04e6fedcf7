"""``hsmsvc unseal``: a custodian gives their share of a share-sealed LMK to a server that started sealed.

The custodian is who the client certificate names (``--cert``/``--key``), never a
name typed here: the server checks the custodian role in its policy and takes one
share per custodian. The share is typed with echo off. Its check digits and its
seal (the first digits, which must be the server's seal's) are checked here first,
so a mistyped share or the wrong envelope is caught before anything is sent.

``--share-file`` and ``--share-fd`` are for automation and are weaker: the share
then sits in a file or another process, outside its holder's head and envelope.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from hsmsvc.errors import InvalidInput

HELP = "give your share of a share-sealed LMK to a server that started sealed (dual control)"
DESCRIPTION = __doc__
TRIES = 3


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", required=True, help="hsmsvc address, host:port")
    p.add_argument("--ca", help="CA certificate that signed the server (PEM)")
    p.add_argument("--cert", help="your client certificate (PEM): it names you, the custodian")
    p.add_argument("--key", help="its private key (PEM)")
    p.add_argument("--server-name", help="the name in the server's certificate, if not its address")
    p.add_argument("--insecure-dev", action="store_true",
                   help="plaintext, to a --insecure-dev server on loopback: development only")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--share-file", help="read the share from this file (automation; weaker than typing it)")
    src.add_argument("--share-fd", type=int, help="read the share from this inherited file descriptor (weaker)")
    p.add_argument("--status", action="store_true", help="only show how many shares are in")


def _read(args: argparse.Namespace) -> bytearray:
    try:
        if args.share_fd is not None:
            with os.fdopen(args.share_fd, "rb", closefd=True) as f:
                return bytearray(f.read())
        return bytearray(Path(args.share_file).read_bytes())
    except OSError:
        raise InvalidInput("share", "cannot be read from that file or descriptor") from None


def _share(args: argparse.Namespace, seal: str) -> bytearray:
    """The share's text, checked here (check digits, seal); a person may retype a mistyped one."""
    from hsmsvc.ceremony.console import Console, zeroize
    from hsmsvc.hsm.soft import shares

    console = Console()
    automated = args.share_file is not None or args.share_fd is not None
    for _ in range(1 if automated else TRIES):
        raw = _read(args) if automated else console.secret("Your share (hidden): ")
        try:
            parsed = shares.parse(raw)
        except InvalidInput as e:
            zeroize(raw)
            if automated:
                raise
            print(f"  {e.reason}; again")
            continue
        parsed.wipe()
        if parsed.seal != seal:
            zeroize(raw)
            raise InvalidInput("share", f"it is a share of LMK seal {parsed.seal}; this server's LMK is seal {seal}: "
                                        "is it the right envelope? Nothing was sent")
        return raw
    raise InvalidInput("share", shares.MISTYPED)


def run(args: argparse.Namespace) -> int:
    from hsmsvc.ceremony.console import zeroize
    from hsmsvc_client.v1 import ceremony_service_pb2 as m
    from hsmsvc_client import Client, ClientTls

    if args.insecure_dev:
        from hsmsvc.api.config import is_loopback

        if not is_loopback(args.server):
            raise InvalidInput("insecure_dev", "a share goes in plaintext only to a loopback address")
        client = Client.insecure(args.server, retries=0)
    else:
        if not (args.ca and args.cert and args.key):
            raise InvalidInput("tls", "--ca, --cert and --key (your custodian certificate), or --insecure-dev")
        client = Client(args.server, ClientTls(args.ca, args.cert, args.key, args.server_name), retries=0)
    with client:
        st = client.ceremony.GetSealStatus(m.GetSealStatusRequest()).status
        if not st.seal_id:
            print("the server's LMK is not share-sealed: there is nothing to unseal", file=sys.stderr)
            return 1
        seal = st.seal_id[:8]
        if not st.sealed:
            print(f"LMK seal {seal}: not sealed, the server is serving")
            return 0
        print(f"LMK seal {seal}: {st.entered} of {st.threshold} shares entered ({st.share_count} were made)")
        if args.status:
            return 0
        share = _share(args, seal)
        try:
            out = client.ceremony.SubmitUnsealShare(m.SubmitUnsealShareRequest(share=bytes(share))).status
        finally:
            zeroize(share)
    if out.sealed:
        print(f"{out.entered} of {out.threshold} shares entered; the LMK opens when {out.threshold - out.entered} "
              "more custodian(s) give theirs")
    else:
        print(f"{out.threshold} of {out.threshold} shares entered: the LMK is open and the server is serving")
    return 0
