"""``GET /audit``: who changed what, newest first, with keyset paging."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromQuery, QueryParameter
from litestar.response import Template
from sqlalchemy.ext.asyncio import AsyncEngine

from app.dashboard.auth import require
from app.db.models import MAX_ID
from app.reads.audit import audit_page

# Bounded like the API's cursors: a larger number names no row, and is a 400, not a 500.
AuditCursor = Annotated[int | None, QueryParameter(ge=1, le=MAX_ID, description="the page before this id")]


class AuditController(Controller):
    path = "/audit"
    guards = (require("operator"),)

    @get("/", name="audit")
    async def page(
        self,
        request: Request[Any, Any, Any],
        db_engine: NamedDependency[AsyncEngine],
        before: AuditCursor = None,
        action: FromQuery[str | None] = None,
    ) -> Template:
        async with db_engine.connect() as conn:
            page = await conn.run_sync(lambda c: audit_page(c, before=before, action=action or None))
        return Template(template_name="audit.html", context={"page": page, "action": action or ""})
