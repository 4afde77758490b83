"""Live tallies: one counting loop per vote flow, shared by everybody who watches it.

However many pages are open, a flow's votes are counted once a second at most, and only the votes
that came since the last count (``count_votes(after_id=...)``); each page then gets the new tally.
A flow that replaces repeated votes (``on_repeat = "replace"``) changes old rows, so it is counted
whole, still once for all viewers. The loop stops when the last viewer leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.models import utcnow
from app.flows.loader import LoadedFlow
from app.reads.tally import Tally, count_votes, make_tally

log = logging.getLogger("smsflows.dashboard")

INTERVAL = 1.0
"""Seconds between counts while somebody watches."""
KEEPALIVE = 15.0
"""Seconds without news after which a viewer gets an empty message, so a dead connection shows."""


class _Feed:
    def __init__(self, engine: AsyncEngine, flow: LoadedFlow) -> None:
        self.engine, self.flow = engine, flow
        self.watchers = 0
        self.tally: Tally | None = None
        self.changed = asyncio.Condition()
        self.task: asyncio.Task[None] | None = None
        self.counts: dict[str, int] = {}
        self.last_id = 0

    async def count(self) -> Tally:
        vote = self.flow.definition.vote  # type: ignore[attr-defined]
        whole = vote.on_repeat == "replace"
        async with self.engine.connect() as conn:
            new, last = await conn.run_sync(
                lambda c: count_votes(c, self.flow.id, 0 if whole else self.last_id)
            )
        if whole:
            self.counts = new
        else:
            for option, n in new.items():
                self.counts[option] = self.counts.get(option, 0) + n
        self.last_id = last
        return make_tally(self.flow.id, list(vote.options), dict(vote.labels), self.counts, last, utcnow())

    async def run(self) -> None:
        while self.watchers > 0:
            try:
                fresh = await self.count()
            except Exception:  # a database hiccup must not end the feed; the next count retries
                log.exception("live tally of %s could not be counted", self.flow.id)
            else:
                if self.tally is None or fresh.options != self.tally.options:
                    async with self.changed:
                        self.tally = fresh
                        self.changed.notify_all()
            await asyncio.sleep(INTERVAL)


def _changed_since(feed: _Feed, seen: Tally | None) -> Callable[[], bool]:
    return lambda: feed.tally is not seen


class TallyHub:
    """Hands out live tallies; one per process, kept on the app's state."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.feeds: dict[tuple[str, str], _Feed] = {}

    async def watch(self, flow: LoadedFlow) -> AsyncIterator[Tally | None]:
        """The tally now, then each time it changes; None when nothing changed for a while."""
        key = (flow.id, flow.hash)
        feed = self.feeds.get(key)
        if feed is None:
            feed = self.feeds[key] = _Feed(self.engine, flow)
        feed.watchers += 1
        if feed.task is None or feed.task.done():
            feed.task = asyncio.create_task(feed.run(), name=f"live tally {flow.id}")
        try:
            seen: Tally | None = None
            while True:
                async with feed.changed:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(feed.changed.wait_for(_changed_since(feed, seen)), KEEPALIVE)
                    current = feed.tally
                if current is seen:
                    yield None
                else:
                    seen = current
                    yield current
        finally:
            feed.watchers -= 1
            if feed.watchers == 0 and self.feeds.get(key) is feed:
                del self.feeds[key]  # the loop sees no watchers and ends by itself
