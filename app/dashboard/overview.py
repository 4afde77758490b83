"""``GET /``: the overview a producer glances at; its live part re-renders alone for HTMX."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.response import Template
from sqlalchemy.ext.asyncio import AsyncEngine

from app.dashboard.auth import require
from app.db.models import utcnow
from app.flows.live import LiveFlows
from app.reads.overview import overview
from app.reads.series import per_minute


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
        now = utcnow()
        async with engine.connect() as conn:
            summary = await conn.run_sync(lambda c: overview(c, list(live.current.flows.values()), now))
            series = await conn.run_sync(lambda c: per_minute(c, now, hours=3))
        return Template(template_name=name, context={"o": summary, "series": series, "now": now})
