"""The JSON shapes of the API: msgspec Structs at the edge."""

from __future__ import annotations

from datetime import datetime

import msgspec

from app.db.models import InboundMessage, QuarantinedRequest


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
