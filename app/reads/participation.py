""" "Did my vote count?": for one phone and one flow, every message, its decision and the reason.

One query for the API, the CLI and the contact view alike; it knows SQL and nothing of HTTP.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import Connection, select

from app.db.models import FlowEvent, InboundMessage, OutboxMessage
from app.evidence.rebuild import AUDITED, live
from app.flows.loader import LoadedFlow

# What each outcome means for the phone, in words a participant understands.
_MEANING = {
    "accepted": "counted",
    "replaced": "counted, replacing the earlier vote",
    "repeat": "not counted: this phone had used all its votes",
    "invalid": "not counted: not a valid option or code",
    "closed": "not counted: sent outside the flow's time window",
    "used": "not counted: the code was already used",
    "limit": "not counted: this phone had entered its limit of codes",
    "joined": "joined the list",
    "confirmed": "joined the list (confirmed)",
    "left": "left the list",
    "completed": "survey completed",
}


class Decision(msgspec.Struct, frozen=True):
    outcome: str
    meaning: str
    detail: dict[str, Any]
    flow_hash: str | None
    decided_at: datetime
    reply: str | None
    """The text of the reply the flow sent, if any."""


class ParticipantMessage(msgspec.Struct, frozen=True):
    id: int
    sms_id: str
    sent_at: datetime
    """When Mobitex received it: the time windows are judged by this."""
    text: str
    status: str
    error: str | None
    decisions: list[Decision]


class Participation(msgspec.Struct, frozen=True):
    phone: str
    flow: str
    kind: str
    counted: int
    """Live entries of this phone in the flow (votes, redemptions, completions, membership)."""
    messages: list[ParticipantMessage]


def participation(conn: Connection, flow: LoadedFlow, phone: str) -> Participation:
    ev = conn.execute(
        select(FlowEvent, OutboxMessage.text)
        .outerjoin(OutboxMessage, OutboxMessage.id == FlowEvent.reply_id)
        .where(FlowEvent.sender == phone, FlowEvent.flow_id == flow.id)
        .order_by(FlowEvent.id)
    ).all()
    by_message: dict[int, list[Decision]] = {}
    for e in ev:
        decision = Decision(
            outcome=e.outcome,
            meaning=_MEANING.get(e.outcome, e.outcome.replace("_", " ")),
            detail=msgspec.json.decode(e.detail) if e.detail else {},
            flow_hash=e.flow_hash,
            decided_at=e.created_at,
            reply=e.text,
        )
        by_message.setdefault(e.inbound_id or 0, []).append(decision)
    rows = conn.execute(
        select(InboundMessage)
        .where(
            InboundMessage.sender == phone,
            (InboundMessage.flow_id == flow.id) | InboundMessage.id.in_(by_message.keys()),
        )
        .order_by(InboundMessage.id)
    ).all()
    messages = [
        ParticipantMessage(
            id=m.id,
            sms_id=m.sms_id,
            sent_at=datetime.fromtimestamp(m.time, UTC),
            text=m.text,
            status=m.status,
            error=m.error,
            decisions=by_message.get(m.id, []),
        )
        for m in rows
    ]
    mine = live(conn, flow) if flow.kind in AUDITED else {}
    if flow.kind in ("vote", "code"):
        counted = sum(1 for v in mine.values() if v[0] == phone)
    elif flow.kind == "survey":
        counted = int(mine.get(phone, 0))
    else:
        counted = int(mine.get(phone) == "active")  # a list; other kinds keep no entries
    return Participation(phone=phone, flow=flow.id, kind=flow.kind, counted=counted, messages=messages)
