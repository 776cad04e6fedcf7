"""A customer table holding stored PINs, as the batch jobs see it, and their checkpoint tables.

The job names the table and its columns (primary key, account, PIN
cryptogram, key version); nothing else in it is read or written. The
checkpoint tables live in the same database so that a chunk's rows and its
"done" mark commit in one transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum, unique
from typing import Any, Final

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    create_engine,
    event,
)
from sqlalchemy.exc import NoSuchTableError, SQLAlchemyError

from hsmsvc.errors import InvalidInput, KeyNotFound

__all__ = ["Encoding", "PinTable", "Tables", "connect", "writer"]

_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,40}")


@unique
class Encoding(Enum):
    """How the PIN column holds a cryptogram."""

    HEX = "hex"
    """Upper-case hexadecimal text, as most core-banking tables keep it."""
    BINARY = "binary"
    """Raw bytes (BYTEA, BLOB)."""

    def decode(self, value: Any) -> bytes:
        """The cryptogram, or ``b""`` (a row the backend then refuses) if the column holds garbage."""
        if self is Encoding.BINARY:
            return bytes(value) if isinstance(value, (bytes, bytearray, memoryview)) else b""
        try:
            return bytes.fromhex(value) if isinstance(value, str) else b""
        except ValueError:
            return b""

    def encode(self, value: bytes) -> str | bytes:
        return value.hex().upper() if self is Encoding.HEX else value


@dataclass(frozen=True)
class PinTable:
    """Where the stored PINs are: the table and the four columns a job touches."""

    name: str
    pk: str = "id"
    account: str = "account"
    pin: str = "pin"
    version: str = "pin_key"
    """Text naming the key each row is under, ``KEY_ID:VERSION``: a half-moved table stays readable."""
    encoding: Encoding = Encoding.HEX

    def __post_init__(self) -> None:
        for field in ("name", "pk", "account", "pin", "version"):
            if not _NAME.fullmatch(getattr(self, field)):
                raise InvalidInput(field, "a plain SQL identifier: letters, digits, _ (at most 41)")
        if len({self.pk, self.account, self.pin, self.version}) != 4:
            raise InvalidInput("columns", "four different columns")
        if not isinstance(self.encoding, Encoding):
            raise InvalidInput("encoding", "an Encoding")


def connect(url: str) -> Engine:
    """An engine for a customer database. SQLite writers take the lock at BEGIN and wait for each other."""
    try:
        options: dict[str, Any] = {}
        if url.startswith("postgresql") and "connect_timeout" not in url:
            # An unreachable host fails in seconds, not after TCP's minutes of retries.
            options["connect_args"] = {"connect_timeout": 10}
        engine = create_engine(url, pool_pre_ping=True, hide_parameters=True, **options)
    except (SQLAlchemyError, ValueError, ImportError):
        raise InvalidInput("db", "a SQLAlchemy database URL") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def writer(engine: Engine) -> Connection:
    """A connection whose next transaction takes SQLite's write lock at BEGIN (no upgrade deadlock)."""
    conn = engine.connect()
    conn.info["immediate"] = True
    return conn


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.pop("immediate", False) else "BEGIN")


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None
    dbapi_conn.execute("PRAGMA busy_timeout = 60000")


class Tables:
    """The customer table (reflected) and the job's checkpoint tables beside it."""

    def __init__(self, engine: Engine, pins: PinTable) -> None:
        self.pins = pins
        self.meta = MetaData()
        try:
            self.t = Table(pins.name, self.meta, autoload_with=engine)
        except NoSuchTableError:
            raise KeyNotFound("--table", f"{pins.name} does not exist in that database") from None
        options = {pins.pk: "--pk-column", pins.account: "--account-column", pins.pin: "--pin-column",
                   pins.version: "--version-column"}
        missing = [f"{c} ({option})" for c, option in options.items() if c not in self.t.c]
        if missing:
            raise InvalidInput("--table", f"{pins.name} has no column {', '.join(missing)}")
        pk_type = self.t.c[pins.pk].type
        base = f"hsmsvc_reencrypt_{pins.name}"
        self.jobs = Table(
            "hsmsvc_reencrypt_jobs", self.meta,
            Column("name", String(64), primary_key=True),
            Column("table_name", String(64), nullable=False),
            Column("mode", String(16), nullable=False),
            Column("source", String(80), nullable=False),
            Column("target", String(80), nullable=False),
            Column("chunk_rows", Integer, nullable=False),
            Column("total_rows", Integer, nullable=False),
            Column("chunks", Integer, nullable=False),
            Column("created_at", DateTime(timezone=True), nullable=False),
            Column("finished_at", DateTime(timezone=True)),
        )
        # One row per chunk of the primary key's range: [lo, hi), open at either end.
        self.chunks = Table(
            f"{base}_chunks", self.meta,
            Column("job", String(64), nullable=False),
            Column("seq", Integer, nullable=False),
            Column("lo", pk_type),
            Column("hi", pk_type),
            Column("done", Boolean, nullable=False, default=False),
            Column("moved", Integer, nullable=False, default=0),
            Column("rejected", Integer, nullable=False, default=0),
            Column("crypto_seconds", Float, nullable=False, default=0.0),
            Column("worker", String(80)),
            Column("finished_at", DateTime(timezone=True)),
            PrimaryKeyConstraint("job", "seq"),
        )
        # Rows the backend refused: left as they were, under the source key, for a person to look at.
        self.rejects = Table(
            f"{base}_rejects", self.meta,
            Column("job", String(64), nullable=False),
            Column("pk", pk_type, nullable=False),
            PrimaryKeyConstraint("job", "pk"),
        )
        # A few rows' old cryptograms, kept until --verify-sample compares them with the new ones.
        self.samples = Table(
            f"{base}_samples", self.meta,
            Column("job", String(64), nullable=False),
            Column("pk", pk_type, nullable=False),
            Column("old_value", LargeBinary, nullable=False),
            PrimaryKeyConstraint("job", "pk"),
        )

    def create(self, engine: Engine) -> None:
        """Create the checkpoint tables if they are missing (two workers racing here is harmless)."""
        for table in (self.jobs, self.chunks, self.rejects, self.samples):
            try:
                table.create(engine, checkfirst=True)
            except SQLAlchemyError:
                # Another process created it between the check and the CREATE.
                table.create(engine, checkfirst=True)
