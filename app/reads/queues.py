"""How much is waiting and what went wrong: the outbox by status, send-back actions, the
quarantine and the inbound messages that failed."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import Connection, Select, func, literal, or_, select
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
    cap: int | None = None
    """Counted up to this many: a count of ``cap + 1`` means "more than ``cap``"."""

    @property
    def failures(self) -> int:
        """What needs a person: failed messages both ways, failed actions, held requests."""
        return (
            self.outbox["failed"] + self.actions["failed"] + self.quarantine["held"] + self.inbound["failed"]
        )


def _capped(rows: Select[Any], cap: int) -> Any:
    """How many rows ``rows`` selects, counting no further than ``cap + 1``: a scalar subquery."""
    return select(func.count()).select_from(rows.limit(cap + 1).subquery()).scalar_subquery()


def _by_status(
    conn: Connection, column: InstrumentedAttribute[str], statuses: tuple[str, ...], cap: int | None
) -> dict[str, int]:
    if cap is None:
        rows = conn.execute(select(column, func.count()).group_by(column)).all()
        counts = {status: int(n) for status, n in rows}
        return {s: int(counts.get(s, 0)) for s in statuses}
    # Each status through the status index, stopping past the cap, all in one statement: the
    # delivered millions cost as much as the few that wait.
    found = conn.execute(select(*(_capped(select(literal(1)).where(column == s), cap) for s in statuses)))
    return {s: int(n) for s, n in zip(statuses, found.one(), strict=True)}


def queue_counts(conn: Connection, now: datetime, cap: int | None = None) -> QueueCounts:
    """Every count exact, or (with ``cap``) exact up to ``cap`` and ``cap + 1`` beyond it."""
    o = OutboxMessage
    queued = o.status == "queued"
    waiting = (queued, or_(o.next_attempt_at.is_(None), o.next_attempt_at <= now))
    due = conn.scalar(
        select(func.count()).where(*waiting)
        if cap is None
        else select(_capped(select(literal(1)).where(*waiting), cap))
    )
    # Ids grow with queueing time: the lowest id waiting is the oldest, found in the status index.
    oldest = conn.scalar(select(o.created_at).where(queued).order_by(o.id).limit(1))
    return QueueCounts(
        outbox=_by_status(conn, o.status, OUTBOX_STATUSES, cap),
        due=int(due or 0),
        oldest_queued_at=oldest,
        actions=_by_status(conn, SendBackAction.status, ACTION_STATUSES, cap),
        quarantine=_by_status(conn, QuarantinedRequest.status, QUARANTINE_STATUSES, cap),
        inbound=_by_status(conn, InboundMessage.status, INBOUND_STATUSES, cap),
        cap=cap,
    )
