"""SM2 key exchange: each agreement's ephemeral key pair, under the LMK, until used once

Revision ID: 0008
Revises: 0007

GB/T 32918.3-2016 clause 6.1 is two-pass: a site publishes R = [r]G and needs r
again when the partner's R arrives. The row holds r under the LMK (a TR-31 block,
as any key) and is deleted when the agreement runs, so r is never used twice.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "key_agreements",
        sa.Column("agreement_id", sa.String(32), primary_key=True),
        sa.Column("kak_id", sa.String(64), nullable=False),
        sa.Column("kak_version", sa.Integer, nullable=False),
        sa.Column("cryptogram", sa.LargeBinary, nullable=False),
        sa.Column("kcv", sa.String(32), nullable=False),
        sa.Column("started_by", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    # The sweep at each start deletes by expiry; the limit counts per KAK and officer.
    op.create_index("key_agreements_expires_at", "key_agreements", ["expires_at"])
    op.create_index("key_agreements_kak", "key_agreements", ["kak_id", "kak_version", "started_by"])


def downgrade() -> None:
    op.drop_index("key_agreements_kak", "key_agreements")
    op.drop_index("key_agreements_expires_at", "key_agreements")
    op.drop_table("key_agreements")
