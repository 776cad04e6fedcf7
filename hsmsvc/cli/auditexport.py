"""The audit chain as lines for a SIEM, and the check of such a copy.

Two forms, one record a line, each carrying every field the chain hashes
(``keys/audit.py``: seq, at, actor, action, key id and version, detail) and the
row's ``prev_hash``, ``hash`` and ``mac``, so a copy can be checked line by line
without the database (:func:`verify`):

* JSON lines: one object per row.
* syslog (RFC 5424), facility 13 (log audit), with the record as ArcSight CEF in the
  MSG part: ``CEF:0|hsmsvc|hsmsvc|VERSION|action|action|severity|extension``, the
  extension holding ``externalId`` (the sequence number), ``suser`` (the actor),
  ``act``, and ``cs1`` to ``cs6`` (key id, chain hash, previous hash, detail, the
  row's exact time, MAC), ``cn1`` the key version.

Audit rows hold no clear key, PIN or PAN (``AuditEvent``); :func:`guard` refuses a
record that would carry what looks like a PAN, so a bug elsewhere stops the export
rather than ships card data.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from hsmsvc.errors import InvalidInput
from hsmsvc.keys.audit import GENESIS, AuditRow, row_hash

__all__ = ["Checked", "guard", "jsonl", "parse", "syslog", "verify"]

FACILITY: Final = 13  # log audit (RFC 5424 table 1)
_WARNING: Final = ("revoke", "destroy", "reanchor", "suspend", "fail", "denied", "exceeded")
_NOTICE: Final = ("rotate", "state", "export", "import", "generate", "form", "agree", "unseal", "lmk")
# A PAN stands alone between separators; a run of digits inside a hex value (a hash, a
# fingerprint, a seal id) touches its letters and is not taken for one.
_DIGITS: Final = re.compile(r"(?<![0-9A-Za-z])\d{13,19}(?![0-9A-Za-z])")
_EXT_KEY: Final = re.compile(r"(?:^| )([A-Za-z0-9_]+)=")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def guard(row: AuditRow) -> None:
    """Refuse a row carrying a run of 13 to 19 digits that passes the Luhn check: a PAN, by its look."""
    for text in (row.actor, row.action, row.key_id or "", row.detail):
        for m in _DIGITS.finditer(text):
            if _luhn(m.group()):
                raise InvalidInput("audit", f"seq {row.seq}: holds what looks like a PAN; nothing past it exported")


def _severity(action: str) -> int:
    """Syslog severity: 4 warning, 5 notice, 6 informational."""
    if any(w in action for w in _WARNING):
        return 4
    return 5 if any(n in action for n in _NOTICE) else 6


def jsonl(row: AuditRow) -> str:
    guard(row)
    return json.dumps({"seq": row.seq, "at": row.at, "actor": row.actor, "action": row.action, "key_id": row.key_id,
                       "key_version": row.key_version, "detail": row.detail, "prev_hash": row.prev_hash,
                       "hash": row.hash, "mac": row.mac}, separators=(",", ":"), ensure_ascii=False)


def _header(value: str) -> str:
    return value.replace("\\", "\\\\").replace("|", "\\|")


def _ext(value: str) -> str:
    return value.replace("\\", "\\\\").replace("=", "\\=").replace("\n", "\\n").replace("\r", "\\r")


def _unext(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            nxt = value[i + 1]
            out.append({"n": "\n", "r": "\r"}.get(nxt, nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def syslog(row: AuditRow, *, hostname: str, version: str) -> str:
    guard(row)
    sev = _severity(row.action)
    cef_sev = {4: 7, 5: 5, 6: 3}[sev]
    ext = [("externalId", str(row.seq)), ("suser", row.actor), ("act", row.action)]
    if row.key_id is not None:
        ext += [("cs1Label", "keyId"), ("cs1", row.key_id)]
    if row.key_version is not None:
        ext += [("cn1Label", "keyVersion"), ("cn1", str(row.key_version))]
    ext += [("cs2Label", "chainHash"), ("cs2", row.hash), ("cs3Label", "prevHash"), ("cs3", row.prev_hash),
            ("cs4Label", "detail"), ("cs4", row.detail), ("cs5Label", "at"), ("cs5", row.at),
            ("cs6Label", "mac"), ("cs6", row.mac)]
    action = _header(row.action)
    cef = f"CEF:0|hsmsvc|hsmsvc|{_header(version)}|{action}|{action}|{cef_sev}|" + " ".join(
        f"{k}={_ext(v)}" for k, v in ext)
    return f"<{FACILITY * 8 + sev}>1 {row.at} {hostname or '-'} hsmsvc - audit - {cef}"


def _cef_fields(line: str) -> dict[str, str]:
    start = line.find("CEF:0|")
    if start < 0:
        raise ValueError("no CEF record")
    # Seven header fields, '|' escaped as '\|' within them; the extension follows the seventh.
    parts, i, n, field = [], start, 0, []
    while n < 7:
        ch = line[i]
        if ch == "\\":
            field.append(line[i:i + 2])
            i += 2
            continue
        if ch == "|":
            parts.append("".join(field))
            field, n = [], n + 1
        else:
            field.append(ch)
        i += 1
    ext = line[i:]
    keys = list(_EXT_KEY.finditer(ext))
    out: dict[str, str] = {}
    for j, m in enumerate(keys):
        end = keys[j + 1].start() if j + 1 < len(keys) else len(ext)
        out[m.group(1)] = _unext(ext[m.end():end])
    return out


def parse(line: str) -> AuditRow:
    """A line of either form back to its row; ``ValueError`` if it is neither."""
    if line.startswith("{"):
        d = json.loads(line)
        return AuditRow(int(d["seq"]), str(d["at"]), str(d["actor"]), str(d["action"]), d["key_id"],
                        d["key_version"], str(d["detail"]), str(d["prev_hash"]), str(d["hash"]), str(d["mac"]))
    f = _cef_fields(line)
    return AuditRow(int(f["externalId"]), f["cs5"], f["suser"], f["act"], f.get("cs1"),
                    int(f["cn1"]) if "cn1" in f else None, f["cs4"], f["cs3"], f["cs2"], f["cs6"])


@dataclass(frozen=True)
class Checked:
    """What :func:`verify` found: the records, the first and last sequence numbers, the last hash, problems."""

    records: int
    first: int
    last: int
    last_hash: str
    problems: tuple[str, ...]


def verify(lines: Iterable[str]) -> Checked:
    """Each line's hash recomputed from its fields, and each chained to the line before (the first to
    the chain's start when it is seq 1); sequence numbers without gaps."""
    problems: list[str] = []
    n, first, prev_seq, prev_hash = 0, 0, 0, ""
    for no, line in enumerate(lines, 1):
        line = line.rstrip("\n")
        if not line.strip():
            continue
        try:
            r = parse(line)
        except (ValueError, KeyError, TypeError, IndexError):
            problems.append(f"line {no}: not an exported audit record")
            continue
        n += 1
        if n == 1:
            first = r.seq
            if r.seq == 1 and r.prev_hash != GENESIS:
                problems.append(f"line {no} (seq 1): does not start the chain")
        else:
            if r.seq != prev_seq + 1:
                problems.append(f"line {no} (seq {r.seq}): expected seq {prev_seq + 1}")
            if r.prev_hash != prev_hash:
                problems.append(f"line {no} (seq {r.seq}): does not chain to the line before")
        h = row_hash(prev_hash=r.prev_hash, seq=r.seq, at=r.at, actor=r.actor, action=r.action, key_id=r.key_id,
                     key_version=r.key_version, detail=r.detail)
        if h != r.hash:
            problems.append(f"line {no} (seq {r.seq}): content does not match its hash")
        prev_seq, prev_hash = r.seq, r.hash
    return Checked(n, first, prev_seq, prev_hash, tuple(problems))
