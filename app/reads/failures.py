"""What needs a hand: requests held in quarantine, messages a flow failed on, sends that failed."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import Connection, Row, func, select

from app.db.models import InboundMessage, OutboxMessage, QuarantinedRequest
from app.errors import InvalidMessage
from app.mobitex.mo_form import decode_body

PAGE = 25


class HeldRequest(msgspec.Struct, frozen=True):
    id: int
    received_at: datetime
    client_ip: str
    content_type: str | None
    reason: str
    raw_text: str
    """The raw body as UTF-8 text, undecodable bytes replaced: for reading, not for repair."""
    status: str
    sms_id: str | None
    fields: dict[str, str] = {}
    """The MO fields the body decodes to, when it decodes (filled for one request, not for lists)."""


class FailedMessage(msgspec.Struct, frozen=True):
    id: int
    sms_id: str
    sender: str
    number: str
    text: str
    flow_id: str | None
    error: str | None
    received_at: datetime


class FlowCount(msgspec.Struct, frozen=True):
    flow_id: str | None
    """None: no flow took the message before it failed."""
    count: int


class Failures(msgspec.Struct, frozen=True, kw_only=True):
    held: list[HeldRequest]
    held_total: int
    held_older: int | None
    """Pass as ``before`` for the next page of held requests."""
    failed_in: list[FailedMessage]
    """The latest failed inbound messages."""
    failed_in_total: int
    failed_in_by_flow: list[FlowCount]
    failed_out_total: int


def _held(row: Row[Any]) -> HeldRequest:
    return HeldRequest(
        id=row.id,
        received_at=row.received_at,
        client_ip=row.client_ip,
        content_type=row.content_type,
        reason=row.reason,
        raw_text=row.raw_body.decode("utf-8", "replace"),
        status=row.status,
        sms_id=row.sms_id,
    )


def quarantined(conn: Connection, qid: int) -> HeldRequest | None:
    row = conn.execute(select(QuarantinedRequest).where(QuarantinedRequest.id == qid)).first()
    if row is None:
        return None
    try:
        fields, _ = decode_body(row.raw_body, row.content_type)
    except InvalidMessage:
        fields = {}
    return msgspec.structs.replace(_held(row), fields=dict(fields))


def failures(conn: Connection, *, before: int | None = None, limit: int = PAGE) -> Failures:
    q = QuarantinedRequest
    held_q = select(q).where(q.status == "held").order_by(q.id.desc()).limit(limit + 1)
    if before is not None:
        held_q = held_q.where(q.id < before)
    held = [_held(r) for r in conn.execute(held_q).all()]
    i = InboundMessage
    failed = conn.execute(
        select(i.id, i.sms_id, i.sender, i.number, i.text, i.flow_id, i.error, i.received_at)
        .where(i.status == "failed")
        .order_by(i.id.desc())
        .limit(limit)
    ).all()
    by_flow = conn.execute(
        select(i.flow_id, func.count()).where(i.status == "failed").group_by(i.flow_id).order_by(i.flow_id)
    ).all()
    return Failures(
        held=held[:limit],
        held_total=int(conn.scalar(select(func.count()).where(q.status == "held")) or 0),
        held_older=held[limit - 1].id if len(held) > limit else None,
        failed_in=[msgspec.convert(r._mapping, FailedMessage) for r in failed],
        failed_in_total=sum(int(n) for _, n in by_flow),
        failed_in_by_flow=[FlowCount(flow_id=f, count=int(n)) for f, n in by_flow],
        failed_out_total=int(conn.scalar(select(func.count()).where(OutboxMessage.status == "failed")) or 0),
    )
