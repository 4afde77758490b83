"""Dashboard reads at a million messages: the replies to messages sent with a tag, by answer.

Partial: only the messages an application sent with a tag are in it, so the replies the flows
queue for every incoming message (no tag) cost the outbox nothing more.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TAGGED = sa.text("tag IS NOT NULL")


def upgrade() -> None:
    op.create_index(
        "ix_outbox_tag", "outbox", ["tag", "answer"], sqlite_where=TAGGED, postgresql_where=TAGGED
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_tag", "outbox")
