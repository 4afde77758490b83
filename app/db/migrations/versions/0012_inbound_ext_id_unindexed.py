"""Inbound messages without the index on ext_id: no query looks messages up by it.

Answers are tied to sent messages by the outbox's own ext_id (unique, indexed); the inbound
column is only read with its row. Every stored message paid for the index and nothing read it.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_inbound_ext_id", "inbound_messages")


def downgrade() -> None:
    op.create_index("ix_inbound_ext_id", "inbound_messages", ["ext_id"])
