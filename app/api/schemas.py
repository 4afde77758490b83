"""The JSON shapes of the API: msgspec Structs at the edge."""

from __future__ import annotations

from datetime import datetime

import msgspec

from app.db.models import InboundMessage, OutboxMessage, QuarantinedRequest
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
        )


class OutboxPage(msgspec.Struct, frozen=True):
    items: list[OutboxOut]
    next_cursor: str | None
