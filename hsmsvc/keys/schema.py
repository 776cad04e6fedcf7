"""The key store's tables (SQLAlchemy Core). Alembic migrations create them."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

keys = Table(
    "keys",
    metadata,
    Column("key_id", String(64), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("alias", String(128), nullable=True),
    Column("key_type", String(8), nullable=False),
    Column("algorithm", String(16), nullable=False),
    Column("usage", String(2), nullable=False),
    Column("mode_of_use", String(1), nullable=False),
    Column("exportability", String(1), nullable=False),
    Column("zone", String(64), nullable=False, default=""),
    Column("state", String(16), nullable=False),
    Column("cryptogram", LargeBinary, nullable=True),
    Column("kcv", String(32), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("activated_at", DateTime(timezone=True), nullable=True),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("use_count", BigInteger, nullable=False, default=0),
    Column("max_uses", BigInteger, nullable=True),
    Column("decimalization_table", String(16), nullable=False, server_default=""),
    Column("activates_at", DateTime(timezone=True), nullable=True),
    Column("legacy_types", String(64), nullable=False, server_default=""),
    Column("legacy_form", String(24), nullable=False, server_default="NONE"),
    UniqueConstraint("alias", "version", name="uq_keys_alias_version"),
)

pin_attempts = Table(
    "pin_attempts",
    metadata,
    Column("subject", String(160), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("window_start", DateTime(timezone=True), nullable=False),
)

key_sync = Table(
    "key_sync",
    metadata,
    Column("zone", String(64), primary_key=True),
    Column("role", String(8), primary_key=True),
    Column("sequence", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("detail", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

ceremonies = Table(
    "ceremonies",
    metadata,
    Column("ceremony_id", String(32), primary_key=True),
    Column("spec", Text, nullable=False),
    Column("alias", String(128), nullable=True),
    Column("legacy_types", String(64), nullable=False),
    Column("legacy_form", String(24), nullable=False, server_default="NONE"),
    Column("ctk_id", String(64), nullable=False),
    Column("ctk_version", Integer, nullable=False),
    Column("required", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("started_by", String(128), nullable=False),
    Column("approved_by", String(128), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("kcv", String(32), nullable=True),
)

ceremony_components = Table(
    "ceremony_components",
    metadata,
    Column("ceremony_id", String(32), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("custodian", String(128), nullable=False),
    Column("wrapped", LargeBinary, nullable=False),
    Column("kcv", String(16), nullable=False),
    UniqueConstraint("ceremony_id", "custodian", name="uq_ceremony_custodian"),
)

# An SM2 key exchange's ephemeral key pair, deleted when used (migration 0008).
key_agreements = Table(
    "key_agreements",
    metadata,
    Column("agreement_id", String(32), primary_key=True),
    Column("kak_id", String(64), nullable=False),
    Column("kak_version", Integer, nullable=False),
    Column("cryptogram", LargeBinary, nullable=False),
    Column("kcv", String(32), nullable=False),
    Column("started_by", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("key_agreements_expires_at", "expires_at"),
    Index("key_agreements_kak", "kak_id", "kak_version", "started_by"),
)

audit = Table(
    "audit",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at", String(32), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(64), nullable=False),
    Column("key_id", String(64), nullable=True),
    Column("key_version", Integer, nullable=True),
    Column("detail", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("mac", String(64), nullable=False),
)

store_meta = Table(
    "store_meta",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("value", String(128), nullable=False),
)
