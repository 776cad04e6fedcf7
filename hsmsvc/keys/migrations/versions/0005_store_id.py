"""The store's own id: the audit anchor and checkpoints name it, so one LMK can serve several stores

Revision ID: 0005
Revises: 0004
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    meta = op.create_table(
        "store_meta",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("value", sa.String(128), nullable=False),
    )
    # Random, not derived from the URL: a copy restored elsewhere is the same store.
    op.bulk_insert(meta, [{"name": "store_id", "value": secrets.token_hex(16)}])


def downgrade() -> None:
    op.drop_table("store_meta")
