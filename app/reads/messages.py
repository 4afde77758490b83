"""Messages with their links: inbound ones (their events, replies and the sent message they answer),
sent ones (their answers and send-back actions), and quarantined requests; pages newest first.

Pages are keyset pages: ``before`` is the ``next_cursor`` (an id) of the previous page, so a page
stays right while new messages arrive.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import msgspec
from sqlalchemy import Connection, Select, select

from app.db.models import FlowEvent, InboundMessage, OutboxMessage, QuarantinedRequest, SendBackAction
from app.reads.series import first_id_since

S = TypeVar("S", bound=msgspec.Struct)


class InboundOut(msgspec.Struct, frozen=True):
    sms_id: str
    number: str
    sender: str
    text: str
    smcsc: str | None
    time: int
    ext_id: str | None
    status: str
    deliveries: int
    received_at: datetime
    last_received_at: datetime
    client_ip: str
    charset: str
    error: str | None
    reply_to_id: int | None  # the sent message this one answers (its ext_id named it)
    correlation: str | None  # matched / unmatched when it carried an ext_id
    id: int  # our row's id: what pages and exports count by
    flow_id: str | None  # the flow that took it


class InboundPage(msgspec.Struct, frozen=True):
    items: list[InboundOut]
    next_cursor: str | None
    """Older messages: pass as ``before``; None on the last page."""
    prev_cursor: str | None = None
    """Newer messages: pass as ``after``; None on the newest page."""


class QuarantineOut(msgspec.Struct, frozen=True):
    id: int
    reason: str
    status: str
    received_at: datetime
    client_ip: str
    content_type: str | None
    raw_body: bytes  # base64 in JSON: the exact bytes received
    raw_text: str  # the same bytes shown as UTF-8 text, undecodable bytes replaced
    sms_id: str | None
    resolved_at: datetime | None


class QuarantinePage(msgspec.Struct, frozen=True):
    items: list[QuarantineOut]
    next_cursor: str | None


class OutboxOut(msgspec.Struct, frozen=True):
    id: int
    ext_id: str
    to_number: str
    from_number: str | None
    text: str
    encoding: str
    parts: int
    status: str
    sent: bool
    flow_id: str | None
    flow_hash: str | None
    inbound_id: int | None
    created_at: datetime
    attempts: int
    last_error: str | None
    mobitex_id: str | None
    sent_at: datetime | None
    next_attempt_at: datetime | None


class OutboxPage(msgspec.Struct, frozen=True):
    items: list[OutboxOut]
    next_cursor: str | None
    """Older messages: pass as ``before``; None on the last page."""
    prev_cursor: str | None = None
    """Newer messages: pass as ``after``; None on the newest page."""


class AnswerOut(msgspec.Struct, frozen=True):
    """An inbound message that answers a sent one."""

    sms_id: str
    sender: str
    text: str
    time: int
    received_at: datetime
    status: str
    flow_id: str | None


class ActionOut(msgspec.Struct, frozen=True):
    """A send-back POST about an answer, and how its delivery goes."""

    id: int
    url: str
    status: str  # pending, delivered or failed
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None


class MessageOut(msgspec.Struct, frozen=True):
    """A sent (or queued) message, what became of it, and the answers it got."""

    id: int
    ext_id: str
    to: str
    text: str
    encoding: str
    parts: int
    status: str
    attempts: int
    last_error: str | None
    mobitex_id: str | None
    sent_at: datetime | None
    created_at: datetime
    tag: str | None
    data: dict[str, Any] | None
    flow_id: str | None
    expires_at: datetime | None
    answer: str | None
    answered_at: datetime | None
    answers: list[AnswerOut]
    actions: list[ActionOut]


class EventOut(msgspec.Struct, frozen=True):
    """A decision of the event log about one message."""

    id: int
    flow_id: str | None
    flow_hash: str | None
    outcome: str
    detail: dict[str, Any] | None  # what the flow decided and why
    reply_id: int | None  # the outbox message it queued
    created_at: datetime


class InboundDetail(msgspec.Struct, frozen=True):
    """One inbound message with everything it is linked to."""

    message: InboundOut
    events: list[EventOut]  # the decisions about it, oldest first
    replies: list[OutboxOut]  # what the flows queued in answer, oldest first
    answers: OutboxOut | None  # the sent message it answers (by its ext_id), if any
    raw_text: str = ""  # the body as received, as UTF-8 text (undecodable bytes replaced)
    unmatched_reason: str | None = None  # why its ext_id found no message of ours, when it did not


def _convert(rows: Iterable[Any], type_: type[S], **computed: Any) -> list[S]:
    """Rows as Structs; ``computed`` maps a field to a function of the row for fields no column holds."""
    out = []
    for row in rows:
        fields: Mapping[str, Any] = row._mapping
        if computed:
            fields = {**fields, **{name: f(row) for name, f in computed.items()}}
        out.append(msgspec.convert(fields, type_))
    return out


def _columns(type_: type[msgspec.Struct], model: Any, **labelled: Any) -> list[Any]:
    """The model's columns that ``type_`` has fields for, and ``labelled`` expressions."""
    names = [f for f in type_.__struct_fields__ if f not in labelled and f in model.__table__.c]
    return [getattr(model, n) for n in names] + [e.label(n) for n, e in labelled.items()]


