"""PVK decimalization tables and PIN-verify attempt counters

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("keys") as batch:
        batch.add_column(sa.Column("decimalization_table", sa.String(16), nullable=False, server_default=""))
    op.create_index("ix_keys_alias", "keys", ["alias"])
    op.create_table(
        "pin_attempts",
        # "pan:" + keyed hash of the PAN, or "principal:" + principal name.
        sa.Column("subject", sa.String(160), primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pin_attempts")
    op.drop_index("ix_keys_alias", "keys")
    with op.batch_alter_table("keys") as batch:
        batch.drop_column("decimalization_table")
