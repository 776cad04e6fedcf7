"""Key sync: activation times, legacy-form opt-in, and the per-zone key-change sequence

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("keys") as batch:
        # A version received in a key change becomes usable at this time (two-phase activation).
        batch.add_column(sa.Column("activates_at", sa.DateTime(timezone=True), nullable=True))
        # K0 KEKs only: the key types this KEK may carry in the legacy ECB form ("ZPK,MAK").
        batch.add_column(sa.Column("legacy_types", sa.String(64), nullable=False, server_default=""))
    op.create_table(
        "key_sync",
        sa.Column("zone", sa.String(64), primary_key=True),
        # "core" (sends notices) or "branch" (applies them).
        sa.Column("role", sa.String(8), primary_key=True),
        sa.Column("sequence", sa.BigInteger, nullable=False),
        # SENT, CONFIRMED (core); APPLIED (branch).
        sa.Column("state", sa.String(16), nullable=False),
        # SHA-256 of the notice's MACed bytes: a retry of the same notice is recognised.
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("key_sync")
    with op.batch_alter_table("keys") as batch:
        batch.drop_column("legacy_types")
        batch.drop_column("activates_at")
