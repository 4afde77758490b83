"""Inbound messages and the quarantine of requests that did not validate.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "inbound_messages",
        sa.Column("id", ID, primary_key=True),
        sa.Column("sms_id", sa.String(32), nullable=False),
        sa.Column("number", sa.String(20), nullable=False),
        sa.Column("sender", sa.String(20), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("smcsc", sa.String(20)),
        sa.Column("time", sa.BigInteger(), nullable=False),
        sa.Column("ext_id", sa.String(64)),
        sa.Column("charset", sa.String(16), nullable=False),
        sa.Column("raw_body", sa.LargeBinary(), nullable=False),
        sa.Column("client_ip", sa.String(45), nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("last_received_at", TS, nullable=False),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text()),
        sa.UniqueConstraint("sms_id", name="uq_inbound_sms_id"),
        sa.CheckConstraint(
            "status IN ('received', 'processed', 'failed', 'ignored')", name="ck_inbound_status"
        ),
    )
    op.create_index("ix_inbound_sender", "inbound_messages", ["sender", "id"])
    op.create_index("ix_inbound_number", "inbound_messages", ["number", "id"])
    op.create_index("ix_inbound_status", "inbound_messages", ["status", "id"])
    op.create_index("ix_inbound_ext_id", "inbound_messages", ["ext_id"])
    op.create_table(
        "quarantine",
        sa.Column("id", ID, primary_key=True),
        sa.Column("raw_body", sa.LargeBinary(), nullable=False),
        sa.Column("content_type", sa.String(200)),
        sa.Column("client_ip", sa.String(45), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("sms_id", sa.String(64)),
        sa.Column("resolved_at", TS),
        sa.CheckConstraint("status IN ('held', 'reingested', 'discarded')", name="ck_quarantine_status"),
    )
    op.create_index("ix_quarantine_status", "quarantine", ["status", "id"])


def downgrade() -> None:
    op.drop_table("quarantine")
    op.drop_table("inbound_messages")
