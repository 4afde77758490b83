"""``/api/contacts``: one phone's messages to a flow and the decision on each ("did my vote count?")."""

from __future__ import annotations

from litestar import Controller, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from sqlalchemy.ext.asyncio import AsyncEngine

from app.api.auth import require_token
from app.flows.live import LiveFlows
from app.mobitex.mo_form import normalise_number
from app.reads.participation import Participation, participation


class ContactsController(Controller):
    path = "/api/contacts"
    guards = [require_token]  # noqa: RUF012 - Litestar reads this class attribute
    tags = ["contacts"]  # noqa: RUF012

    @get("/{number:str}/flows/{flow_id:str}", summary="A phone's messages to a flow, decisions and reasons")
    async def participation(
        self,
        state: State,
        db_engine: NamedDependency[AsyncEngine],
        number: FromPath[str],
        flow_id: FromPath[str],
    ) -> Participation:
        live: LiveFlows = state.flows
        flow = live.current.flows.get(flow_id)
        if flow is None:
            raise NotFoundException(f"no flow {flow_id!r} is running; GET /api/flows lists them")
        async with db_engine.connect() as conn:
            return await conn.run_sync(participation, flow, normalise_number(number))
