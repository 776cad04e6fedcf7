"""``hsmsvc audit export`` and ``hsmsvc audit verify-export``: the audit chain copied to a SIEM, and the copy checked.

Export reads the store and changes nothing; no LMK is opened. Written to a file that
already holds records, it resumes after the file's last record, once that record is
found to be the store's own (same sequence number, same hash). ``verify-export``
recomputes every line's hash and its link to the line before, so an altered, removed
or inserted line is found; with ``--store`` or ``--config`` the copy's last hash is
compared with the store's row (a chain, so that covers every line before it).
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING

from hsmsvc import __version__
from hsmsvc.cli import backend
from hsmsvc.errors import InvalidInput

if TYPE_CHECKING:
    # Imported where used: the store pulls SQLAlchemy and the backend's commands (~2 s of
    # start-up here), which `hsmsvc audit --help` and every other command need not pay.
    from hsmsvc.keys.audit import AuditRow
    from hsmsvc.keys.store.reader import StoreReader

__all__ = ["add_arguments", "run"]


def add_arguments(aud: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = aud.add_parser("export", help="write the audit chain for a SIEM: JSON lines or syslog (RFC 5424, CEF)")
    _source(p)
    p.add_argument("--format", choices=("jsonl", "syslog"), default="jsonl", help="default jsonl")
    p.add_argument("--from-seq", type=int, help="first sequence number to write (default 1, or resume a file)")
    p.add_argument("--output", help="file to append to (resumes after its last record); default stdout")
    p.add_argument("--hostname", default=socket.gethostname(), help="syslog HOSTNAME (default this host's)")
    p = aud.add_parser("verify-export", help="check an exported copy: every line's hash and its chain")
    p.add_argument("file", help="the exported file (either format)")
    _source(p, required=False)


def _source(p: argparse.ArgumentParser, required: bool = True) -> None:
    what = "" if required else " to compare the copy's last record with"
    p.add_argument("--store", help=f"database URL{what}")
    p.add_argument("--config", help=f"server config file naming the store{what}")


def _store_url(args: argparse.Namespace, required: bool = True) -> str | None:
    url: str | None = args.store
    if not url and args.config:
        from hsmsvc.api.config import load

        url = load(args.config).store
    if not url and required:
        raise InvalidInput("--store", "a database URL, or --config FILE")
    if url:
        backend._existing(url, creating=False)
    return url


@contextmanager
def _reader(url: str) -> Iterator[StoreReader]:
    from hsmsvc.keys.store.reader import StoreReader

    with StoreReader.open(url) as reader:
        if reader.revision().current is None:
            raise InvalidInput("store", "no hsmsvc schema there (never migrated): nothing to export")
        yield reader


def _last_record(path: Path) -> AuditRow | None:
    """The file's last record, None if it holds none; an unreadable last line is an error."""
    from hsmsvc.cli import auditexport as fmt

    last = ""
    try:
        with path.open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    last = line
    except OSError as e:
        raise InvalidInput("--output", f"{path}: cannot be read ({e.strerror})") from None
    if not last:
        return None
    if not last.endswith("\n"):
        raise InvalidInput("--output", f"{path}: its last line is incomplete (an interrupted export?); "
                                       "remove that line and run again")
    try:
        return fmt.parse(last.rstrip("\n"))
    except (ValueError, KeyError, TypeError, IndexError):
        raise InvalidInput("--output", f"{path}: its last line is not an exported audit record") from None


def _start(args: argparse.Namespace, reader: StoreReader) -> int:
    if args.from_seq is not None and args.from_seq < 1:
        raise InvalidInput("--from-seq", "1 or more")
    last = _last_record(Path(args.output)) if args.output and Path(args.output).exists() else None
    if last is None:
        return args.from_seq or 1
    row = reader.audit_row(last.seq)
    if row is None or row.hash != last.hash:
        raise InvalidInput("--output", f"its last record (seq {last.seq}) is not this store's: "
                                       "another store's copy, or altered (hsmsvc audit verify-export)")
    if args.from_seq is not None and args.from_seq != last.seq + 1:
        raise InvalidInput("--from-seq", f"the file ends at seq {last.seq}: it resumes at {last.seq + 1}")
    return last.seq + 1


def export(args: argparse.Namespace) -> int:
    from hsmsvc.cli import auditexport as fmt

    url = _store_url(args)
    assert url is not None
    with _reader(url) as reader:
        start = _start(args, reader)
        out: IO[str]
        try:
            out = open(args.output, "a", encoding="utf-8") if args.output else sys.stdout
        except OSError as e:
            raise InvalidInput("--output", f"{args.output}: cannot be written ({e.strerror})") from None
        n, last = 0, start - 1
        try:
            for row in reader.audit_rows(after=start - 1):
                line = fmt.jsonl(row) if args.format == "jsonl" else fmt.syslog(
                    row, hostname=args.hostname, version=__version__)
                out.write(line + "\n")
                n, last = n + 1, row.seq
        finally:
            out.flush()
            if out is not sys.stdout:
                out.close()
    span = f"seq {start} to {last}" if n else f"nothing after seq {start - 1}"
    print(f"exported {n} audit records ({span})", file=sys.stderr)
    return 0


def verify_export(args: argparse.Namespace) -> int:
    from hsmsvc.cli import auditexport as fmt

    path = Path(args.file)
    try:
        with path.open(encoding="utf-8") as f:
            checked = fmt.verify(f)
    except (OSError, UnicodeDecodeError):
        raise InvalidInput("file", f"{path}: cannot be read as text") from None
    problems = list(checked.problems)
    url = _store_url(args, required=False)
    if url and checked.records:
        with _reader(url) as reader:
            row = reader.audit_row(checked.last)
            head = reader.audit_head()
        if row is None or row.hash != checked.last_hash:
            problems.append(f"seq {checked.last}: differs from the store's row: not this store's chain, or altered")
        elif head is not None and head.seq > checked.last:
            print(f"NOTE  the store is at seq {head.seq}: {head.seq - checked.last} records not exported yet")
    if checked.first > 1:
        print(f"NOTE  the copy starts at seq {checked.first}: the link to the rows before it is not checked")
    for p in problems:
        print(f"FAIL  {p}")
    if not checked.records and not problems:
        print("0 records")
        return 0
    verdict = "chain intact" if not problems else f"BROKEN: {len(problems)} problems"
    print(f"{checked.records} records, seq {checked.first} to {checked.last}; {verdict}")
    return 0 if not problems else 1


def run(args: argparse.Namespace) -> int:
    return export(args) if args.audit_command == "export" else verify_export(args)
