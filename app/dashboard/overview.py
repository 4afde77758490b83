"""``GET /``: the overview a producer glances at; its live part re-renders alone for HTMX."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.response import Template
from sqlalchemy.ext.asyncio import AsyncEngine

from app.dashboard.auth import require
from app.dashboard.counting import MinuteCounter
from app.dashboard.live import hub_of
from app.db.models import InboundMessage, OutboxMessage, utcnow
from app.flows.live import LiveFlows
from app.reads.overview import overview
from app.reads.series import PerMinute, window


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
        async with engine.connect() as conn:
            summary = await conn.run_sync(lambda c: overview(c, flows, now, figures))
        start, minutes = window(now, hours=3)
        inbound = hub.minute_counter(
            "inbound", lambda: MinuteCounter(InboundMessage.id, InboundMessage.received_at)
        )
        outbound = hub.minute_counter(
            "outbound", lambda: MinuteCounter(OutboxMessage.id, OutboxMessage.created_at)
        )
        series = PerMinute(
            start=start,
            minutes=minutes,
            inbound=await inbound.series(engine, start, minutes),
            outbound=await outbound.series(engine, start, minutes),
        )
        return Template(template_name=name, context={"o": summary, "series": series, "now": now})
