"""Sending: messages held as ``unknown`` after a gateway timeout, and a per-message timeout policy.

Revision ID: 0008
Revises: 0005
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0006"  # chained after the dashboard users (0005) of main
branch_labels = None
depends_on = None

WITH_UNKNOWN = "status IN ('queued', 'sending', 'sent', 'failed', 'dry-run', 'unknown')"
WITHOUT_UNKNOWN = "status IN ('queued', 'sending', 'sent', 'failed', 'dry-run')"


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_constraint("ck_outbox_status", type_="check")
        batch.create_check_constraint("ck_outbox_status", WITH_UNKNOWN)
        batch.add_column(sa.Column("on_timeout", sa.String(8)))
        batch.create_check_constraint("ck_outbox_on_timeout", "on_timeout IN ('retry', 'hold')")


def downgrade() -> None:
    # Held messages go back to the queue: the operator's decision is lost, not the message.
    op.execute("UPDATE outbox SET status = 'queued' WHERE status = 'unknown'")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_constraint("ck_outbox_on_timeout", type_="check")
        batch.drop_column("on_timeout")
        batch.drop_constraint("ck_outbox_status", type_="check")
        batch.create_check_constraint("ck_outbox_status", WITHOUT_UNKNOWN)
