"""``GET /``: the overview a producer glances at; its live part re-renders alone for HTMX."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.response import Template
from sqlalchemy.ext.asyncio import AsyncEngine

from app.dashboard.auth import require
from app.dashboard.live import chart_start, hub_of
from app.db.models import utcnow
from app.flows.live import LiveFlows
from app.reads.overview import overview
from app.reads.series import PerMinute, window

CAP = 10_000
"""The queue counts stop here: past it the page says "10,000+", which is all it needs to say,
and the millions delivered cost no more to count than the few waiting."""


class OverviewController(Controller):
    path = "/"
    guards = (require("viewer"),)

    @get("/", name="overview")
    async def page(
        self, request: Request[Any, Any, Any], db_engine: NamedDependency[AsyncEngine]
    ) -> Template:
        return await self._render(request, db_engine, "overview.html")

    @get("/overview/figures", name="overview-figures")
    async def figures(
        self, request: Request[Any, Any, Any], db_engine: NamedDependency[AsyncEngine]
    ) -> Template:
        """The same figures as the page, alone: what the page's refresh swaps in."""
        return await self._render(request, db_engine, "_overview.html")

    async def _render(self, request: Request[Any, Any, Any], engine: AsyncEngine, name: str) -> Template:
        live: LiveFlows = request.app.state.flows
        flows = list(live.current.flows.values())
        hub = hub_of(request)
        now = utcnow()
        figures = {f.id: (await hub.snapshot(f)).total for f in flows if f.kind == "vote"}
        # The chart's minutes and today's totals: both only add the new rows.
        since = chart_start(now)
        received, queued = hub.traffic()
        inbound, outbound = await received.minutes(engine, since), await queued.minutes(engine, since)
        today = await hub.today(now)
        async with engine.connect() as conn:
            summary = await conn.run_sync(lambda c: overview(c, flows, now, figures, today=today, cap=CAP))
        start, minutes = window(now, hours=3)
        series = PerMinute(
            start=start,
            minutes=minutes,
            inbound=[inbound.get(start + timedelta(minutes=i), 0) for i in range(minutes)],
            outbound=[outbound.get(start + timedelta(minutes=i), 0) for i in range(minutes)],
        )
        return Template(template_name=name, context={"o": summary, "series": series, "now": now})
