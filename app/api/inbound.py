"""``/api/inbound`` and ``/api/quarantine``: read what came in, repair what did not validate."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Literal

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import FromPath, JSONBody, QueryParameter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.auth import require_token
from app.api.params import Cursor, Limit, RowId
from app.api.schema import BEARER
from app.api.schemas import InboundOut, InboundPage, QuarantineOut, QuarantinePage, Repair
from app.db.models import INBOUND_STATUSES, QUARANTINE_STATUSES, InboundMessage, QuarantinedRequest
from app.flows.live import LiveFlows
from app.ingest import quarantine
from app.mobitex.mo_form import normalise_number
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
            raise ClientException(f"status must be one of {', '.join(INBOUND_STATUSES)}")
        query = select(InboundMessage).order_by(InboundMessage.id.desc()).limit(limit)
        if sender:
            query = query.where(InboundMessage.sender == normalise_number(sender))
        if number:
            query = query.where(InboundMessage.number == normalise_number(number))
        if status:
            query = query.where(InboundMessage.status == status)
        if correlation:
            query = query.where(InboundMessage.correlation == correlation)
        if since is not None:
            if since.tzinfo is None:
                raise ClientException("since needs a timezone, e.g. 2026-12-01T20:00:00+01:00 or ...Z")
            query = query.where(InboundMessage.received_at >= since)
        if cursor is not None:
            query = query.where(InboundMessage.id < cursor)
        rows = (await db_session.scalars(query)).all()
        next_cursor = str(rows[-1].id) if len(rows) == limit else None
        return InboundPage(items=[InboundOut.of(m) for m in rows], next_cursor=next_cursor)

    @get("/inbound/{sms_id:str}", summary="One inbound message by its Mobitex sms_id")
    async def get_inbound(
        self, db_session: NamedDependency[AsyncSession], sms_id: FromPath[str]
    ) -> InboundOut:
        msg = await db_session.scalar(select(InboundMessage).where(InboundMessage.sms_id == sms_id))
        if msg is None:
            raise NotFoundException(f"no inbound message with sms_id {sms_id!r}")
        return InboundOut.of(msg)

    @get("/quarantine", summary="Requests that did not validate, newest first")
    async def list_quarantine(
        self,
        db_session: NamedDependency[AsyncSession],
        status: Annotated[str | None, QueryParameter(description="held, reingested or discarded")] = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> QuarantinePage:
        if status is not None and status not in QUARANTINE_STATUSES:
            raise ClientException(f"status must be one of {', '.join(QUARANTINE_STATUSES)}")
        query = select(QuarantinedRequest).order_by(QuarantinedRequest.id.desc()).limit(limit)
        if status:
            query = query.where(QuarantinedRequest.status == status)
        if cursor is not None:
            query = query.where(QuarantinedRequest.id < cursor)
        rows = (await db_session.scalars(query)).all()
        next_cursor = str(rows[-1].id) if len(rows) == limit else None
        return QuarantinePage(items=[QuarantineOut.of(q) for q in rows], next_cursor=next_cursor)

    @post("/quarantine/{qid:int}/reingest", status_code=200, summary="Repair and re-ingest a request")
    async def reingest(
        self,
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        request: Request[object, object, State],
        qid: RowId,
        data: JSONBody[Repair | None] = None,
    ) -> InboundOut:
        """Decode the kept raw body, apply the corrected fields, validate, and store the message.

        The message and the quarantine entry's new status are written in one transaction.
        """
        live: LiveFlows = request.app.state.flows
        repair = data.fields if data is not None else {}
        with _answered():
            sms_id = await quarantine.reingest(db_session, live.current, qid, repair, settings.mo_max_text)
        await db_session.commit()
        stored = await db_session.scalar(select(InboundMessage).where(InboundMessage.sms_id == sms_id))
        assert stored is not None
        return InboundOut.of(stored)

    @post("/quarantine/{qid:int}/discard", status_code=200, summary="Mark a quarantined request as handled")
    async def discard(self, db_session: NamedDependency[AsyncSession], qid: RowId) -> QuarantineOut:
        with _answered():
            await quarantine.discard(db_session, qid)
        await db_session.commit()
        held = await db_session.get(QuarantinedRequest, qid, populate_existing=True)
        assert held is not None
        return QuarantineOut.of(held)


@contextmanager
def _answered() -> Iterator[None]:
    """Quarantine errors as HTTP answers: 404 unknown, 409 resolved already, 400 still invalid."""
    try:
        yield
    except quarantine.NoSuchRequest as exc:
        raise NotFoundException(str(exc)) from None
    except quarantine.AlreadyResolved as exc:
        raise ClientException(str(exc), status_code=409) from None
    except quarantine.StillInvalid as exc:
        raise ClientException(str(exc)) from None
