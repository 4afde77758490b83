"""``GET /api/counters/check``: the dashboard's live counters of this process against a full recount."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get

from app.api.auth import require_token
from app.api.schema import BEARER
from app.dashboard.counter_check import CountersCheck, check_counters
from app.dashboard.live import hub_of


class CountersController(Controller):
    path = "/api/counters"
    guards = [require_token]  # noqa: RUF012 - Litestar reads this class attribute
    security = [{BEARER: []}]  # noqa: RUF012 - declared in the schema, so "try it" sends the token
    tags = ["counters"]  # noqa: RUF012

    @get("/check", summary="Compare the live counters with a full recount now")
    async def check(self, request: Request[Any, Any, Any]) -> CountersCheck:
        """Every counter this process keeps for the dashboard (tallies, event logs, today's totals,
        counts per minute), its value next to a full recount up to the highest id it has seen.
        With several workers, each keeps its own: the one that answers is checked."""
        return await check_counters(hub_of(request))
