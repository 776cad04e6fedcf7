"""Legacy form per K0 KEK: X9.17 ECB, payShield variant, or hsmsvc's own variant table

Revision ID: 0007
Revises: 0006

A K0 ZMK or TMK now names the legacy form it exchanges keys in. Every K0 key
that opted in to key types before this revision used hsmsvc's own variant table,
so it is recorded explicitly as HSMSVC_VARIANT: nothing it imports or exports
changes. docs/operations.md says how to move such a ZMK to a partner's form.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("keys", "ceremonies"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("legacy_form", sa.String(24), nullable=False, server_default="NONE"))
        op.execute(f"UPDATE {table} SET legacy_form = 'HSMSVC_VARIANT' WHERE legacy_types <> ''")


def downgrade() -> None:
    for table in ("ceremonies", "keys"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("legacy_form")
