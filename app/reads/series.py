"""Counts per minute and per hour: messages in and out for the overview, a flow's activity over days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

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


def unindexed(column: InstrumentedAttribute[str]) -> ColumnElement[str]:
    """``column || ''``: the same value, but no index on it, so a condition on the id picks the rows.

    With ``id > :last AND flow_id = :flow`` SQLite (which keeps no statistics) walks the flow's
    index entry by entry instead of taking the few new rows by their key.
    """
    return column.op("||")("")


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
    # Two queries: SQLite answers min() and max() from the key alone only one at a time.
    lo = conn.execute(select(func.min(id_col))).scalar()
    hi = conn.execute(select(func.max(id_col))).scalar()
    if lo is None or hi is None:
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


def settled_through(
    conn: Connection,
    id_col: InstrumentedAttribute[int],
    at_col: InstrumentedAttribute[datetime],
    before: datetime,
) -> int:
    """The highest id of the rows older than ``before`` (0 when there are none): the rows up to
    it a count may take as all committed, when no transaction stays open that long. Ids between
    it and the first newer row may belong to transactions still open: they are not settled."""
    first = first_id_since(conn, id_col, at_col, before)
    older = select(func.max(id_col)) if first is None else select(func.max(id_col)).where(id_col < first)
    return int(conn.execute(older).scalar() or 0)


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


def _minute_key(conn: Connection, at_col: InstrumentedAttribute[datetime]) -> ColumnElement[Any]:
    if conn.dialect.name == "sqlite":
        return func.substr(at_col, 1, 16)  # "YYYY-MM-DD HH:MM" of the stored UTC text
    return func.date_trunc("minute", at_col)


def minute_counts(
    conn: Connection,
    id_col: InstrumentedAttribute[int],
    at_col: InstrumentedAttribute[datetime],
    after_id: int,
    *where: ColumnElement[bool],
    through: int | None = None,
) -> tuple[dict[datetime, int], int]:
    """Rows with an id above ``after_id`` (and up to ``through``) per minute (UTC), and the highest
    id counted."""
    key = _minute_key(conn, at_col).label("minute")
    upto = [] if through is None else [id_col <= through]
    query = select(key, func.count(), func.max(id_col)).where(id_col > after_id, *upto, *where).group_by(key)
    counts: dict[datetime, int] = {}
    last = after_id
    for minute, count, top in conn.execute(query):
        if isinstance(minute, str):
            at = datetime.fromisoformat(minute).replace(tzinfo=UTC)
        else:
            at = minute if minute.tzinfo else minute.replace(tzinfo=UTC)
            at = at.astimezone(UTC)
        counts[at] = counts.get(at, 0) + int(count)
        last = max(last, int(top))
    return counts, last


def rows_after(
    conn: Connection,
    id_col: InstrumentedAttribute[int],
    after_id: int,
    through: int | None = None,
) -> tuple[int, int]:
    """How many rows have an id above ``after_id`` (and up to ``through``), and the highest id."""
    upto = [] if through is None else [id_col <= through]
    count, top = conn.execute(select(func.count(), func.max(id_col)).where(id_col > after_id, *upto)).one()
    return int(count), max(after_id, int(top or 0))


def window(now: datetime, hours: int) -> tuple[datetime, int]:
    """The first minute and the number of minutes of a chart of the last ``hours`` up to ``now``."""
    minutes = hours * 60
    return now.replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1), minutes


def per_minute(conn: Connection, now: datetime, hours: int = 3) -> PerMinute:
    """Messages received and messages queued to send, per minute, over the last ``hours``."""
    start, minutes = window(now, hours)
    return PerMinute(
        start=start,
        minutes=minutes,
        inbound=counts_per_minute(conn, InboundMessage.id, InboundMessage.received_at, start, minutes),
        outbound=counts_per_minute(conn, OutboxMessage.id, OutboxMessage.created_at, start, minutes),
    )


def counts_per_hour(
    conn: Connection,
    at_col: InstrumentedAttribute[datetime] | InstrumentedAttribute[datetime | None],
    start: datetime,
    hours: int,
    *where: ColumnElement[bool],
) -> list[int]:
    """Rows per hour from ``start`` for ``hours`` hours, by ``at_col`` (``where`` narrows them)."""
    buckets = [0] * hours
    minute = _minute_of(conn, at_col, start)  # type: ignore[arg-type]
    hour = cast(func.floor(minute / 60.0), Integer).label("hour")
    end = start + timedelta(hours=hours)
    query = select(hour, func.count()).where(at_col >= start, at_col < end, *where).group_by(hour)
    for index, count in conn.execute(query):
        if index is not None and 0 <= index < hours:
            buckets[int(index)] += int(count)
    return buckets


def hour_window(now: datetime, days: int) -> tuple[datetime, int]:
    """The first hour and the number of hours of a chart of the last ``days`` up to ``now``."""
    hours = days * 24
    return now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1), hours
