"""``GET /metrics``: the Prometheus scrape, behind the API token unless SMSFLOWS_METRICS says otherwise."""

from __future__ import annotations

from litestar import Request, Response, get
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.handlers import BaseRouteHandler, HTTPRouteHandler
from sqlalchemy.ext.asyncio import AsyncEngine

from app.api.auth import require_token
from app.metrics import CONTENT_TYPE, database_metrics, exposition
from app.settings import Settings


def _metrics_guard(
    connection: ASGIConnection[object, object, object, State], handler: BaseRouteHandler
) -> None:
    settings: Settings = connection.app.state.settings
    if settings.metrics == "token":
        require_token(connection, handler)


@get("/metrics", guards=[_metrics_guard], include_in_schema=False, summary="Prometheus metrics")
async def metrics(request: Request[object, object, State]) -> Response[bytes]:
    engine: AsyncEngine = request.app.state.engine
    async with engine.connect() as conn:
        stored = await conn.run_sync(database_metrics)
    return Response(exposition(stored), media_type=CONTENT_TYPE)


def metrics_routes(settings: Settings) -> list[HTTPRouteHandler]:
    """The /metrics route, unless SMSFLOWS_METRICS=off."""
    return [] if settings.metrics == "off" else [metrics]
