"""Key ceremonies: keys formed from custodians' components under dual control

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ceremonies",
        sa.Column("ceremony_id", sa.String(32), primary_key=True),
        # KeySpec.attributes() of the key to be formed.
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("alias", sa.String(128), nullable=True),
        sa.Column("legacy_types", sa.String(64), nullable=False),
        # The CTK the components travel under.
        sa.Column("ctk_id", sa.String(64), nullable=False),
        sa.Column("ctk_version", sa.Integer, nullable=False),
        sa.Column("required", sa.Integer, nullable=False),
        # OPEN, FORMED, CANCELLED, EXPIRED.
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("started_by", sa.String(128), nullable=False),
        sa.Column("approved_by", sa.String(128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kcv", sa.String(32), nullable=True),
    )
    # Components under the CTK's public half, never clear; erased (wrapped = empty) when the ceremony ends.
    op.create_table(
        "ceremony_components",
        sa.Column("ceremony_id", sa.String(32), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("custodian", sa.String(128), nullable=False),
        sa.Column("wrapped", sa.LargeBinary, nullable=False),
        sa.Column("kcv", sa.String(16), nullable=False),
        sa.UniqueConstraint("ceremony_id", "custodian", name="uq_ceremony_custodian"),
    )


def downgrade() -> None:
    op.drop_table("ceremony_components")
    op.drop_table("ceremonies")