def _json(raw: str | None) -> Any:
    return msgspec.json.decode(raw) if raw else None


def _page(items: list[S], limit: int, ids: list[int]) -> tuple[list[S], str | None]:
    """The page and the cursor of the next one (None on the last page)."""
    return items, str(ids[-1]) if len(items) == limit else None


# -- inbound ------------------------------------------------------------------------------------

_INBOUND = select(*_columns(InboundOut, InboundMessage), InboundMessage.id)


def list_inbound(
    conn: Connection,
    *,
    sender: str | None = None,
    number: str | None = None,
    status: str | None = None,
    correlation: str | None = None,
    flow: str | None = None,
    text: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    before: int | None = None,
    after: int | None = None,
) -> InboundPage:
    """Inbound messages, newest first; numbers as stored (normalised), ``since`` / ``until`` by first
    delivery, ``text`` anywhere in the text (any case). ``before`` pages to older messages,
    ``after`` to newer ones."""
    m = InboundMessage
    query: Select[Any] = _INBOUND
    for column, value in (
        (m.sender, sender),
        (m.number, number),
        (m.status, status),
        (m.correlation, correlation),
        (m.flow_id, flow),
    ):
        if value:
            query = query.where(column == value)
    if text:
        query = query.where(m.text.icontains(text, autoescape=True))
    query = _time_range(conn, query, m.id, m.received_at, since, until)
    rows, older, newer = _keyset(conn, query, m.id, limit, before, after)
    return InboundPage(_convert(rows, InboundOut), older, newer)


def _time_range(
    conn: Connection,
    query: Select[Any],
    id_col: Any,
    at_col: Any,
    since: datetime | None,
    until: datetime | None,
) -> Select[Any]:
    if since is not None:
        query = query.where(at_col >= since)
        # Ids grow with arrival: the first id since then bounds the scan (the time column has no index).
        first = first_id_since(conn, id_col, at_col, since)
        if first is not None:
            query = query.where(id_col >= first)
    if until is not None:
        query = query.where(at_col < until)
    return query


def _keyset(
    conn: Connection, query: Select[Any], id_col: Any, limit: int, before: int | None, after: int | None
) -> tuple[list[Any], str | None, str | None]:
    """A page of rows newest first, with the cursors of the older and the newer page."""
    if after is not None:
        rows = list(conn.execute(query.where(id_col > after).order_by(id_col).limit(limit + 1)).all())
        newer = len(rows) > limit
        rows = rows[:limit][::-1]
        return rows, (str(rows[-1].id) if rows else None), (str(rows[0].id) if rows and newer else None)
    if before is not None:
        query = query.where(id_col < before)
    rows = list(conn.execute(query.order_by(id_col.desc()).limit(limit + 1)).all())
    older = str(rows[limit - 1].id) if len(rows) > limit else None
    rows = rows[:limit]
    return rows, older, (str(rows[0].id) if rows and before is not None else None)


def inbound_message(conn: Connection, sms_id: str) -> InboundOut | None:
    found = _convert(conn.execute(_INBOUND.where(InboundMessage.sms_id == sms_id)).all(), InboundOut)
    return found[0] if found else None


