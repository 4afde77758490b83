"""Counts the dashboard keeps per process and brings up to date by counting only new rows.

Ids grow with arrival, so "what came since the last look" is ``id > last_id``: a page refresh
costs a few rows, not the table. Where transactions of several writers (PostgreSQL, many
workers) can commit ids out of order, a row committed late behind a higher id would be missed,
so every ``RECOUNT`` seconds the numbers are counted whole again. SQLite has one writer at a
time, so ids commit in order there and the recount only catches rows deleted since (an erased
number): it runs every ``RECOUNT_SQLITE`` seconds. The recount runs beside the requests, not in
one: a page keeps answering from the new rows while it runs, and takes its result when it is
done. Only the very first count of a counter is waited for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import InstrumentedAttribute

from app.db.models import utcnow
from app.flows.loader import LoadedFlow
from app.reads.series import first_id_since, minute_counts
from app.reads.tally import Tally, count_votes, make_tally

RECOUNT = 30.0
RECOUNT_SQLITE = 600.0

log = logging.getLogger("smsflows.dashboard")


class _Recounts:
    """The whole recount of a counter, started when due and at most one at a time."""

    def __init__(self) -> None:
        self.counted_whole_at = 0.0
        self.task: asyncio.Task[None] | None = None

    def due(self, engine: AsyncEngine) -> bool:
        every = RECOUNT_SQLITE if engine.dialect.name == "sqlite" else RECOUNT
        return time.monotonic() - self.counted_whole_at > every

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


class MinuteCounter:
    """Rows per minute of one table (optionally narrowed, e.g. to one flow's votes)."""

    def __init__(
        self,
        id_col: InstrumentedAttribute[int],
        at_col: InstrumentedAttribute[datetime],
        *where: ColumnElement[bool],
    ) -> None:
        self.id_col, self.at_col, self.where = id_col, at_col, where
        self.buckets: dict[datetime, int] = {}
        self.last_id: int | None = None
        self.since: datetime | None = None
        """The first minute the buckets hold every row of; None: nothing counted yet."""
        self.recounts = _Recounts()
        self.lock = asyncio.Lock()

    async def series(self, engine: AsyncEngine, start: datetime, minutes: int) -> list[int]:
        buckets = await self.minutes(engine, start)
        return [buckets.get(start + timedelta(minutes=i), 0) for i in range(minutes)]

    async def minutes(self, engine: AsyncEngine, start: datetime) -> dict[datetime, int]:
        """Rows per minute (UTC) from the minute ``start`` on, up to now."""
        async with self.lock:
            if self.since is None or start < self.since:
                async with engine.connect() as conn:
                    self._take(await conn.run_sync(lambda c: self._whole(c, start)))
            else:
                if self.recounts.due(engine):
                    self.recounts.start(engine, lambda c: self._whole(c, start), self._take_later)
                if self.last_id is not None:
                    async with engine.connect() as conn:
                        fresh, self.last_id = await conn.run_sync(self._fresh)
                    for minute, count in fresh.items():
                        self.buckets[minute] = self.buckets.get(minute, 0) + count
                for minute in [m for m in self.buckets if m < start]:
                    del self.buckets[minute]
                self.since = start
            return dict(self.buckets)

    def _fresh(self, conn: Connection) -> tuple[dict[datetime, int], int]:
        assert self.last_id is not None
        return minute_counts(conn, self.id_col, self.at_col, self.last_id, *self.where)

    def _whole(self, conn: Connection, start: datetime) -> tuple[datetime, dict[datetime, int], int | None]:
        first = first_id_since(conn, self.id_col, self.at_col, start)
        if first is None:
            return start, {}, None  # nothing that recent: the next look counts again from the key
        buckets, last = minute_counts(conn, self.id_col, self.at_col, first - 1, *self.where)
        return start, buckets, last

    def _take(self, whole: tuple[datetime, dict[datetime, int], int | None]) -> None:
        self.since, self.buckets, self.last_id = whole
        if self.last_id is None:
            self.since = None
        self.recounts.counted_whole_at = time.monotonic()

    async def _take_later(self, whole: tuple[datetime, dict[datetime, int], int | None]) -> None:
        # The recount saw every row up to its last id; rows after it are counted again by the
        # next look, so nothing is counted twice. It is taken unless a page has asked since for
        # minutes older than it counted.
        async with self.lock:
            if self.since is not None and whole[0] <= self.since:
                self._take(whole)


class VoteCounter:
    """A vote flow's votes per option, shared by its page loads and its live viewers."""

    def __init__(self, flow: LoadedFlow) -> None:
        self.flow = flow
        vote = flow.definition.vote  # type: ignore[attr-defined]
        self.options, self.labels = list(vote.options), dict(vote.labels)
        # A replaced vote changes an old row: only a whole count sees it.
        self.always_whole = vote.on_repeat == "replace"
        self.counts: dict[str, int] | None = None
        self.last_id = 0
        self.recounts = _Recounts()
        self.lock = asyncio.Lock()

    async def tally(self, engine: AsyncEngine) -> Tally:
        async with self.lock:
            counts = self.counts
            if counts is None or self.always_whole:
                async with engine.connect() as conn:
                    whole, self.last_id = await conn.run_sync(self._whole)
                self.counts = counts = whole
                self.recounts.counted_whole_at = time.monotonic()
            else:
                if self.recounts.due(engine):
                    self.recounts.start(engine, self._whole, self._take_later)
                async with engine.connect() as conn:
                    new, last = await conn.run_sync(lambda c: count_votes(c, self.flow.id, self.last_id))
                for option, n in new.items():
                    counts[option] = counts.get(option, 0) + n
                self.last_id = last
            return make_tally(self.flow.id, self.options, self.labels, counts, self.last_id, utcnow())

    def _whole(self, conn: Connection) -> tuple[dict[str, int], int]:
        return count_votes(conn, self.flow.id)

    async def _take_later(self, whole: tuple[dict[str, int], int]) -> None:
        async with self.lock:  # as for the minutes: the next look counts what came after it
            self.counts, self.last_id = dict(whole[0]), whole[1]
