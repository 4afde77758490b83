"""``/health`` (the process answers) and ``/ready`` (the database answers and is migrated)."""

from __future__ import annotations

import msgspec
from litestar import Response, get
from litestar.di import NamedDependency
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.migrate import head_revision, is_current


class Health(msgspec.Struct, frozen=True):
    status: str
    detail: str | None = None


@get("/health", tags=["health"], summary="The process is alive", sync_to_thread=False)
def health() -> Health:
    return Health(status="ok")


@get("/ready", tags=["health"], summary="The database is reachable and migrated")
async def ready(db_engine: NamedDependency[AsyncEngine]) -> Response[Health]:
    try:
        async with db_engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        current = await is_current(db_engine)
    except Exception as exc:  # any failure means "not ready", and says why
        return Response(
            Health("unavailable", f"database unreachable: {exc.__class__.__name__}"), status_code=503
        )
    if not current:
        return Response(
            Health("unavailable", f"migrations pending (head {head_revision()}): run `smsflows db upgrade`"),
            status_code=503,
        )
    return Response(Health("ok"))
