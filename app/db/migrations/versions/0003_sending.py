"""Sending: outbox delivery state, S1 sends and their answers, send-back actions.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("next_attempt_at", TS))
        batch.add_column(sa.Column("claimed_by", sa.String(64)))
        batch.add_column(sa.Column("claimed_until", TS))
        batch.add_column(sa.Column("last_error", sa.Text()))
        batch.add_column(sa.Column("mobitex_id", sa.String(32)))
        batch.add_column(sa.Column("mobitex_type", sa.String(16)))
        batch.add_column(sa.Column("sent_at", TS))
        batch.add_column(sa.Column("tag", sa.String(64)))
        batch.add_column(sa.Column("data", sa.Text()))
        batch.add_column(sa.Column("expires_at", TS))
        batch.add_column(sa.Column("idempotency_key", sa.String(128)))
        batch.add_column(sa.Column("answer", sa.String(32)))
        batch.add_column(sa.Column("answered_at", TS))
        batch.create_unique_constraint("uq_outbox_idempotency_key", ["idempotency_key"])
    op.create_index("ix_outbox_due", "outbox", ["status", "next_attempt_at"])
    op.create_index("ix_outbox_mobitex_id", "outbox", ["mobitex_id"])
    with op.batch_alter_table("inbound_messages") as batch:
        batch.add_column(sa.Column("reply_to_id", sa.BigInteger()))
        batch.add_column(sa.Column("correlation", sa.String(16)))
    op.create_index("ix_inbound_reply_to", "inbound_messages", ["reply_to_id"])
    op.create_table(
        "send_back_actions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("outbox_id", sa.BigInteger()),
        sa.Column("inbound_id", sa.BigInteger()),
        sa.Column("flow_id", sa.String(64)),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TS),
        sa.Column("claimed_until", TS),
        sa.Column("last_error", sa.Text()),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("delivered_at", TS),
        sa.CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="ck_action_status"),
    )
    op.create_index("ix_action_due", "send_back_actions", ["status", "next_attempt_at"])
    op.create_index("ix_action_outbox", "send_back_actions", ["outbox_id"])


def downgrade() -> None:
    op.drop_table("send_back_actions")
    op.drop_index("ix_inbound_reply_to", "inbound_messages")
    with op.batch_alter_table("inbound_messages") as batch:
        batch.drop_column("correlation")
        batch.drop_column("reply_to_id")
    op.drop_index("ix_outbox_mobitex_id", "outbox")
    op.drop_index("ix_outbox_due", "outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_constraint("uq_outbox_idempotency_key", type_="unique")
        for column in (
            "answered_at",
            "answer",
            "idempotency_key",
            "expires_at",
            "data",
            "tag",
            "sent_at",
            "mobitex_type",
            "mobitex_id",
            "last_error",
            "claimed_until",
            "claimed_by",
            "next_attempt_at",
            "attempts",
        ):
            batch.drop_column(column)
