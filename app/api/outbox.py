"""``/api/outbox``: the replies and messages the flows queued, newest first."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.auth import require_token
from app.api.deps import read
from app.api.params import Cursor, Limit
from app.api.schema import BEARER
from app.api.schemas import OutboxPage
from app.db.models import OUTBOX_STATUSES
from app.errors import InvalidRequest
from app.mobitex.mo_form import normalise_number
from app.reads.messages import list_outbox


class OutboxController(Controller):
    path = "/api"
    guards = [require_token]  # noqa: RUF012 - Litestar reads this class attribute
    security = [{BEARER: []}]  # noqa: RUF012 - declared in the schema, so "try it" sends the token
    tags = ["outbox"]  # noqa: RUF012

    @get("/outbox", summary="Queued and sent messages, newest first")
    async def list_outbox(
        self,
        db_session: NamedDependency[AsyncSession],
        status: Annotated[
            str | None, QueryParameter(description=f"one of {', '.join(OUTBOX_STATUSES)}")
        ] = None,
        to: Annotated[str | None, QueryParameter(description="the recipient's phone, any format")] = None,
        flow: Annotated[str | None, QueryParameter(description="the id of the flow that queued it")] = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> OutboxPage:
        if status is not None and status not in OUTBOX_STATUSES:
            raise InvalidRequest(f"status must be one of {', '.join(OUTBOX_STATUSES)}")
        return await read(
            db_session,
            list_outbox,
            status=status,
            to=normalise_number(to) if to else None,
            flow=flow,
            limit=limit,
            before=cursor,
        )
