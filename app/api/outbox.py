"""``/api/outbox``: the replies and messages the flows queued, newest first; decisions on held ones."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.api.auth import require_token
from app.api.deps import read
from app.api.params import Cursor, Limit
from app.api.schema import BEARER
from app.api.schemas import OutboxPage
from app.db.models import OUTBOX_STATUSES
from app.errors import InvalidRequest
from app.mobitex.mo_form import normalise_number
from app.outbox.unknown import mark_failed, resend
from app.reads.messages import OutboxOut, list_outbox


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

    @post("/outbox/{outbox_id:int}/resend", status_code=200, summary="Send a message held as unknown again")
    async def resend_unknown(
        self, db_session: NamedDependency[AsyncSession], outbox_id: FromPath[int]
    ) -> OutboxOut:
        """Queue a message Mobitex never answered again: if the first did arrive, the phone gets two."""
        return await _decide(db_session, outbox_id, resend)

    @post("/outbox/{outbox_id:int}/fail", status_code=200, summary="Mark a message held as unknown failed")
    async def fail_unknown(
        self, db_session: NamedDependency[AsyncSession], outbox_id: FromPath[int]
    ) -> OutboxOut:
        """Give up a message Mobitex never answered: it is not sent again (it may have arrived)."""
        return await _decide(db_session, outbox_id, mark_failed)


async def _decide(
    session: AsyncSession, outbox_id: int, decide: Callable[[AsyncConnection, Sequence[int]], Awaitable[None]]
) -> OutboxOut:
    await decide(await session.connection(), [outbox_id])  # NotHeld (409) names what is wrong
    await session.commit()
    # The message itself: the newest with an id below the next one.
    page = await read(session, list_outbox, limit=1, before=outbox_id + 1)
    return page.items[0]
