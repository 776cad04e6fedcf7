"""keys and audit tables

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "keys",
        sa.Column("key_id", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("alias", sa.String(128), nullable=True),
        sa.Column("key_type", sa.String(8), nullable=False),
        sa.Column("algorithm", sa.String(16), nullable=False),
        sa.Column("usage", sa.String(2), nullable=False),
        sa.Column("mode_of_use", sa.String(1), nullable=False),
        sa.Column("exportability", sa.String(1), nullable=False),
        sa.Column("zone", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("cryptogram", sa.LargeBinary, nullable=True),
        sa.Column("kcv", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("use_count", sa.BigInteger, nullable=False),
        sa.Column("max_uses", sa.BigInteger, nullable=True),
        sa.UniqueConstraint("alias", "version", name="uq_keys_alias_version"),
    )
    op.create_table(
        "audit",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=True),
        sa.Column("key_version", sa.Integer, nullable=True),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("mac", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("audit")
    op.drop_table("keys")
