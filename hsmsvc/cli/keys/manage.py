"""The ``hsmsvc keys`` commands, each one or a few KeyService calls through the client SDK.

Key material never passes through here in clear: a TR-31 block or a legacy
cryptogram comes in from a file and a key block goes out to one, wrapped under a
KEK the server holds. A key from clear components is formed at a key ceremony
under dual control (``hsmsvc ceremony zmk|tmk ...``), not here.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hsmsvc.cli import remote
from hsmsvc.cli.keys import options
from hsmsvc.cli.keys.render import LIST, REPORT, Format, key_row, write
from hsmsvc.errors import InvalidInput
from hsmsvc_client.v1 import key_service_pb2 as m
from hsmsvc_client.v1 import types_pb2 as pb

if TYPE_CHECKING:
    from hsmsvc_client import Client

__all__ = ["COMMANDS"]

_HEX = re.compile(r"[0-9A-Fa-f]+")


def _format(args: argparse.Namespace) -> Format:
    if getattr(args, "json", False):
        return Format.JSON
    return Format.CSV if getattr(args, "csv", False) else Format.TABLE


def _one(args: argparse.Namespace, key: pb.KeyInfo, said: str = "") -> int:
    row = key_row(key)
    if getattr(args, "json", False):
        json.dump({k: v for k, v in row.items() if k != "age"}, sys.stdout, indent=2)
        print()
        return 0
    if said:
        print(said)
    for k, v in row.items():
        if k not in ("age_seconds",) and v not in ("", None):
            print(f"  {k:<14}{v}")
    return 0


def _pages(c: Client, args: argparse.Namespace) -> Iterator[pb.KeyInfo]:
    token = ""
    while True:
        r = c.keys.ListKeys(m.ListKeysRequest(key_type=options.enum_value("type", args.type), zone=args.zone or "",
                                              page_size=1000, page_token=token), timeout=args.timeout)
        yield from r.keys
        token = r.next_page_token
        if not token:
            return


def list_keys(args: argparse.Namespace, c: Client) -> int:
    write([key_row(k) for k in _pages(c, args)], _format(args), LIST)
    return 0


def report(args: argparse.Namespace, c: Client) -> int:
    write([key_row(k) for k in _pages(c, args)], _format(args), REPORT)
    return 0


def show(args: argparse.Namespace, c: Client) -> int:
    r = c.keys.GetKey(m.GetKeyRequest(key=options.key_ref(args.name, args.version)), timeout=args.timeout)
    return _one(args, r.key)


def generate(args: argparse.Namespace, c: Client) -> int:
    r = c.keys.GenerateKey(m.GenerateKeyRequest(template=options.template(args)), timeout=args.timeout)
    return _one(args, r.key, f"generated {r.key.key_id} v{r.key.version}")


def _read(path: str, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError:
        raise InvalidInput(what, f"{path}: cannot be read") from None
    return data.strip()


def import_key(args: argparse.Namespace, c: Client) -> int:
    if bool(args.block_file) == bool(args.cryptogram_file):
        raise InvalidInput("--block-file", "give a TR-31 block file or --cryptogram-file (a K0 KEK's legacy form)")
    if args.block_file:
        wrapped = _read(args.block_file, "--block-file")
    else:
        text = _read(args.cryptogram_file, "--cryptogram-file").decode("ascii", "replace")
        if not _HEX.fullmatch(text) or len(text) % 2:
            raise InvalidInput("--cryptogram-file", "hex digits (the cryptogram under the K0 KEK)")
        wrapped = bytes.fromhex(text)
    kcv = b""
    if args.kcv:
        if not _HEX.fullmatch(args.kcv) or len(args.kcv) % 2:
            raise InvalidInput("--kcv", "hex digits, e.g. 1A2B3C")
        kcv = bytes.fromhex(args.kcv)
    r = c.keys.ImportKey(m.ImportKeyRequest(
        kek=options.key_ref(args.kek), wrapped_key=wrapped, kcv=kcv, template=options.template(args),
        kcv_method=options.enum_value("kcv_method", args.kcv_method)), timeout=args.timeout)
    return _one(args, r.key, f"imported {r.key.key_id} v{r.key.version}")


def export_key(args: argparse.Namespace, c: Client) -> int:
    out = Path(args.output)
    if out.exists() and not args.force:
        raise InvalidInput("--output", f"{out}: exists (--force to replace it)")
    r = c.keys.ExportKey(m.ExportKeyRequest(kek=options.key_ref(args.kek), key=options.key_ref(args.name, args.version),
                                            kcv_method=options.enum_value("kcv_method", args.kcv_method)),
                         timeout=args.timeout)
    wrapped = bytes(r.wrapped_key)
    # A TR-31 block is printable ASCII; a K0 KEK's legacy cryptogram is binary, written as hex.
    text = wrapped if all(0x20 < b < 0x7F for b in wrapped) else wrapped.hex().upper().encode()
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(text + b"\n")
    except OSError as e:
        raise InvalidInput("--output", f"{out}: cannot be written ({e.strerror})") from None
    kcv = bytes(r.kcv).hex().upper()
    if args.json:
        print(json.dumps({"key": args.name, "kek": args.kek, "output": str(out), "kcv": kcv}))
    else:
        print(f"exported {args.name} under {args.kek} to {out}; KCV {kcv}")
    return 0


def rotate(args: argparse.Namespace, c: Client) -> int:
    if args.lifetime < 0 or args.max_uses < 0:
        raise InvalidInput("--lifetime" if args.lifetime < 0 else "--max-uses", "not negative")
    r = c.keys.RotateKey(m.RotateKeyRequest(key=options.key_ref(args.name), lifetime_seconds=args.lifetime,
                                            max_uses=args.max_uses), timeout=args.timeout)
    return _one(args, r.key, f"rotated {r.key.key_id}: v{r.key.version} made, v{r.previous_version} now RETIRING")


def revoke(args: argparse.Namespace, c: Client) -> int:
    version = args.version
    if not version:  # the version active now, named explicitly, so the state change is of that one
        version = c.keys.GetKey(m.GetKeyRequest(key=options.key_ref(args.name)), timeout=args.timeout).key.version
    r = c.keys.UpdateKeyState(m.UpdateKeyStateRequest(key=options.key_ref(args.name, version),
                                                      state=pb.KEY_STATE_REVOKED, reason=args.reason),
                              timeout=args.timeout)
    return _one(args, r.key, f"revoked {r.key.key_id} v{r.key.version}")


def _output(p: argparse.ArgumentParser, csv: bool = False) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true", help="JSON instead of text")
    if csv:
        g.add_argument("--csv", action="store_true", help="CSV with a header line instead of a table")


def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--type", help="only this key type, e.g. ZPK")
    p.add_argument("--zone", help="only this zone")


def add_arguments(sub: Any) -> None:
    """One subparser per command, each with the server options."""
    def add(name: str, help: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help)
        remote.add_arguments(p)
        return p

    p = add("list", "key versions you may see (ListKeys)")
    _filters(p)
    _output(p, csv=True)
    p = add("report", "every key: type, algorithm, zone, state, KCV, uses, age, next rotation, expiry")
    _filters(p)
    _output(p, csv=True)
    p = add("show", "one key version (GetKey)")
    p.add_argument("name", metavar="KEY", help="key id, or alias:NAME")
    p.add_argument("--version", type=int, default=0, help="default: the active one")
    _output(p)
    p = add("generate", "a new random key from a template (GenerateKey)")
    options.add_template(p, required=True)
    _output(p)
    p = add("import", "a key under a KEK: a TR-31 block file, or a K0 KEK's legacy cryptogram (ImportKey)")
    p.add_argument("--kek", required=True, help="the KEK (ZMK or TMK) id, or alias:NAME")
    p.add_argument("--block-file", help="file holding the TR-31 key block (ASCII)")
    p.add_argument("--cryptogram-file", help="file holding the legacy cryptogram in hex (K0 KEK)")
    p.add_argument("--kcv", help="the KCV the sender stated, hex")
    p.add_argument("--kcv-method", help="the stated KCV's form: CMAC or ECB")
    options.add_template(p, required=False)
    _output(p)
    p = add("export", "a key wrapped under a KEK, to a file (ExportKey)")
    p.add_argument("name", metavar="KEY", help="key id, or alias:NAME")
    p.add_argument("--kek", required=True, help="the KEK (ZMK or TMK) id, or alias:NAME")
    p.add_argument("--output", required=True, help="file to write the key block to (mode 0600)")
    p.add_argument("--version", type=int, default=0, help="default: the active one")
    p.add_argument("--kcv-method", help="the KCV's form: CMAC or ECB")
    p.add_argument("--force", action="store_true", help="replace an existing --output file")
    _output(p)
    p = add("rotate", "make the next version; the active one becomes RETIRING (RotateKey)")
    p.add_argument("name", metavar="KEY", help="key id, or alias:NAME")
    p.add_argument("--lifetime", type=int, default=0, help="the new version's lifetime in seconds (0: none)")
    p.add_argument("--max-uses", type=int, default=0, help="the new version's use limit (0: none)")
    _output(p)
    p = add("revoke", "revoke one version (UpdateKeyState REVOKED)")
    p.add_argument("name", metavar="KEY", help="key id, or alias:NAME")
    p.add_argument("--version", type=int, default=0, help="default: the active one")
    p.add_argument("--reason", required=True, help="why, e.g. the incident ticket (at most 200 characters)")
    _output(p)


COMMANDS = {"list": list_keys, "report": report, "show": show, "generate": generate, "import": import_key,
            "export": export_key, "rotate": rotate, "revoke": revoke}
