"""One phone's history: what it sent and what we sent it, by time, and what it is part of
(subscriptions, votes, code redemptions, survey answers), with its STOP state."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, TypeVar

import msgspec
from sqlalchemy import ColumnElement, Connection, literal, or_, select, union_all

from app.db.flow_models import Redemption, Subscription, SurveyAnswer, Vote
from app.db.models import Contact, InboundMessage, OutboxMessage

S = TypeVar("S", bound=msgspec.Struct)


class ThreadEntry(msgspec.Struct, frozen=True):
    """One message of the thread: ``in`` from the phone (``id`` of the inbound row), ``out`` to it
    (``id`` of the outbox row)."""

    direction: Literal["in", "out"]
    id: int
    at: datetime  # when it came in, or was queued
    text: str
    status: str
    flow_id: str | None
    sms_id: str | None = None  # Mobitex's id of an ``in`` message (its page's address)


class SubscriptionEntry(msgspec.Struct, frozen=True):
    list_id: str
    status: str
    flow_id: str
    requested_at: datetime
    confirmed_at: datetime | None
    left_at: datetime | None


class VoteEntry(msgspec.Struct, frozen=True):
    flow_id: str
    option: str
    seq: int
    inbound_id: int
    created_at: datetime


class RedemptionEntry(msgspec.Struct, frozen=True):
    flow_id: str
    code: str
    seq: int
    inbound_id: int
    created_at: datetime


class SurveyAnswerEntry(msgspec.Struct, frozen=True):
    flow_id: str
    conversation_id: int
    step: str
    value: str
    inbound_id: int
    created_at: datetime


class ContactHistory(msgspec.Struct, frozen=True, kw_only=True):
    phone: str
    known: bool  # False: the phone never wrote and was never written to
    first_seen: datetime | None
    last_seen: datetime | None
    messages: int  # messages it sent
    opted_out_at: datetime | None  # the global STOP; None when it may get messages
    thread: list[ThreadEntry]  # newest first, at most ``limit``
    more: bool  # older messages than the thread shows exist
    subscriptions: list[SubscriptionEntry]
    votes: list[VoteEntry]
    redemptions: list[RedemptionEntry]
    survey_answers: list[SurveyAnswerEntry]


def _rows(conn: Connection, type_: type[S], model: Any, *where: ColumnElement[bool]) -> list[S]:
    """``model``'s rows as ``type_`` (its fields are column names), oldest first."""
    columns = [getattr(model, name) for name in type_.__struct_fields__]
    order = model.created_at if "created_at" in type_.__struct_fields__ else model.requested_at
    rows = conn.execute(select(*columns).where(*where).order_by(order)).all()
    return [msgspec.convert(row._mapping, type_) for row in rows]


def thread(conn: Connection, phone: str, *, number: str | None = None, limit: int) -> list[ThreadEntry]:
    """The latest ``limit`` messages of ``phone``, newest first. With ``number``, only its exchange
    with that number of ours: what it sent there, and what we sent it from there (or from the
    account's own sender, which carries no number)."""
    i, o = InboundMessage, OutboxMessage
    inbound = select(
        literal("in").label("direction"),
        i.id,
        i.received_at.label("at"),
        i.text,
        i.status,
        i.flow_id,
        i.sms_id,
    ).where(i.sender == phone)
    outbound = select(
        literal("out").label("direction"),
        o.id,
        o.created_at.label("at"),
        o.text,
        o.status,
        o.flow_id,
        literal(None).label("sms_id"),
    ).where(o.to_number == phone)
    if number is not None:
        inbound = inbound.where(i.number == number)
        outbound = outbound.where(or_(o.from_number == number, o.from_number.is_(None)))
    both = union_all(inbound, outbound).subquery()
    rows = conn.execute(select(both).order_by(both.c.at.desc(), both.c.id.desc()).limit(limit)).all()
    return [msgspec.convert(r._mapping, ThreadEntry) for r in rows]


def contact_history(conn: Connection, phone: str, *, limit: int = 100) -> ContactHistory:
    """The history of ``phone`` (normalised, as stored: ``48600123456``)."""
    contact = conn.execute(select(Contact).where(Contact.phone == phone)).first()
    latest = thread(conn, phone, limit=limit + 1)  # one more: are there older ones?
    return ContactHistory(
        phone=phone,
        known=contact is not None or bool(latest),
        first_seen=contact.first_seen if contact else None,
        last_seen=contact.last_seen if contact else None,
        messages=contact.messages if contact else 0,
        opted_out_at=contact.opted_out_at if contact else None,
        thread=latest[:limit],
        more=len(latest) > limit,
        subscriptions=_rows(conn, SubscriptionEntry, Subscription, Subscription.phone == phone),
        votes=_rows(conn, VoteEntry, Vote, Vote.sender == phone),
        redemptions=_rows(conn, RedemptionEntry, Redemption, Redemption.sender == phone),
        survey_answers=_rows(conn, SurveyAnswerEntry, SurveyAnswer, SurveyAnswer.sender == phone),
    )
