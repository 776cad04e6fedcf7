"""PostgreSQL: read PIN-attempt counters under their shared advisory locks in one round trip

Revision ID: 0006
Revises: 0005

A match is confirmed by reading its counters under each subject's shared lock
(hsmsvc/keys/store/counters.py). A plain SELECT takes its snapshot before any lock it
waits for is granted, so it could miss the settlement it waited on; a VOLATILE
function's statements each take a new snapshot, after the locks. SQLite needs nothing.
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

FUNCTION = """
CREATE OR REPLACE FUNCTION hsmsvc_confirm_attempts(lock_keys bigint[], names text[])
RETURNS TABLE (subject varchar, failures integer, window_start timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    -- In the array's order (sorted by the caller), so no two transactions deadlock.
    PERFORM pg_advisory_xact_lock_shared(k) FROM unnest(lock_keys) AS k;
    RETURN QUERY SELECT a.subject, a.failures, a.window_start
                 FROM pin_attempts AS a WHERE a.subject = ANY(names);
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS hsmsvc_confirm_attempts(bigint[], text[])")
