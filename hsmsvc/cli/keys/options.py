"""The options of ``hsmsvc keys``: a key's name, a key template, and the API's enums by their short names."""

from __future__ import annotations

import argparse
from typing import Any

from hsmsvc.errors import InvalidInput
from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import types_pb2 as pb

__all__ = ["ENUMS", "add_template", "enum_value", "key_ref", "template"]

# option -> (enum, prefix)
ENUMS: dict[str, tuple[Any, str]] = {
    "type": (pb.KeyType, "KEY_TYPE_"),
    "algorithm": (pb.Algorithm, "ALGORITHM_"),
    "usage": (pb.KeyUsage, "KEY_USAGE_"),
    "mode": (pb.ModeOfUse, "MODE_OF_USE_"),
    "exportability": (pb.Exportability, "EXPORTABILITY_"),
    "legacy_form": (pb.LegacyForm, "LEGACY_FORM_"),
    "kcv_method": (pb.KcvMethod, "KCV_METHOD_"),
    "state": (pb.KeyState, "KEY_STATE_"),
}


def choices(option: str) -> list[str]:
    enum, prefix = ENUMS[option]
    return [n.removeprefix(prefix) for n in enum.keys() if not n.endswith("_UNSPECIFIED")]


def enum_value(option: str, name: str | None) -> Any:
    """``("type", "zpk")`` -> ``KEY_TYPE_ZPK``'s number; None -> 0 (unspecified); anything else a one-line error.

    Typed Any: each generated enum is its own type in the stubs, a plain int at run time."""
    if not name:
        return 0
    enum, prefix = ENUMS[option]
    full = prefix + name.upper().replace("-", "_")
    if full.endswith("_UNSPECIFIED") or full not in enum.keys():
        raise InvalidInput(f"--{option.replace('_', '-')}", f"one of {', '.join(choices(option))}")
    return enum.Value(full)


def key_ref(name: str, version: int = 0) -> pb.KeyRef:
    """A key id, or ``alias:NAME``; ``version`` 0 is the one active now."""
    if version < 0:
        raise InvalidInput("--version", "a positive version, or none for the active one")
    if name.startswith("alias:"):
        return pb.KeyRef(alias=name[len("alias:"):], version=version)
    return pb.KeyRef(key_id=name, version=version)


def add_template(p: argparse.ArgumentParser, *, required: bool) -> None:
    """The KeyTemplate options; ``required``: type, algorithm, usage, mode and exportability must be given
    (an import under a K1 KBPK may leave the algorithm to the block's header)."""
    p.add_argument("--id", dest="key_id", default="", help="the key's id (default: hsmsvc chooses one)")
    p.add_argument("--alias", default="", help="an alias callers may use")
    p.add_argument("--type", required=True, help=f"key type: {', '.join(choices('type'))}")
    p.add_argument("--algorithm", required=required, help=f"{', '.join(choices('algorithm'))}")
    p.add_argument("--usage", required=True, help=f"TR-31 usage: {', '.join(choices('usage'))}")
    p.add_argument("--mode", required=True, help=f"mode of use: {', '.join(choices('mode'))}")
    p.add_argument("--exportability", required=True, help="EXPORTABLE or NON_EXPORTABLE")
    p.add_argument("--zone", default="", help="the key's zone")
    p.add_argument("--decimalization-table", default="", help="IBM 3624 PVKs: 16 digits")
    p.add_argument("--lifetime", type=int, default=0, help="seconds until it expires (0: never)")
    p.add_argument("--max-uses", type=int, default=0, help="uses at which a new version is made (0: no limit)")
    p.add_argument("--legacy-type", action="append", default=[],
                   help="K0 ZMKs and TMKs: a key type it may carry in the legacy form (repeatable)")
    p.add_argument("--legacy-form", help=f"K0 ZMKs and TMKs: {', '.join(choices('legacy_form'))}")


def template(args: argparse.Namespace) -> key_pb.KeyTemplate:
    if args.lifetime < 0 or args.max_uses < 0:
        raise InvalidInput("--lifetime" if args.lifetime < 0 else "--max-uses", "not negative")
    return key_pb.KeyTemplate(
        key_id=args.key_id, alias=args.alias, key_type=enum_value("type", args.type),
        algorithm=enum_value("algorithm", args.algorithm), usage=enum_value("usage", args.usage),
        mode_of_use=enum_value("mode", args.mode), exportability=enum_value("exportability", args.exportability),
        zone=args.zone, decimalization_table=args.decimalization_table, lifetime_seconds=args.lifetime,
        max_uses=args.max_uses, legacy_key_types=[enum_value("type", t) for t in args.legacy_type],
        legacy_form=enum_value("legacy_form", args.legacy_form),
    )
