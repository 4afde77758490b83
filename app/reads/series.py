"""Counts per minute over the last hours: messages in and out, for the overview's chart."""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec
from sqlalchemy import ColumnElement, Connection, Integer, cast, func, select
from sqlalchemy.orm import InstrumentedAttribute

from app.db.models import InboundMessage, OutboxMessage


class PerMinute(msgspec.Struct, frozen=True):
    """``inbound[i]`` and ``outbound[i]`` count the minute that starts ``i`` minutes after ``start``."""

    start: datetime
    minutes: int
    inbound: list[int]
    outbound: list[int]

    @property
    def peak(self) -> int:
        return max([*self.inbound, *self.outbound, 0])


def first_id_since(
    conn: Connection,
    id_col: InstrumentedAttribute[int],
    at_col: InstrumentedAttribute[datetime],
    since: datetime,
) -> int | None:
    """The first id whose time is at or after ``since``, found by bisecting the primary key.

    Ids grow with arrival time (one writer assigns them in order), so a few primary-key
    look-ups replace an index on the time column that every insert would pay for.
    """
    lo, hi = conn.execute(select(func.min(id_col), func.max(id_col))).one()
    if lo is None:
        return None
    first_at = conn.execute(select(at_col).where(id_col >= hi).order_by(id_col).limit(1)).scalar()
    if first_at is None or first_at < since:
        return None  # nothing that recent
    while lo < hi:
        mid = (lo + hi) // 2
        row = conn.execute(select(id_col, at_col).where(id_col >= mid).order_by(id_col).limit(1)).one()
        if row[1] < since:
            lo = row[0] + 1
        else:
            hi = mid
    return int(lo)


def _minute_of(
    conn: Connection, at_col: InstrumentedAttribute[datetime], start: datetime
) -> ColumnElement[int]:
    """The minute (0, 1, ...) after ``start`` a row falls in, computed by the database."""
    if conn.dialect.name == "sqlite":
        # Stored as "YYYY-MM-DD HH:MM:SS.ffffff" in UTC: julianday reads it as is.
        naive = start.replace(tzinfo=None).isoformat(" ")
        return cast((func.julianday(at_col) - func.julianday(naive)) * 1440, Integer)
    return cast(func.floor(func.extract("epoch", at_col - start) / 60), Integer)


def counts_per_minute(
    conn: Connection,
    id_col: InstrumentedAttribute[int],
    at_col: InstrumentedAttribute[datetime],
    start: datetime,
    minutes: int,
    *where: ColumnElement[bool],
) -> list[int]:
    """Rows per minute from ``start`` for ``minutes`` minutes (``where`` narrows them, e.g. one flow)."""
    buckets = [0] * minutes
    first = first_id_since(conn, id_col, at_col, start)
    if first is None:
        return buckets
    minute = _minute_of(conn, at_col, start).label("minute")
    query = select(minute, func.count()).where(id_col >= first, *where).group_by(minute)
    for index, count in conn.execute(query):
        if index is not None and 0 <= index < minutes:
            buckets[index] += int(count)
    return buckets


def per_minute(conn: Connection, now: datetime, hours: int = 3) -> PerMinute:
    """Messages received and messages queued to send, per minute, over the last ``hours``."""
    minutes = hours * 60
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
    return PerMinute(
        start=start,
        minutes=minutes,
        inbound=counts_per_minute(conn, InboundMessage.id, InboundMessage.received_at, start, minutes),
        outbound=counts_per_minute(conn, OutboxMessage.id, OutboxMessage.created_at, start, minutes),
    )
