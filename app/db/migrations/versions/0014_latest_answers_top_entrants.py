"""A survey step's latest answers and a contest's top entrants from the index.

The survey page shows a text step's latest ten answers: ``(flow_id, step, id)`` gives them in
order on PostgreSQL too (SQLite's index carried the rowid already), and takes the place of the
``(flow_id, step)`` index it extends. A contest page's top ten by entries walk
``(flow_id, seq DESC, sender)`` from the highest entry number down instead of grouping every entry,
and its chart of entries per hour over the last week reads that week from ``(flow_id, created_at)``
instead of every entry of the contest.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_answer_latest", "survey_answers", ["flow_id", "step", "id"])
    op.drop_index("ix_answer_flow", "survey_answers")
    op.create_index("ix_redemption_seq", "redemptions", ["flow_id", sa.text("seq DESC"), "sender"])
    op.create_index("ix_redemption_created", "redemptions", ["flow_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_redemption_created", "redemptions")
    op.drop_index("ix_redemption_seq", "redemptions")
    op.create_index("ix_answer_flow", "survey_answers", ["flow_id", "step"])
    op.drop_index("ix_answer_latest", "survey_answers")
