"""``/api/flows``: the running flows, reloading them from their files, and each flow's results."""

from __future__ import annotations

from litestar import Controller, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import FromPath
from sqlalchemy.ext.asyncio import AsyncEngine

from app.api.auth import require_token
from app.api.schema import BEARER
from app.api.schemas import FlowOut, FlowResultsOut, FlowsOut, ReloadOut
from app.db.models import utcnow
from app.flows.live import LiveFlows
from app.reads.results import flow_results


def _live(state: State) -> LiveFlows:
    flows: LiveFlows = state.flows
    return flows


class FlowsController(Controller):
    path = "/api/flows"
    guards = [require_token]  # noqa: RUF012 - Litestar reads this class attribute
    security = [{BEARER: []}]  # noqa: RUF012 - declared in the schema, so "try it" sends the token
    tags = ["flows"]  # noqa: RUF012

    @get("/", summary="The running flows, when they were loaded and the last reload error")
    async def list_flows(self, state: State) -> FlowsOut:
        live, now = _live(state), utcnow()
        return FlowsOut(
            flows=[FlowOut.of(f, now) for f in live.current.flows.values()],
            directory=str(live.directory),
            loaded_at=live.loaded_at,
            last_error=live.last_error,
        )

    @post("/reload", status_code=200, summary="Load the flow files again (as SIGHUP does)")
    async def reload(self, state: State) -> ReloadOut:
        """The new set replaces the running one whole, or not at all: on any error (422) the
        running flows keep answering and the errors name the file and the field."""
        live = _live(state)
        error = live.reload()
        if error is not None:
            raise ClientException(
                "the flow files have errors, so the running flows stay; fix them and reload again",
                status_code=422,
                extra={"errors": error.splitlines()},
            )
        return ReloadOut(flows=sorted(live.current.flows), loaded_at=live.loaded_at)

    @get("/{flow_id:str}/results", summary="A flow's results and its decisions by outcome")
    async def results(
        self, state: State, db_engine: NamedDependency[AsyncEngine], flow_id: FromPath[str]
    ) -> FlowResultsOut:
        flow = _live(state).current.flows.get(flow_id)
        if flow is None:
            raise NotFoundException(f"no flow {flow_id!r} is running; GET /api/flows lists them")
        async with db_engine.connect() as conn:
            return FlowResultsOut.of(await conn.run_sync(flow_results, flow))
