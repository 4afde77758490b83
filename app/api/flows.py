"""``/api/flows``: the running flows, reloading them from their files, and each flow's results."""

from __future__ import annotations

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from sqlalchemy.ext.asyncio import AsyncEngine

from app.api.auth import require_token
from app.api.schema import BEARER
from app.api.schemas import FlowOut, FlowResultsOut, FlowsOut, ReloadOut
from app.db.models import utcnow
from app.errors import FlowFileError, NotFound
from app.flows.live import LiveFlows
from app.reads.results import flow_results


class FlowsController(Controller):
    path = "/api/flows"
    guards = [require_token]  # noqa: RUF012 - Litestar reads this class attribute
    security = [{BEARER: []}]  # noqa: RUF012 - declared in the schema, so "try it" sends the token
    tags = ["flows"]  # noqa: RUF012

    @get("/", summary="The running flows, when they were loaded and the last reload error")
    async def list_flows(self, live_flows: NamedDependency[LiveFlows]) -> FlowsOut:
        now = utcnow()
        return FlowsOut(
            flows=[FlowOut.of(f, now) for f in live_flows.current.flows.values()],
            directory=str(live_flows.directory),
            loaded_at=live_flows.loaded_at,
            last_error=live_flows.last_error,
        )

    @post("/reload", status_code=200, summary="Load the flow files again (as SIGHUP does)")
    async def reload(self, live_flows: NamedDependency[LiveFlows]) -> ReloadOut:
        """The new set replaces the running one whole, or not at all: on any error (422) the
        running flows keep answering and the errors name the file and the field."""
        error = live_flows.reload()
        if error is not None:
            raise FlowFileError(
                "the flow files have errors, so the running flows stay; fix them and reload again",
                extra={"errors": error.splitlines()},
            )
        return ReloadOut(flows=sorted(live_flows.current.flows), loaded_at=live_flows.loaded_at)

    @get("/{flow_id:str}/results", summary="A flow's results and its decisions by outcome")
    async def results(
        self,
        live_flows: NamedDependency[LiveFlows],
        db_engine: NamedDependency[AsyncEngine],
        flow_id: FromPath[str],
    ) -> FlowResultsOut:
        flow = live_flows.current.flows.get(flow_id)
        if flow is None:
            raise NotFound(f"no flow {flow_id!r} is running; GET /api/flows lists them")
        async with db_engine.connect() as conn:
            return FlowResultsOut.of(await conn.run_sync(flow_results, flow))
