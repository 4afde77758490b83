"""How much is waiting and what went wrong: the outbox by status, send-back actions, the
quarantine and the inbound messages that failed."""

from __future__ import annotations

from datetime import datetime

import msgspec
from sqlalchemy import Connection, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute

from app.db.models import (
    ACTION_STATUSES,
    INBOUND_STATUSES,
    OUTBOX_STATUSES,
    QUARANTINE_STATUSES,
    InboundMessage,
    OutboxMessage,
    QuarantinedRequest,
    SendBackAction,
)


class QueueCounts(msgspec.Struct, frozen=True, kw_only=True):
    outbox: dict[str, int]  # every status, zeros included
    due: int  # queued messages whose time to be sent has come
    oldest_queued_at: datetime | None  # when the longest-waiting queued message was queued
    actions: dict[str, int]  # send-back actions by status
    quarantine: dict[str, int]  # quarantined requests by status; ``held`` still wait for a person
    inbound: dict[str, int]  # inbound messages by status; ``failed`` can be replayed

    @property
    def failures(self) -> int:
        """What needs a person: failed messages both ways, failed actions, held requests."""
        return (
            self.outbox["failed"] + self.actions["failed"] + self.quarantine["held"] + self.inbound["failed"]
        )


def _by_status(
    conn: Connection, column: InstrumentedAttribute[str], statuses: tuple[str, ...]
) -> dict[str, int]:
    rows = conn.execute(select(column, func.count()).group_by(column)).all()
    counts = {status: int(n) for status, n in rows}
    return {s: int(counts.get(s, 0)) for s in statuses}


def queue_counts(conn: Connection, now: datetime) -> QueueCounts:
    o = OutboxMessage
    queued = o.status == "queued"
    due = conn.scalar(
        select(func.count()).where(queued, or_(o.next_attempt_at.is_(None), o.next_attempt_at <= now))
    )
    oldest = conn.scalar(select(func.min(o.created_at)).where(queued))
    return QueueCounts(
        outbox=_by_status(conn, o.status, OUTBOX_STATUSES),
        due=int(due or 0),
        oldest_queued_at=oldest,
        actions=_by_status(conn, SendBackAction.status, ACTION_STATUSES),
        quarantine=_by_status(conn, QuarantinedRequest.status, QUARANTINE_STATUSES),
        inbound=_by_status(conn, InboundMessage.status, INBOUND_STATUSES),
    )
