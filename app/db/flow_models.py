"""State of the flow kinds: votes, codes, subscriptions, survey conversations.

Limits are constraints, not reads: a vote's ``seq`` runs 1..per_sender under a unique key, a
code's redemption is unique, and each message counts at most once (unique ``inbound_id``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.models import Base, UTCDateTime

ID = BigInteger().with_variant(Integer, "sqlite")


class Vote(Base):
    __tablename__ = "votes"
    __table_args__ = (
        UniqueConstraint("flow_id", "sender", "seq", name="uq_vote_sender_seq"),
        UniqueConstraint("inbound_id", name="uq_vote_inbound"),
        CheckConstraint("seq >= 1", name="ck_vote_seq"),
        Index("ix_vote_tally", "flow_id", "option"),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    flow_id: Mapped[str] = mapped_column(String(64))
    flow_hash: Mapped[str] = mapped_column(String(16))
    sender: Mapped[str] = mapped_column(String(20))
    seq: Mapped[int] = mapped_column(Integer, doc="1..per_sender: the n-th vote of this sender")
    option: Mapped[str] = mapped_column(String(64))
    inbound_id: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    message_time: Mapped[int] = mapped_column(BigInteger)


class Code(Base):
    """A valid contest code, imported from a file."""

    __tablename__ = "codes"

    flow_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    code: Mapped[str] = mapped_column(String(64), primary_key=True)


class Redemption(Base):
    __tablename__ = "redemptions"
    __table_args__ = (
        UniqueConstraint("flow_id", "code", name="uq_redemption_code"),
        UniqueConstraint("flow_id", "sender", "seq", name="uq_redemption_sender_seq"),
        UniqueConstraint("inbound_id", name="uq_redemption_inbound"),
        CheckConstraint("seq >= 1", name="ck_redemption_seq"),
        # A contest's entries per hour (the flow page's chart of the last week).
        Index("ix_redemption_created", "flow_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    flow_id: Mapped[str] = mapped_column(String(64))
    flow_hash: Mapped[str] = mapped_column(String(16))
    code: Mapped[str] = mapped_column(String(64))
    sender: Mapped[str] = mapped_column(String(20))
    seq: Mapped[int] = mapped_column(Integer)
    inbound_id: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


# A contest's top entrants, most entries first and ties by phone: a phone's last entry holds its
# number of entries in seq (app.reads.results).
Index("ix_redemption_seq", Redemption.flow_id, Redemption.seq.desc(), Redemption.sender)


class Subscription(Base):
    """A phone on a list (one row per list and phone); its times are the times of the messages
    that asked, so the confirmation window is judged like the flow window."""

    __tablename__ = "subscriptions"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'active', 'left')", name="ck_subscription_status"),
        Index("ix_subscription_list", "list_id", "status"),
        # A list's members in the order they joined (app.reads.members pages on it).
        Index(
            "ix_subscription_joined",
            "list_id",
            "status",
            text("coalesce(confirmed_at, requested_at)"),
            "phone",
        ),
        # Its joins and leaves per hour (the flow page's chart of the last week).
        Index("ix_subscription_confirmed", "list_id", "confirmed_at"),
        Index("ix_subscription_left", "list_id", "left_at"),
    )

    list_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    phone: Mapped[str] = mapped_column(String(20), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    flow_id: Mapped[str] = mapped_column(String(64))
    flow_hash: Mapped[str] = mapped_column(String(16))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    left_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Conversation(Base):
    """A multi-step exchange with one phone (surveys); one active per phone and number."""

    __tablename__ = "conversations"
    __table_args__ = (
        CheckConstraint(
            "status IN ('active', 'completed', 'aborted', 'expired')", name="ck_conversation_status"
        ),
        Index(
            "uq_conversation_active",
            "sender",
            "number",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    flow_id: Mapped[str] = mapped_column(String(64))
    flow_hash: Mapped[str] = mapped_column(String(16))
    sender: Mapped[str] = mapped_column(String(20))
    number: Mapped[str] = mapped_column(String(20))
    step: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    retries: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SurveyAnswer(Base):
    __tablename__ = "survey_answers"
    __table_args__ = (
        UniqueConstraint("conversation_id", "step", name="uq_answer_step"),
        # A step's answers newest first (the survey page shows the latest ten).
        Index("ix_answer_latest", "flow_id", "step", "id"),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(BigInteger)
    flow_id: Mapped[str] = mapped_column(String(64))
    sender: Mapped[str] = mapped_column(String(20))
    step: Mapped[str] = mapped_column(String(64))
    value: Mapped[str] = mapped_column(Text)
    inbound_id: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
