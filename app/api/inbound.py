"""``/api/inbound`` and ``/api/quarantine``: read what came in, repair what did not validate."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.auth import require_token
from app.api.deps import read
from app.api.params import Cursor, Limit, RowId
from app.api.schema import BEARER
from app.api.schemas import InboundOut, InboundPage, QuarantineOut, QuarantinePage, Repair
from app.db.models import INBOUND_STATUSES, QUARANTINE_STATUSES
from app.errors import InvalidRequest, NotFound
from app.ingest import quarantine
from app.ingest.writer import GroupWriter
from app.mobitex.mo_form import normalise_number
from app.reads.messages import inbound_message, list_inbound, list_quarantine, quarantined_request
from app.settings import Settings


class InboundController(Controller):
    path = "/api"
    guards = [require_token]  # noqa: RUF012 - Litestar reads this class attribute
    security = [{BEARER: []}]  # noqa: RUF012 - declared in the schema, so "try it" sends the token
    tags = ["inbound"]  # noqa: RUF012

    @get("/inbound", summary="List inbound messages, newest first")
    async def list_inbound(
        self,
        db_session: NamedDependency[AsyncSession],
        sender: Annotated[str | None, QueryParameter(description="the phone, any format")] = None,
        number: Annotated[str | None, QueryParameter(description="our number or short code")] = None,
        status: Annotated[
            str | None, QueryParameter(description=f"one of {', '.join(INBOUND_STATUSES)}")
        ] = None,
        since: Annotated[
            datetime | None, QueryParameter(description="received at or after (ISO 8601)")
        ] = None,
        correlation: Annotated[
            Literal["matched", "unmatched"] | None,
            QueryParameter(description="answers tied to a sent message by ext_id, or not"),
        ] = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> InboundPage:
        if status is not None and status not in INBOUND_STATUSES:
            raise InvalidRequest(f"status must be one of {', '.join(INBOUND_STATUSES)}")
        if since is not None and since.tzinfo is None:
            raise InvalidRequest("since needs a timezone, e.g. 2026-12-01T20:00:00+01:00 or ...Z")
        return await read(
            db_session,
            list_inbound,
            sender=normalise_number(sender) if sender else None,
            number=normalise_number(number) if number else None,
            status=status,
            correlation=correlation,
            since=since,
            limit=limit,
            before=cursor,
        )

    @get("/inbound/{sms_id:str}", summary="One inbound message by its Mobitex sms_id")
    async def get_inbound(
        self, db_session: NamedDependency[AsyncSession], sms_id: FromPath[str]
    ) -> InboundOut:
        msg = await read(db_session, inbound_message, sms_id)
        if msg is None:
            raise NotFound(f"no inbound message with sms_id {sms_id!r}")
        return msg

    @get("/quarantine", summary="Requests that did not validate, newest first")
    async def list_quarantine(
        self,
        db_session: NamedDependency[AsyncSession],
        status: Annotated[str | None, QueryParameter(description="held, reingested or discarded")] = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> QuarantinePage:
        if status is not None and status not in QUARANTINE_STATUSES:
            raise InvalidRequest(f"status must be one of {', '.join(QUARANTINE_STATUSES)}")
        return await read(db_session, list_quarantine, status=status, limit=limit, before=cursor)

    @post("/quarantine/{qid:int}/reingest", status_code=200, summary="Repair and re-ingest a request")
    async def reingest(
        self,
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        writer: NamedDependency[GroupWriter],
        qid: RowId,
        data: JSONBody[Repair | None] = None,
    ) -> InboundOut:
        """Decode the kept raw body, apply the corrected fields, validate, and store the message.

        It is stored the way the webhook stores one (the group-commit writer, the flows in the
        same transaction, the dispatcher woken for their replies); the quarantine entry's new
        status is written in that same transaction.
        """
        repair = data.fields if data is not None else {}
        sms_id = await quarantine.reingest(db_session, writer, qid, repair, settings.mo_max_text)
        stored = await read(db_session, inbound_message, sms_id)
        assert stored is not None
        return stored

    @post("/quarantine/{qid:int}/discard", status_code=200, summary="Mark a quarantined request as handled")
    async def discard(self, db_session: NamedDependency[AsyncSession], qid: RowId) -> QuarantineOut:
        await quarantine.discard(db_session, qid)
        await db_session.commit()
        resolved = await read(db_session, quarantined_request, qid)
        assert resolved is not None
        return resolved
