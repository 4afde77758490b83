"""``GET /audit``: who changed what, newest first, with keyset paging."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromQuery
from litestar.response import Template
from sqlalchemy.ext.asyncio import AsyncEngine

from app.dashboard.auth import require
from app.reads.audit import audit_page


class AuditController(Controller):
    path = "/audit"
    guards = (require("operator"),)

    @get("/", name="audit")
    async def page(
        self,
        request: Request[Any, Any, Any],
        db_engine: NamedDependency[AsyncEngine],
        before: FromQuery[int | None] = None,
        action: FromQuery[str | None] = None,
    ) -> Template:
        async with db_engine.connect() as conn:
            page = await conn.run_sync(lambda c: audit_page(c, before=before, action=action or None))
        return Template(template_name="audit.html", context={"page": page, "action": action or ""})