def inbound_detail(conn: Connection, sms_id: str) -> InboundDetail | None:
    """The message, its events, its replies and the sent message it answers."""
    row = conn.execute(_INBOUND.where(InboundMessage.sms_id == sms_id)).first()
    if row is None:
        return None
    message = _convert([row], InboundOut)[0]
    events = conn.execute(
        select(*_columns(EventOut, FlowEvent)).where(FlowEvent.inbound_id == row.id).order_by(FlowEvent.id)
    ).all()
    replies = _outbox(conn, _OUTBOX.where(OutboxMessage.inbound_id == row.id).order_by(OutboxMessage.id))
    answered = None
    if message.reply_to_id is not None:
        answered = next(iter(_outbox(conn, _OUTBOX.where(OutboxMessage.id == message.reply_to_id))), None)
    decisions = _convert(events, EventOut, detail=lambda r: _json(r.detail))
    reasons = [e.detail.get("reason") for e in decisions if e.outcome == "reply_unmatched" and e.detail]
    raw = conn.scalar(select(InboundMessage.raw_body).where(InboundMessage.id == row.id)) or b""
    return InboundDetail(
        message,
        events=decisions,
        replies=replies,
        answers=answered,
        raw_text=raw.decode("utf-8", "replace"),
        unmatched_reason=reasons[0] if reasons else None,
    )


# -- quarantine ---------------------------------------------------------------------------------

_QUARANTINE = select(*_columns(QuarantineOut, QuarantinedRequest))


def _quarantined(rows: Iterable[Any]) -> list[QuarantineOut]:
    return _convert(rows, QuarantineOut, raw_text=lambda r: r.raw_body.decode("utf-8", "replace"))


def list_quarantine(
    conn: Connection, *, status: str | None = None, limit: int = 50, before: int | None = None
) -> QuarantinePage:
    """Requests that did not validate, newest first."""
    q = QuarantinedRequest
    query = _QUARANTINE.order_by(q.id.desc()).limit(limit)
    if status:
        query = query.where(q.status == status)
    if before is not None:
        query = query.where(q.id < before)
    rows = conn.execute(query).all()
    items, cursor = _page(_quarantined(rows), limit, [r.id for r in rows])
    return QuarantinePage(items, cursor)


def quarantined_request(conn: Connection, qid: int) -> QuarantineOut | None:
    found = _quarantined(conn.execute(_QUARANTINE.where(QuarantinedRequest.id == qid)).all())
    return found[0] if found else None


# -- outbound -----------------------------------------------------------------------------------

_OUTBOX = select(*_columns(OutboxOut, OutboxMessage))


def _outbox(conn: Connection, query: Select[Any]) -> list[OutboxOut]:
    return _convert(conn.execute(query).all(), OutboxOut, sent=lambda r: r.status == "sent")


def list_outbox(
    conn: Connection,
    *,
    status: str | None = None,
    to: str | None = None,
    flow: str | None = None,
    text: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    before: int | None = None,
    after: int | None = None,
) -> OutboxPage:
    """Queued and sent messages, newest first; ``to`` as stored (normalised), ``since`` / ``until``
    by when it was queued, ``text`` anywhere in the text (any case)."""
    o = OutboxMessage
    query: Select[Any] = _OUTBOX
    for column, value in ((o.status, status), (o.to_number, to), (o.flow_id, flow)):
        if value:
            query = query.where(column == value)
    if text:
        query = query.where(o.text.icontains(text, autoescape=True))
    query = _time_range(conn, query, o.id, o.created_at, since, until)
    rows, older, newer = _keyset(conn, query, o.id, limit, before, after)
    return OutboxPage(_convert(rows, OutboxOut, sent=lambda r: r.status == "sent"), older, newer)


_MESSAGE = select(*_columns(MessageOut, OutboxMessage, to=OutboxMessage.to_number))
_ANSWERS = select(*_columns(AnswerOut, InboundMessage))
_ACTIONS = select(*_columns(ActionOut, SendBackAction))


def sent_message(conn: Connection, message_id: int) -> MessageOut | None:
    """A message we sent (or will send) with the answers it got and the actions they queued."""
    row = conn.execute(_MESSAGE.where(OutboxMessage.id == message_id)).first()
    if row is None:
        return None
    answers = conn.execute(
        _ANSWERS.where(InboundMessage.reply_to_id == message_id).order_by(InboundMessage.id)
    ).all()
    actions = conn.execute(
        _ACTIONS.where(SendBackAction.outbox_id == message_id).order_by(SendBackAction.id)
    ).all()
    return _convert(
        [row],
        MessageOut,
        data=lambda r: _json(r.data),
        answers=lambda _: _convert(answers, AnswerOut),
        actions=lambda _: _convert(actions, ActionOut),
    )[0]
