"""Counts the dashboard keeps per process and brings up to date by counting only new rows.

Ids grow with arrival, so "what came since the last look" is ``id > last_id``: a page refresh
costs a few rows, not the table. Where transactions of several writers (PostgreSQL, many
workers) can commit ids out of order, a row committed late behind a higher id would be missed.
So a counter keeps its counts in two parts: the settled rows, older than ``LATE`` (no
transaction stays open that long), up to an id, and the recent ones above it. Every ``RECOUNT``
seconds on PostgreSQL the recent rows are counted again and those grown old move to the
settled part: a few minutes of rows, not the table. SQLite has one writer at a time, so ids
commit in order there and it needs no such recount.

Every ``RECOUNT_WHOLE`` seconds, on both, the numbers are counted whole again: that catches rows
deleted since (an erased number). Both recounts run beside the requests, not in one: a page
keeps answering from the new rows while they run, and takes their result when they are done. Only the very
first count of a counter is waited for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Connection, func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import InstrumentedAttribute

from app.db.flow_models import Vote
from app.db.models import FlowEvent, utcnow
from app.flows.loader import LoadedFlow
from app.reads.flow_log import EventCounts, FlowLog, count_events, log_of
from app.reads.series import first_id_since, minute_counts, rows_after, settled_through
from app.reads.tally import Tally, count_votes, make_tally

RECOUNT = 30.0
"""Seconds between the recounts of the recent rows (PostgreSQL)."""
RECOUNT_WHOLE = 600.0
"""Seconds between the whole recounts (both databases)."""
LATE = timedelta(minutes=5)
"""How long after taking its id a row may still commit: older rows are settled."""

log = logging.getLogger("smsflows.dashboard")

K = TypeVar("K")


@dataclass(frozen=True)
class Held(Generic[K]):
    """What a counter holds at one moment, and how to count the same rows again from the table."""

    counts: dict[K, int]
    through: int
    """The highest id the counter has seen: a recount stops there, so rows committed since are
    no difference."""
    recount: Callable[[Connection], dict[K, int]]


class _Recounts:
    """A recount of a counter (whole, or its recent rows), started when due and at most one at a time."""

    def __init__(self, every: float) -> None:
        self.every = every
        self.counted_whole_at = 0.0
        self.task: asyncio.Task[None] | None = None

    def due(self) -> bool:
        return time.monotonic() - self.counted_whole_at > self.every

    def start(
        self, engine: AsyncEngine, count: Callable[[Connection], Any], take: Callable[[Any], Awaitable[None]]
    ) -> None:
        """Run ``count`` on its own connection, then ``take`` its result."""
        if self.task is not None and not self.task.done():
            return
        self.counted_whole_at = time.monotonic()  # a failed recount is tried again when due

        async def run() -> None:
            try:
                async with engine.connect() as conn:
                    result = await conn.run_sync(count)
            except Exception:  # the counter keeps its counts; the next recount tries again
                log.exception("a dashboard recount failed")
                return
            await take(result)

        self.task = asyncio.create_task(run(), name="dashboard recount")


class _Split(Generic[K]):
    """Counts by key in two parts: rows up to ``settled_id`` and the recent rows after it, up to
    ``last_id``. ``count(conn, after, through)`` counts the rows in that id range."""

    def __init__(self, id_col: InstrumentedAttribute[int], at_col: InstrumentedAttribute[datetime]) -> None:
        self.id_col, self.at_col = id_col, at_col
        self.settled: dict[K, int] = {}
        self.recent: dict[K, int] = {}
        self.settled_id = self.last_id = 0
        self.recounts = _Recounts(RECOUNT_WHOLE)
        self.tails = _Recounts(RECOUNT)
        """The recounts of the recent rows (PostgreSQL)."""
        self.lock = asyncio.Lock()
        self.counted = False

    def count(self, conn: Connection, after: int, through: int | None = None) -> tuple[dict[K, int], int]:
        raise NotImplementedError

    def held(self) -> Held[K] | None:
        """The counts now and a full recount of their rows (None before the first count); the
        caller holds the lock."""
        if not self.counted:
            return None
        through = self.last_id
        return Held(self.counts(), through, lambda conn: self.count(conn, 0, through)[0])

    def counts(self) -> dict[K, int]:
        both = dict(self.settled)
        for key, n in self.recent.items():
            both[key] = both.get(key, 0) + n
        return both

    def split(self, conn: Connection, after: int) -> tuple[dict[K, int], int, dict[K, int], int]:
        """From id ``after`` on: the rows grown settled, the id they go up to, the recent rows
        and the highest id counted."""
        through = max(after, settled_through(conn, self.id_col, self.at_col, utcnow() - LATE))
        settled = self.count(conn, after, through)[0] if through > after else {}
        recent, last = self.count(conn, through)
        return settled, through, recent, max(last, through)

    def take(self, whole: tuple[dict[K, int], int, dict[K, int], int]) -> None:
        self.settled, self.settled_id, self.recent, self.last_id = whole
        self.recounts.counted_whole_at = self.tails.counted_whole_at = time.monotonic()

    async def _settle(self, after: int, tail: tuple[dict[K, int], int, dict[K, int], int]) -> None:
        """Takes a recount of the rows after ``settled_id`` (made by ``split`` from ``after``),
        unless a count taken since changed what is settled. The recent rows it replaces include
        any a page added meanwhile; those above its last id are counted again by the next look."""
        async with self.lock:
            if after != self.settled_id:
                return
            grown, self.settled_id, self.recent, self.last_id = tail
            for key, n in grown.items():
                self.settled[key] = self.settled.get(key, 0) + n

    def add(self, fresh: tuple[dict[K, int], int]) -> None:
        new, self.last_id = fresh
        for key, n in new.items():
            self.recent[key] = self.recent.get(key, 0) + n

    def recent_due(self, engine: AsyncEngine) -> bool:
        return engine.dialect.name != "sqlite" and self.tails.due()

    async def update(self, engine: AsyncEngine) -> None:
        """Counts what came since the last look, and starts the recounts that are due; the lock
        is held by the caller."""
        if self.recounts.due():
            self.recounts.start(engine, self.whole, self._take_later)
        elif self.recent_due(engine):
            settled_id = self.settled_id

            async def settle(tail: tuple[dict[K, int], int, dict[K, int], int]) -> None:
                await self._settle(settled_id, tail)

            self.tails.start(engine, lambda c: self.split(c, settled_id), settle)
        after = self.last_id
        async with engine.connect() as conn:
            self.add(await conn.run_sync(lambda c: self.count(c, after)))

    def whole(self, conn: Connection) -> Any:
        """The whole count that runs beside the requests."""
        return self.split(conn, 0)

    async def _take_later(self, whole: Any) -> None:
        # The recount saw every row up to its last id; rows after it are counted again by the
        # next look, so nothing is counted twice.
        async with self.lock:
            self.take(whole)


class MinuteCounter(_Split[datetime]):
    """Rows per minute of one table (optionally narrowed, e.g. to one flow's votes)."""

    def __init__(
        self,
        id_col: InstrumentedAttribute[int],
        at_col: InstrumentedAttribute[datetime],
        *where: ColumnElement[bool],
    ) -> None:
        super().__init__(id_col, at_col)
        self.where = where
        self.since: datetime | None = None
        """The first minute the buckets hold every row of; None: nothing counted yet."""

    def count(
        self, conn: Connection, after: int, through: int | None = None
    ) -> tuple[dict[datetime, int], int]:
        return minute_counts(conn, self.id_col, self.at_col, after, *self.where, through=through)

    def held(self) -> Held[datetime] | None:
        if self.since is None:
            return None
        since, through = self.since, self.last_id

        def recount(conn: Connection) -> dict[datetime, int]:
            first = first_id_since(conn, self.id_col, self.at_col, since)
            counts = {} if first is None else self.count(conn, first - 1, through)[0]
            return {minute: n for minute, n in counts.items() if minute >= since}

        return Held({m: n for m, n in self.counts().items() if m >= since}, through, recount)

    async def series(self, engine: AsyncEngine, start: datetime, minutes: int) -> list[int]:
        buckets = await self.minutes(engine, start)
        return [buckets.get(start + timedelta(minutes=i), 0) for i in range(minutes)]

    async def minutes(self, engine: AsyncEngine, start: datetime) -> dict[datetime, int]:
        """Rows per minute (UTC) from the minute ``start`` on, up to now."""
        async with self.lock:
            if self.since is None or start < self.since:
                async with engine.connect() as conn:
                    self._take_whole(await conn.run_sync(lambda c: self._whole(c, start)))
            else:
                await self.update(engine)
                for part in (self.settled, self.recent):
                    for minute in [m for m in part if m < start]:
                        del part[minute]
                self.since = start
            return self.counts()

    def whole(self, conn: Connection) -> Any:
        assert self.since is not None
        return self._whole(conn, self.since)

    def _whole(self, conn: Connection, start: datetime) -> tuple[datetime, Any]:
        first = first_id_since(conn, self.id_col, self.at_col, start)
        if first is None:
            return start, None  # nothing that recent: the next look counts again from the key
        return start, self.split(conn, first - 1)

    def _take_whole(self, whole: tuple[datetime, Any]) -> None:
        start, counts = whole
        if counts is None:
            self.since, self.settled, self.recent, self.last_id = None, {}, {}, 0
            return
        self.since = start
        self.take(counts)

    async def _take_later(self, whole: Any) -> None:
        # Taken unless a page has asked since for minutes older than it counted.
        async with self.lock:
            start, counts = whole
            if counts is not None and self.since is not None and start <= self.since:
                self.take(counts)


class RowCounter(_Split[str]):
    """The rows of one table since a moment (today's messages): counted, not grouped by minute."""

    def __init__(
        self, id_col: InstrumentedAttribute[int], at_col: InstrumentedAttribute[datetime], since: datetime
    ) -> None:
        super().__init__(id_col, at_col)
        self.since = since

    def count(self, conn: Connection, after: int, through: int | None = None) -> tuple[dict[str, int], int]:
        n, last = rows_after(conn, self.id_col, after, through)
        return {"rows": n}, last

    def whole(self, conn: Connection) -> Any:
        # The highest id before looking: a row that comes meanwhile is above it, counted next.
        top = int(conn.execute(select(func.max(self.id_col))).scalar() or 0)
        first = first_id_since(conn, self.id_col, self.at_col, self.since)
        if first is None:  # nothing since: every row up to ``top`` is older
            return {}, top, {}, top
        return self.split(conn, first - 1)

    def held(self) -> Held[str] | None:
        if not self.counted:
            return None
        through = self.last_id

        def recount(conn: Connection) -> dict[str, int]:
            first = first_id_since(conn, self.id_col, self.at_col, self.since)
            return {} if first is None else self.count(conn, first - 1, through)[0]

        return Held(self.counts(), through, recount)

    async def rows(self, engine: AsyncEngine) -> int:
        async with self.lock:
            if not self.counted:
                async with engine.connect() as conn:
                    self.take(await conn.run_sync(self.whole))
                self.counted = True
            else:
                await self.update(engine)
            return sum(self.counts().values())


class VoteCounter(_Split[str]):
    """A vote flow's votes per option, shared by its page loads and its live viewers."""

    def __init__(self, flow: LoadedFlow) -> None:
        super().__init__(Vote.id, Vote.created_at)
        self.flow = flow
        vote = flow.definition.vote  # type: ignore[attr-defined]
        self.options, self.labels = list(vote.options), dict(vote.labels)
        # A replaced vote changes an old row: only a whole count sees it.
        self.always_whole = vote.on_repeat == "replace"

    def count(self, conn: Connection, after: int, through: int | None = None) -> tuple[dict[str, int], int]:
        return count_votes(conn, self.flow.id, after, through)

    async def tally(self, engine: AsyncEngine) -> Tally:
        async with self.lock:
            if not self.counted or self.always_whole:
                async with engine.connect() as conn:
                    self.take(await conn.run_sync(lambda c: self.split(c, 0)))
                self.counted = True
            else:
                await self.update(engine)
            return make_tally(self.flow.id, self.options, self.labels, self.counts(), self.last_id, utcnow())


class EventCounter(_Split[tuple[str, str | None]]):
    """A flow's events by outcome and file hash: the event log figures on its page."""

    def __init__(self, flow_id: str) -> None:
        super().__init__(FlowEvent.id, FlowEvent.created_at)
        self.flow_id = flow_id

    def count(self, conn: Connection, after: int, through: int | None = None) -> tuple[EventCounts, int]:
        return count_events(conn, self.flow_id, after, through)

    async def flow_log(self, engine: AsyncEngine) -> FlowLog:
        async with self.lock:
            if not self.counted:
                async with engine.connect() as conn:
                    self.take(await conn.run_sync(lambda c: self.split(c, 0)))
                self.counted = True
            else:
                await self.update(engine)
            return log_of(self.counts())
