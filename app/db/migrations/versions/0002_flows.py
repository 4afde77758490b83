"""Flow state: contacts, outbox, event log, votes, codes, subscriptions, conversations.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def _id() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column("id", ID, primary_key=True)


def _flow() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("flow_id", sa.String(64), nullable=False),
        sa.Column("flow_hash", sa.String(16), nullable=False),
    ]


def upgrade() -> None:
    with op.batch_alter_table("inbound_messages") as batch:
        batch.add_column(sa.Column("flow_id", sa.String(64)))
        batch.add_column(sa.Column("processed_at", TS))
    op.create_table(
        "contacts",
        sa.Column("phone", sa.String(20), primary_key=True),
        sa.Column("first_seen", TS, nullable=False),
        sa.Column("last_seen", TS, nullable=False),
        sa.Column("messages", sa.Integer(), nullable=False),
        sa.Column("opted_out_at", TS),
    )
    op.create_table(
        "outbox",
        _id(),
        sa.Column("ext_id", sa.String(32), nullable=False, unique=True),
        sa.Column("to_number", sa.String(20), nullable=False),
        sa.Column("from_number", sa.String(20)),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("encoding", sa.String(8), nullable=False),
        sa.Column("parts", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("flow_id", sa.String(64)),
        sa.Column("flow_hash", sa.String(16)),
        sa.Column("inbound_id", sa.BigInteger()),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint(
            "status IN ('queued', 'sending', 'sent', 'failed', 'dry-run')", name="ck_outbox_status"
        ),
    )
    op.create_index("ix_outbox_status", "outbox", ["status", "id"])
    op.create_index("ix_outbox_inbound", "outbox", ["inbound_id"])
    op.create_index("ix_outbox_to", "outbox", ["to_number", "id"])
    op.create_table(
        "flow_events",
        _id(),
        sa.Column("inbound_id", sa.BigInteger()),
        sa.Column("sender", sa.String(20), nullable=False),
        sa.Column("flow_id", sa.String(64)),
        sa.Column("flow_hash", sa.String(16)),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text()),
        sa.Column("reply_id", sa.BigInteger()),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_events_flow", "flow_events", ["flow_id", "id"])
    op.create_index("ix_events_inbound", "flow_events", ["inbound_id"])
    op.create_index("ix_events_sender", "flow_events", ["sender", "flow_id", "id"])
    op.create_table(
        "votes",
        _id(),
        *_flow(),
        sa.Column("sender", sa.String(20), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("option", sa.String(64), nullable=False),
        sa.Column("inbound_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("message_time", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("flow_id", "sender", "seq", name="uq_vote_sender_seq"),
        sa.UniqueConstraint("inbound_id", name="uq_vote_inbound"),
        sa.CheckConstraint("seq >= 1", name="ck_vote_seq"),
    )
    op.create_index("ix_vote_tally", "votes", ["flow_id", "option"])
    op.create_table(
        "codes",
        sa.Column("flow_id", sa.String(64), primary_key=True),
        sa.Column("code", sa.String(64), primary_key=True),
    )
    op.create_table(
        "redemptions",
        _id(),
        *_flow(),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("sender", sa.String(20), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("inbound_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("flow_id", "code", name="uq_redemption_code"),
        sa.UniqueConstraint("flow_id", "sender", "seq", name="uq_redemption_sender_seq"),
        sa.UniqueConstraint("inbound_id", name="uq_redemption_inbound"),
        sa.CheckConstraint("seq >= 1", name="ck_redemption_seq"),
    )
    op.create_table(
        "subscriptions",
        sa.Column("list_id", sa.String(64), primary_key=True),
        sa.Column("phone", sa.String(20), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        *_flow(),
        sa.Column("requested_at", TS, nullable=False),
        sa.Column("confirmed_at", TS),
        sa.Column("left_at", TS),
        sa.CheckConstraint("status IN ('pending', 'active', 'left')", name="ck_subscription_status"),
    )
    op.create_index("ix_subscription_list", "subscriptions", ["list_id", "status"])
    op.create_table(
        "conversations",
        _id(),
        *_flow(),
        sa.Column("sender", sa.String(20), nullable=False),
        sa.Column("number", sa.String(20), nullable=False),
        sa.Column("step", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("retries", sa.Integer(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("expires_at", TS),
        sa.CheckConstraint(
            "status IN ('active', 'completed', 'aborted', 'expired')", name="ck_conversation_status"
        ),
    )
    active = sa.text("status = 'active'")
    op.create_index(
        "uq_conversation_active",
        "conversations",
        ["sender", "number"],
        unique=True,
        sqlite_where=active,
        postgresql_where=active,
    )
    op.create_table(
        "survey_answers",
        _id(),
        sa.Column("conversation_id", sa.BigInteger(), nullable=False),
        sa.Column("flow_id", sa.String(64), nullable=False),
        sa.Column("sender", sa.String(20), nullable=False),
        sa.Column("step", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("inbound_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("conversation_id", "step", name="uq_answer_step"),
    )
    op.create_index("ix_answer_flow", "survey_answers", ["flow_id", "step"])


def downgrade() -> None:
    for table in (
        "survey_answers",
        "conversations",
        "subscriptions",
        "redemptions",
        "codes",
        "votes",
        "flow_events",
        "outbox",
        "contacts",
    ):
        op.drop_table(table)
    with op.batch_alter_table("inbound_messages") as batch:
        batch.drop_column("processed_at")
        batch.drop_column("flow_id")
