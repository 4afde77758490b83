"""``/api/flows/{id}/audit``: a flow's results rebuilt from the event log, against the live tables."""

from __future__ import annotations

from litestar import Controller, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import FromPath
from sqlalchemy.ext.asyncio import AsyncEngine

from app.api.auth import require_token
from app.evidence import AuditError, AuditReport, audit
from app.flows.live import LiveFlows


class AuditController(Controller):
    path = "/api/flows/{flow_id:str}/audit"
    guards = [require_token]  # noqa: RUF012 - Litestar reads this class attribute
    tags = ["flows"]  # noqa: RUF012

    @get("/", summary="The flow's results rebuilt from the event log and compared with the live tables")
    async def audit(
        self, state: State, db_engine: NamedDependency[AsyncEngine], flow_id: FromPath[str]
    ) -> AuditReport:
        live: LiveFlows = state.flows
        flow = live.current.flows.get(flow_id)
        if flow is None:
            raise NotFoundException(f"no flow {flow_id!r} is running; GET /api/flows lists them")
        async with db_engine.connect() as conn:
            try:
                return await conn.run_sync(audit, flow)
            except AuditError as exc:
                raise ClientException(str(exc), status_code=422) from None
