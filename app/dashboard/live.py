"""Live tallies: one counting loop per vote flow, shared by everybody who watches it.

However many pages are open, a flow's votes are counted once a second at most, and only the votes
that came since the last count (see app/dashboard/counting.py); each page then gets the new tally.
The loop stops when the last viewer leaves. The hub also keeps the counters that page loads use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from litestar import Request
from sqlalchemy.ext.asyncio import AsyncEngine

from app.dashboard.counting import MinuteCounter, VoteCounter
from app.flows.loader import LoadedFlow
from app.reads.tally import Tally

log = logging.getLogger("smsflows.dashboard")

INTERVAL = 1.0
"""Seconds between counts while somebody watches."""
KEEPALIVE = 15.0
"""Seconds without news after which a viewer gets an empty message, so a dead connection shows."""


class _Feed:
    def __init__(self, engine: AsyncEngine, counter: VoteCounter) -> None:
        self.engine, self.counter = engine, counter
        self.watchers = 0
        self.tally: Tally | None = None
        self.changed = asyncio.Condition()
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        while self.watchers > 0:
            try:
                fresh = await self.counter.tally(self.engine)
            except Exception:  # a database hiccup must not end the feed; the next count retries
                log.exception("live tally of %s could not be counted", self.counter.flow.id)
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
        self.counters: dict[tuple[str, str], VoteCounter] = {}
        self.minutes: dict[str, MinuteCounter] = {}

    def counter(self, flow: LoadedFlow) -> VoteCounter:
        key = (flow.id, flow.hash)
        found = self.counters.get(key)
        if found is None:
            found = self.counters[key] = VoteCounter(flow)
        return found

    async def snapshot(self, flow: LoadedFlow) -> Tally:
        """The tally now, counting only what came since this process last counted."""
        return await self.counter(flow).tally(self.engine)

    def minute_counter(self, name: str, make: Callable[[], MinuteCounter]) -> MinuteCounter:
        """The per-minute counter called ``name`` (made by ``make`` the first time)."""
        found = self.minutes.get(name)
        if found is None:
            found = self.minutes[name] = make()
        return found

    async def watch(self, flow: LoadedFlow) -> AsyncIterator[Tally | None]:
        """The tally now, then each time it changes; None when nothing changed for a while."""
        key = (flow.id, flow.hash)
        feed = self.feeds.get(key)
        if feed is None:
            feed = self.feeds[key] = _Feed(self.engine, self.counter(flow))
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


def hub_of(request: Request[Any, Any, Any]) -> TallyHub:
    """The process's hub, made on first use (it holds nothing that start-up must prepare)."""
    hub: TallyHub | None = request.app.state.get("tally_hub")
    if hub is None:
        hub = request.app.state.tally_hub = TallyHub(request.app.state.engine)
    return hub
