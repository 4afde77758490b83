"""The JSON shapes of the API: msgspec Structs at the edge."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from app.db.models import InboundMessage, OutboxMessage, QuarantinedRequest, SendBackAction
from app.flows.check import flow_status, window_text
from app.flows.loader import LoadedFlow


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

    @classmethod
    def of(cls, m: InboundMessage) -> InboundOut:
        return cls(
            sms_id=m.sms_id,
            number=m.number,
            sender=m.sender,
            text=m.text,
            smcsc=m.smcsc,
            time=m.time,
            ext_id=m.ext_id,
            status=m.status,
            deliveries=m.deliveries,
            received_at=m.received_at,
            last_received_at=m.last_received_at,
            client_ip=m.client_ip,
            charset=m.charset,
            error=m.error,
            reply_to_id=m.reply_to_id,
            correlation=m.correlation,
        )


class InboundPage(msgspec.Struct, frozen=True):
    items: list[InboundOut]
    next_cursor: str | None


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

    @classmethod
    def of(cls, q: QuarantinedRequest) -> QuarantineOut:
        return cls(
            id=q.id,
            reason=q.reason,
            status=q.status,
            received_at=q.received_at,
            client_ip=q.client_ip,
            content_type=q.content_type,
            raw_body=q.raw_body,
            raw_text=q.raw_body.decode("utf-8", "replace"),
            sms_id=q.sms_id,
            resolved_at=q.resolved_at,
        )


class QuarantinePage(msgspec.Struct, frozen=True):
    items: list[QuarantineOut]
    next_cursor: str | None


class Repair(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Corrected MO fields; each given field replaces the one decoded from the raw body."""

    fields: dict[str, str] = {}


class FlowOut(msgspec.Struct, frozen=True):
    id: str
    kind: str
    name: str
    numbers: list[str]
    keywords: list[str]
    starts: datetime | None  # UTC; the file may give Warsaw time
    ends: datetime | None
    window: str  # the same window in Europe/Warsaw, for people
    enabled: bool
    status: str  # enabled (no window), disabled, upcoming, open or closed
    open_now: bool
    hash: str  # the version recorded with every vote, reply and event
    file: str

    @classmethod
    def of(cls, f: LoadedFlow, now: datetime) -> FlowOut:
        d = f.definition
        lo, hi = d.window()
        return cls(
            id=f.id,
            kind=f.kind,
            name=d.name,
            numbers=list(f.numbers),
            keywords=list(f.keywords),
            starts=lo if d.starts is not None else None,
            ends=hi if d.ends is not None else None,
            window=window_text(d),
            enabled=d.enabled,
            status=flow_status(d, now),
            open_now=d.enabled and d.is_open(now),
            hash=f.hash,
            file=str(f.path),
        )


class FlowsOut(msgspec.Struct, frozen=True):
    flows: list[FlowOut]
    directory: str
    loaded_at: datetime
    last_error: str | None  # why the last reload was refused; the flows above kept running


class ReloadOut(msgspec.Struct, frozen=True):
    flows: list[str]
    loaded_at: datetime


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

    @classmethod
    def of(cls, m: OutboxMessage) -> OutboxOut:
        return cls(
            id=m.id,
            ext_id=m.ext_id,
            to_number=m.to_number,
            from_number=m.from_number,
            text=m.text,
            encoding=m.encoding,
            parts=m.parts,
            status=m.status,
            sent=m.status == "sent",
            flow_id=m.flow_id,
            flow_hash=m.flow_hash,
            inbound_id=m.inbound_id,
            created_at=m.created_at,
            attempts=m.attempts,
            last_error=m.last_error,
            mobitex_id=m.mobitex_id,
            sent_at=m.sent_at,
            next_attempt_at=m.next_attempt_at,
        )


class OutboxPage(msgspec.Struct, frozen=True):
    items: list[OutboxOut]
    next_cursor: str | None


class AnswerOut(msgspec.Struct, frozen=True):
    """An inbound message that answers a sent one."""

    sms_id: str
    sender: str
    text: str
    time: int
    received_at: datetime
    status: str
    flow_id: str | None

    @classmethod
    def of(cls, m: InboundMessage) -> AnswerOut:
        return cls(m.sms_id, m.sender, m.text, m.time, m.received_at, m.status, m.flow_id)


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

    @classmethod
    def of(cls, a: SendBackAction) -> ActionOut:
        return cls(
            a.id, a.url, a.status, a.attempts, a.last_error, a.next_attempt_at, a.created_at, a.delivered_at
        )


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

    @classmethod
    def of(cls, m: OutboxMessage, answers: list[InboundMessage], actions: list[SendBackAction]) -> MessageOut:
        return cls(
            id=m.id,
            ext_id=m.ext_id,
            to=m.to_number,
            text=m.text,
            encoding=m.encoding,
            parts=m.parts,
            status=m.status,
            attempts=m.attempts,
            last_error=m.last_error,
            mobitex_id=m.mobitex_id,
            sent_at=m.sent_at,
            created_at=m.created_at,
            tag=m.tag,
            data=msgspec.json.decode(m.data) if m.data else None,
            flow_id=m.flow_id,
            expires_at=m.expires_at,
            answer=m.answer,
            answered_at=m.answered_at,
            answers=[AnswerOut.of(a) for a in answers],
            actions=[ActionOut.of(a) for a in actions],
        )
