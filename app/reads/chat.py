"""A phone's exchange with one of our numbers, oldest first: what the simulator's phone shows."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec
from sqlalchemy import Connection, literal, or_, select, union_all

from app.db.models import InboundMessage, OutboxMessage


class ChatLine(msgspec.Struct, frozen=True):
    """``in``: the phone wrote it (an inbound row's id); ``out``: we wrote it (an outbox row's id)."""

    direction: Literal["in", "out"]
    id: int
    at: datetime
    text: str
    status: str
    flow_id: str | None
    sms_id: str | None


class Chat(msgspec.Struct, frozen=True):
    phone: str
    number: str
    lines: list[ChatLine]
    """The latest ``limit`` messages, oldest first."""


def chat(conn: Connection, phone: str, number: str, *, limit: int = 40) -> Chat:
    """Messages from ``phone`` to ``number``, and those we queued to ``phone`` from it (or from
    the account's own sender, which carries no number)."""
    i, o = InboundMessage, OutboxMessage
    inbound = select(
        literal("in").label("direction"),
        i.id,
        i.received_at.label("at"),
        i.text,
        i.status,
        i.flow_id,
        i.sms_id,
    ).where(i.sender == phone, i.number == number)
    outbound = select(
        literal("out").label("direction"),
        o.id,
        o.created_at.label("at"),
        o.text,
        o.status,
        o.flow_id,
        literal(None).label("sms_id"),
    ).where(o.to_number == phone, or_(o.from_number == number, o.from_number.is_(None)))
    both = union_all(inbound, outbound).subquery()
    rows = conn.execute(select(both).order_by(both.c.at.desc(), both.c.id.desc()).limit(limit)).all()
    lines = [msgspec.convert(r._mapping, ChatLine) for r in reversed(rows)]
    return Chat(phone=phone, number=number, lines=lines)
