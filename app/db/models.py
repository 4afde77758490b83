"""SQLAlchemy 2.0 typed models; constraints carry the invariants (one row per ``sms_id``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import msgspec
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import text as sql_text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

WARSAW = ZoneInfo("Europe/Warsaw")  # times are stored in UTC and shown in Warsaw time
MAX_ID = 2**63 - 1  # BIGINT on PostgreSQL, INTEGER on SQLite: a larger number names no row
# Names that end up in String(64) columns, checked where they come in (flow files, the API).
FlowId = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
Tag = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]

INBOUND_STATUSES = ("received", "processed", "failed", "ignored")
QUARANTINE_STATUSES = ("held", "reingested", "discarded")
OUTBOX_STATUSES = ("queued", "sending", "sent", "failed", "dry-run", "unknown")
"""``unknown``: the gateway did not answer in time and the message is held for an operator."""
TIMEOUT_POLICIES = ("retry", "hold")


_MEMO_SIZE = 256  # distinct datetimes whose SQLite text is remembered, per bind processor


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where UTC is expected")
        if value.tzinfo is not UTC:  # most values already are: spare the conversion
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def bind_processor(self, dialect: Dialect) -> Callable[[datetime | None], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        # An MO batch binds about nine datetimes per message, nearly all of them the batch's
        # one "now" or its messages' arrival: each distinct value is formatted once.
        memo: dict[datetime, str] = {}

        def to_text(value: datetime | None) -> str | None:
            # The text SQLAlchemy's SQLite DATETIME would write, in one C call instead of a
            # Python format per value.
            if value is None:
                return None
            text = memo.get(value)
            if text is None:
                naive = self.process_bind_param(value, dialect)
                assert naive is not None
                text = naive.isoformat(" ", "microseconds")
                if len(memo) >= _MEMO_SIZE:
                    memo.clear()
                memo[value] = text
            return text

        return to_text

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class InboundMessage(Base):
    """One MO message, stored once however many times Mobitex delivered it."""

    __tablename__ = "inbound_messages"
    __table_args__ = (
        UniqueConstraint("sms_id", name="uq_inbound_sms_id"),
        CheckConstraint(f"status IN {INBOUND_STATUSES!r}", name="ck_inbound_status"),
        Index("ix_inbound_sender", "sender", "id"),
        Index("ix_inbound_number", "number", "id"),
        Index("ix_inbound_status", "status", "id"),
        Index("ix_inbound_reply_to", "reply_to_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    sms_id: Mapped[str] = mapped_column(String(32))
    number: Mapped[str] = mapped_column(String(20))
    sender: Mapped[str] = mapped_column(String(20))
    text: Mapped[str] = mapped_column(Text)
    smcsc: Mapped[str | None] = mapped_column(String(20))
    time: Mapped[int] = mapped_column(BigInteger, doc="when Mobitex received it, unix seconds")
    ext_id: Mapped[str | None] = mapped_column(String(64))
    charset: Mapped[str] = mapped_column(String(16), doc="how the body's bytes were decoded")
    raw_body: Mapped[bytes] = mapped_column(LargeBinary)
    client_ip: Mapped[str] = mapped_column(String(45))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deliveries: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16), default="received")
    error: Mapped[str | None] = mapped_column(Text)
    flow_id: Mapped[str | None] = mapped_column(String(64), doc="the flow that acted on it")
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # S1 replies: the outbound message this one answers, found by our ext_id or Mobitex's Id.
    reply_to_id: Mapped[int | None] = mapped_column(BigInteger)
    correlation: Mapped[str | None] = mapped_column(String(16), doc="matched / unmatched, when ext_id is set")


class QuarantinedRequest(Base):
    """An allowed request that did not validate: kept raw so it can be repaired and re-ingested."""

    __tablename__ = "quarantine"
    __table_args__ = (
        CheckConstraint(f"status IN {QUARANTINE_STATUSES!r}", name="ck_quarantine_status"),
        Index("ix_quarantine_status", "status", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    raw_body: Mapped[bytes] = mapped_column(LargeBinary)
    content_type: Mapped[str | None] = mapped_column(String(200))
    client_ip: Mapped[str] = mapped_column(String(45))
    reason: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="held")
    sms_id: Mapped[str | None] = mapped_column(String(64), doc="the message it became once re-ingested")
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Contact(Base):
    """Every phone we heard from; ``opted_out_at`` is the global STOP."""

    __tablename__ = "contacts"

    phone: Mapped[str] = mapped_column(String(20), primary_key=True)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    messages: Mapped[int] = mapped_column(Integer, default=0)
    opted_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OutboxMessage(Base):
    """A message to send; written in the same transaction as the decision that caused it."""

    __tablename__ = "outbox"
    __table_args__ = (
        CheckConstraint(f"status IN {OUTBOX_STATUSES!r}", name="ck_outbox_status"),
        CheckConstraint(f"on_timeout IN {TIMEOUT_POLICIES!r}", name="ck_outbox_on_timeout"),
        Index("ix_outbox_status", "status", "id"),
        Index("ix_outbox_inbound", "inbound_id"),
        Index("ix_outbox_to", "to_number", "id"),
        Index("ix_outbox_due", "status", "next_attempt_at"),
        Index("ix_outbox_mobitex_id", "mobitex_id"),
        # The replies to an application's tagged messages, by answer; the untagged replies of
        # the flows (one per incoming message) stay out of it.
        Index(
            "ix_outbox_tag",
            "tag",
            "answer",
            sqlite_where=sql_text("tag IS NOT NULL"),
            postgresql_where=sql_text("tag IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    ext_id: Mapped[str] = mapped_column(String(32), unique=True, doc="our id, echoed back in MO ext_id")
    to_number: Mapped[str] = mapped_column(String(20))
    from_number: Mapped[str | None] = mapped_column(String(20), doc="the number the MO came in on")
    text: Mapped[str] = mapped_column(Text)
    encoding: Mapped[str] = mapped_column(String(8))
    parts: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    flow_id: Mapped[str | None] = mapped_column(String(64))
    flow_hash: Mapped[str | None] = mapped_column(String(16))
    inbound_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Sending (the dispatcher): attempts, backoff, the lease of the worker that claimed it.
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    mobitex_id: Mapped[str | None] = mapped_column(String(32), doc="Mobitex's Id from the sms.php answer")
    mobitex_type: Mapped[str | None] = mapped_column(String(16))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    on_timeout: Mapped[str | None] = mapped_column(
        String(8), doc="retry or hold when the gateway does not answer; null: the setting for its kind"
    )
    # Messages sent by applications (S1): what an answer to it means and until when.
    tag: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[str | None] = mapped_column(Text, doc="JSON the application attached")
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    idempotency_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    answer: Mapped[str | None] = mapped_column(
        String(32), doc="what the phone's answer meant, e.g. confirmed"
    )
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class FlowEvent(Base):
    """Append-only log of every flow decision: enough to rebuild any result from scratch."""

    __tablename__ = "flow_events"
    __table_args__ = (
        Index("ix_events_flow", "flow_id", "id"),
        Index("ix_events_flow_outcome", "flow_id", "outcome", "flow_hash"),  # the log's counts, index only
        Index("ix_events_inbound", "inbound_id"),
        Index("ix_events_sender", "sender", "flow_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    inbound_id: Mapped[int | None] = mapped_column(BigInteger)
    sender: Mapped[str] = mapped_column(String(20))
    flow_id: Mapped[str | None] = mapped_column(String(64))
    flow_hash: Mapped[str | None] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text, doc="JSON: what the flow decided and why")
    reply_id: Mapped[int | None] = mapped_column(BigInteger, doc="the outbox message it queued")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


ACTION_STATUSES = ("pending", "delivered", "failed")


class SendBackAction(Base):
    """A POST to an application's URL about an answer, retried like the outbox until it lands."""

    __tablename__ = "send_back_actions"
    __table_args__ = (
        CheckConstraint(f"status IN {ACTION_STATUSES!r}", name="ck_action_status"),
        Index("ix_action_due", "status", "next_attempt_at"),
        Index("ix_action_outbox", "outbox_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    outbox_id: Mapped[int | None] = mapped_column(BigInteger, doc="the message that was answered")
    inbound_id: Mapped[int | None] = mapped_column(BigInteger, doc="the answer")
    flow_id: Mapped[str | None] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text, doc="the JSON body, exactly as signed and sent")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ReplyAllowance(Base):
    """What a phone may still be sent: one row per phone and flow for the quiet interval of replies
    without news, and one per phone (scope ``*day``) counting the day's replies against the cap.

    Taken with an atomic upsert in the writer's transaction, so two writers cannot both pass.
    """

    __tablename__ = "reply_allowances"

    phone: Mapped[str] = mapped_column(String(20), primary_key=True)
    scope: Mapped[str] = mapped_column(String(64), primary_key=True, doc="a flow id, or *day")
    until: Mapped[datetime] = mapped_column(UTCDateTime, doc="end of the interval, or of the day")
    count: Mapped[int] = mapped_column(Integer, doc="replies asked for in it")
