"""Dashboard reads at a million events: a flow's events by outcome and file hash from the index
alone, and a list's members in the order they joined.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_events_flow_outcome", "flow_events", ["flow_id", "outcome", "flow_hash"])
    op.create_index(
        "ix_subscription_joined",
        "subscriptions",
        ["list_id", "status", sa.text("coalesce(confirmed_at, requested_at)"), "phone"],
    )


def downgrade() -> None:
    op.drop_index("ix_subscription_joined", "subscriptions")
    op.drop_index("ix_events_flow_outcome", "flow_events")
