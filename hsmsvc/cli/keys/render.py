"""KeyInfo as rows: a text table, JSON or CSV. Metadata only; a KeyInfo never carries key material."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from enum import Enum, unique
from typing import Any, Final, TextIO

from hsmsvc_client.v1 import types_pb2 as pb

__all__ = ["LIST", "REPORT", "Format", "enum_name", "key_row", "write"]


@unique
class Format(Enum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


def enum_name(enum: Any, value: int, prefix: str) -> str:
    """``pb.KeyType, 3, "KEY_TYPE_"`` -> ``ZPK``; unset -> ``""``."""
    return "" if value == 0 else str(enum.Name(value)).removeprefix(prefix)


def _time(msg: Any, field: str) -> datetime | None:
    if not msg.HasField(field):
        return None
    return getattr(msg, field).ToDatetime(tzinfo=timezone.utc)  # type: ignore[no-any-return]


def _iso(t: datetime | None) -> str:
    return t.isoformat(timespec="seconds").replace("+00:00", "Z") if t else ""


def _age(seconds: int) -> str:
    d, rest = divmod(seconds, 86400)
    h, rest = divmod(rest, 3600)
    m = rest // 60
    return f"{d}d{h}h" if d else f"{h}h{m}m" if h else f"{m}m"


def key_row(k: pb.KeyInfo, now: datetime | None = None) -> dict[str, Any]:
    """One key version's fields for the table, JSON and CSV alike."""
    now = now or datetime.now(timezone.utc)
    created = _time(k, "create_time")
    age = int((now - created).total_seconds()) if created else 0
    return {
        "key_id": k.key_id, "version": k.version, "alias": k.alias,
        "type": enum_name(pb.KeyType, k.key_type, "KEY_TYPE_"),
        "algorithm": enum_name(pb.Algorithm, k.algorithm, "ALGORITHM_"),
        "usage": enum_name(pb.KeyUsage, k.usage, "KEY_USAGE_"),
        "mode_of_use": enum_name(pb.ModeOfUse, k.mode_of_use, "MODE_OF_USE_"),
        "exportability": enum_name(pb.Exportability, k.exportability, "EXPORTABILITY_"),
        "zone": k.zone, "state": enum_name(pb.KeyState, k.state, "KEY_STATE_"),
        "kcv": bytes(k.kcv).hex().upper(),
        "kcv_method": enum_name(pb.KcvMethod, k.kcv_method, "KCV_METHOD_"),
        "use_count": k.use_count, "max_uses": k.max_uses or None,
        "created": _iso(created), "activated": _iso(_time(k, "activate_time")),
        "age_seconds": age, "age": _age(age),
        "next_rotation": _iso(_time(k, "next_rotation_time")),
        "expires": _iso(_time(k, "expire_time")),
    }


# Columns: (heading, field) for the text table.
LIST: Final = (("KEY ID", "key_id"), ("VER", "version"), ("TYPE", "type"), ("ALGORITHM", "algorithm"),
               ("ZONE", "zone"), ("STATE", "state"), ("KCV", "kcv"), ("ALIAS", "alias"))
REPORT: Final = (("KEY ID", "key_id"), ("VER", "version"), ("TYPE", "type"), ("ALGORITHM", "algorithm"),
                 ("ZONE", "zone"), ("STATE", "state"), ("KCV", "kcv"), ("USES", "uses"), ("AGE", "age"),
                 ("NEXT ROTATION", "next_rotation"), ("EXPIRES", "expires"))
# JSON and CSV carry every field of key_row, in this order.
FIELDS: Final = ("key_id", "version", "alias", "type", "algorithm", "usage", "mode_of_use", "exportability", "zone",
                 "state", "kcv", "kcv_method", "use_count", "max_uses", "created", "activated", "age_seconds",
                 "next_rotation", "expires")


def _cell(row: dict[str, Any], field: str) -> str:
    if field == "uses":
        return f"{row['use_count']}/{row['max_uses']}" if row["max_uses"] else str(row["use_count"])
    v = row[field]
    return "-" if v in ("", None) else str(v)


def write(rows: Sequence[dict[str, Any]], fmt: Format, columns: Sequence[tuple[str, str]],
          out: TextIO | None = None) -> None:
    out = out or sys.stdout
    if fmt is Format.JSON:
        json.dump([{f: r[f] for f in FIELDS} for r in rows], out, indent=2)
        out.write("\n")
        return
    if fmt is Format.CSV:
        w = csv.DictWriter(out, fieldnames=FIELDS, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        return
    table = [[h for h, _ in columns]] + [[_cell(r, f) for _, f in columns] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    for line in table:
        out.write("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() + "\n")
