"""Counts the dashboard keeps per process and brings up to date by counting only new rows.

Ids grow with arrival, so "what came since the last look" is ``id > last_id``: a page refresh
costs a few rows, not the table. Where transactions of several writers (PostgreSQL, many
workers) can commit ids out of order, a row committed late behind a higher id would be missed,
so every ``RECOUNT`` seconds the numbers are counted whole again.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import InstrumentedAttribute

from app.db.models import utcnow
from app.flows.loader import LoadedFlow
from app.reads.series import first_id_since, minute_counts
from app.reads.tally import Tally, count_votes, make_tally

RECOUNT = 30.0


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
        self.counted_whole_at = 0.0
        self.lock = asyncio.Lock()

    async def series(self, engine: AsyncEngine, start: datetime, minutes: int) -> list[int]:
        async with self.lock, engine.connect() as conn:
            await conn.run_sync(lambda c: self._update(c, start))
        return [self.buckets.get(start + timedelta(minutes=i), 0) for i in range(minutes)]

    def _update(self, conn: Connection, start: datetime) -> None:
        oldest = start
        if self.last_id is None or time.monotonic() - self.counted_whole_at > RECOUNT:
            first = first_id_since(conn, self.id_col, self.at_col, oldest)
            self.buckets, self.last_id = {}, (first - 1) if first is not None else None
            self.counted_whole_at = time.monotonic()
            if first is None:
                return
        assert self.last_id is not None
        fresh, self.last_id = minute_counts(conn, self.id_col, self.at_col, self.last_id, *self.where)
        for minute, count in fresh.items():
            self.buckets[minute] = self.buckets.get(minute, 0) + count
        for minute in [m for m in self.buckets if m < oldest]:
            del self.buckets[minute]


class VoteCounter:
    """A vote flow's votes per option, shared by its page loads and its live viewers."""

    def __init__(self, flow: LoadedFlow) -> None:
        self.flow = flow
        vote = flow.definition.vote  # type: ignore[attr-defined]
        self.options, self.labels = list(vote.options), dict(vote.labels)
        # A replaced vote changes an old row: only a whole count sees it.
        self.always_whole = vote.on_repeat == "replace"
        self.counts: dict[str, int] = {}
        self.last_id = 0
        self.counted_whole_at = 0.0
        self.lock = asyncio.Lock()

    async def tally(self, engine: AsyncEngine) -> Tally:
        async with self.lock:
            whole = self.always_whole or time.monotonic() - self.counted_whole_at > RECOUNT
            after = 0 if whole else self.last_id
            async with engine.connect() as conn:
                new, last = await conn.run_sync(lambda c: count_votes(c, self.flow.id, after))
            if whole:
                self.counts, self.counted_whole_at = new, time.monotonic()
            else:
                for option, n in new.items():
                    self.counts[option] = self.counts.get(option, 0) + n
            self.last_id = last
            return make_tally(self.flow.id, self.options, self.labels, self.counts, last, utcnow())
