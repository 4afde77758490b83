"""A list's joins and leaves per hour from the index: the subscription page's chart reads the
last week of a list by when members confirmed and when they left.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_subscription_confirmed", "subscriptions", ["list_id", "confirmed_at"])
    op.create_index("ix_subscription_left", "subscriptions", ["list_id", "left_at"])


def downgrade() -> None:
    op.drop_index("ix_subscription_left", "subscriptions")
    op.drop_index("ix_subscription_confirmed", "subscriptions")
