"""Live tallies: one counting loop per vote flow, shared by everybody who watches it.

However many pages are open, a flow's votes are counted once a second at most, and only the votes
that came since the last count (see app/dashboard/counting.py); each page then gets the new tally.
The loop stops when the last viewer leaves. The hub also keeps the counters that page loads use,
and counts them once when the service starts, so that the first page shown does not wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import datetime
from typing import Any

from litestar import Request
from sqlalchemy.ext.asyncio import AsyncEngine

from app.dashboard.counting import EventCounter, MinuteCounter, RowCounter, VoteCounter
from app.db.flow_models import Vote
from app.db.models import InboundMessage, OutboxMessage, utcnow
from app.flows.loader import LoadedFlow
from app.reads.flow_log import FlowLog
from app.reads.overview import today_start
from app.reads.series import unindexed, window
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
        # Set once when the tally changes, then replaced: a watcher waits on the one it saw.
        # (An asyncio.Condition under wait_for's timeout can be left unlocked by a cancellation
        # landing while it re-acquires; an Event has no lock to lose.)
        self.changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        while self.watchers > 0:
            try:
                fresh = await self.counter.tally(self.engine)
            except Exception:  # a database hiccup must not end the feed; the next count retries
                log.exception("live tally of %s could not be counted", self.counter.flow.id)
            else:
                if self.tally is None or fresh.options != self.tally.options:
                    self.tally = fresh
                    self.changed.set()
                    self.changed = asyncio.Event()
            await asyncio.sleep(INTERVAL)


class TallyHub:
    """Hands out live tallies; one per process, kept on the app's state."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.feeds: dict[tuple[str, str], _Feed] = {}
        self.counters: dict[tuple[str, str], VoteCounter] = {}
        self.minutes: dict[str, MinuteCounter] = {}
        self.events: dict[str, EventCounter] = {}
        self.totals: dict[str, RowCounter] = {}
        self.warming: asyncio.Task[None] | None = None
        self.fragments: dict[tuple[str, str], tuple[Tally, str]] = {}

    def counter(self, flow: LoadedFlow) -> VoteCounter:
        key = (flow.id, flow.hash)
        found = self.counters.get(key)
        if found is None:
            found = self.counters[key] = VoteCounter(flow)
        return found

    async def snapshot(self, flow: LoadedFlow) -> Tally:
        """The tally now, counting only what came since this process last counted."""
        return await self.counter(flow).tally(self.engine)

    async def flow_log(self, flow_id: str) -> FlowLog:
        """The flow's event log by outcome and file hash, counting only the events since the last look."""
        found = self.events.get(flow_id)
        if found is None:
            found = self.events[flow_id] = EventCounter(flow_id)
        return await found.flow_log(self.engine)

    def minute_counter(self, name: str, make: Callable[[], MinuteCounter]) -> MinuteCounter:
        """The per-minute counter called ``name`` (made by ``make`` the first time)."""
        found = self.minutes.get(name)
        if found is None:
            found = self.minutes[name] = make()
        return found

    def fragment(self, tally: Tally, language: str, render: Callable[[Tally], str]) -> str:
        """The live page's HTML for ``tally`` in ``language``, rendered once for all who watch."""
        key = (tally.flow, language)
        found = self.fragments.get(key)
        if found is None or found[0] is not tally:
            found = self.fragments[key] = (tally, render(tally))
        return found[1]

    async def today(self, now: datetime) -> tuple[int, int]:
        """Messages received and messages queued since midnight in Warsaw: the overview's totals."""
        midnight = today_start(now)
        counts = []
        for name, id_col, at_col in (
            ("inbound", InboundMessage.id, InboundMessage.received_at),
            ("outbound", OutboxMessage.id, OutboxMessage.created_at),
        ):
            found = self.totals.get(name)
            if found is None or found.since != midnight:  # a new day: yesterday's count goes
                found = self.totals[name] = RowCounter(id_col, at_col, midnight)
            counts.append(await found.rows(self.engine))
        return counts[0], counts[1]

    def traffic(self) -> tuple[MinuteCounter, MinuteCounter]:
        """Messages received and messages queued per minute: the overview's chart."""
        return (
            self.minute_counter(
                "inbound", lambda: MinuteCounter(InboundMessage.id, InboundMessage.received_at)
            ),
            self.minute_counter(
                "outbound", lambda: MinuteCounter(OutboxMessage.id, OutboxMessage.created_at)
            ),
        )

    def votes_per_minute(self, flow: LoadedFlow) -> MinuteCounter:
        """A vote flow's votes per minute: its page's chart."""
        return self.minute_counter(
            f"votes {flow.id}",
            lambda: MinuteCounter(Vote.id, Vote.created_at, unindexed(Vote.flow_id) == flow.id),
        )

    def warm_up(self, flows: Iterable[LoadedFlow]) -> None:
        """Count in the background what the overview and the flow pages show: the traffic per
        minute over the chart's hours, today's totals, the tallies and votes per minute, the
        event logs."""
        flows = list(flows)
        votes = [f for f in flows if f.kind == "vote"]

        async def count() -> None:
            try:
                for counter in self.traffic():
                    await counter.minutes(self.engine, chart_start(utcnow()))
                await self.today(utcnow())
                for flow in votes:
                    await self.snapshot(flow)
                    await self.votes_per_minute(flow).minutes(self.engine, window(utcnow(), hours=1)[0])
                for flow in flows:
                    await self.flow_log(flow.id)
            except Exception:  # the first page counts instead
                log.exception("the dashboard's counts could not be made at start")

        self.warming = asyncio.create_task(count(), name="dashboard counts")

    async def stop(self) -> None:
        """End the background counts (start-up counting, recounts) before the engine goes."""
        counters: list[VoteCounter | MinuteCounter | EventCounter | RowCounter] = [
            *self.counters.values(),
            *self.minutes.values(),
            *self.events.values(),
            *self.totals.values(),
        ]
        recounts = [task for c in counters for task in (c.recounts.task, c.tails.task)]
        tasks = [self.warming, *recounts, *(f.task for f in self.feeds.values())]
        for task in tasks:
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in tasks if t is not None), return_exceptions=True)

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
                if feed.tally is seen:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(feed.changed.wait(), KEEPALIVE)
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


def chart_start(now: datetime) -> datetime:
    """The first minute of the overview's chart: three hours back."""
    return window(now, hours=3)[0]


def hub_of(request: Request[Any, Any, Any]) -> TallyHub:
    """The process's hub, made on first use (it holds nothing that start-up must prepare)."""
    hub: TallyHub | None = request.app.state.get("tally_hub")
    if hub is None:
        hub = request.app.state.tally_hub = TallyHub(request.app.state.engine)
    return hub
