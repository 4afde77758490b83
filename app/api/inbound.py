"""``/api/inbound`` and ``/api/quarantine``: read what came in, repair what did not validate."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import FromPath, JSONBody, QueryParameter
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.auth import require_token
from app.api.params import Cursor, Limit, RowId
from app.api.schema import BEARER
from app.api.schemas import InboundOut, InboundPage, QuarantineOut, QuarantinePage, Repair
from app.db.models import INBOUND_STATUSES, QUARANTINE_STATUSES, InboundMessage, QuarantinedRequest, utcnow
from app.errors import InvalidMessage
from app.flows.engine import process_new
from app.flows.live import LiveFlows
from app.ingest.writer import message_row, upsert_statement
from app.mobitex.mo_form import FIELDS, decode_body, normalise_number, parse_mo
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
        held = await _held(db_session, qid)
        try:
            fields, charset = decode_body(held.raw_body, held.content_type)
        except InvalidMessage:
            fields, charset = {}, "repaired"
        if data is not None:
            unknown = sorted(set(data.fields) - set(FIELDS))
            if unknown:
                raise ClientException(
                    f"unknown field(s) {', '.join(unknown)}; MO fields are {', '.join(FIELDS)}"
                )
            fields.update(data.fields)
        try:
            msg = parse_mo(fields, settings.mo_max_text)
        except InvalidMessage as exc:
            raise ClientException(f"still invalid after repair: {exc}; send corrected fields") from None
        row = message_row(
            msg,
            raw_body=held.raw_body,
            charset=charset,
            client_ip=held.client_ip,
            received_at=held.received_at,
        )
        await _resolve(db_session, held, "reingested", msg.sms_id)
        await db_session.execute(upsert_statement(db_session.get_bind().dialect.name), [row])
        # The repaired message meets the flows like any other, in the same transaction.
        live: LiveFlows = request.app.state.flows
        await db_session.run_sync(lambda sync: process_new(sync.connection(), live.current, [msg.sms_id]))
        await db_session.commit()
        stored = await db_session.scalar(select(InboundMessage).where(InboundMessage.sms_id == msg.sms_id))
        assert stored is not None
        return InboundOut.of(stored)

    @post("/quarantine/{qid:int}/discard", status_code=200, summary="Mark a quarantined request as handled")
    async def discard(self, db_session: NamedDependency[AsyncSession], qid: RowId) -> QuarantineOut:
        held = await _held(db_session, qid)
        await _resolve(db_session, held, "discarded", None)
        await db_session.commit()
        await db_session.refresh(held)
        return QuarantineOut.of(held)


async def _resolve(session: AsyncSession, held: QuarantinedRequest, status: str, sms_id: str | None) -> None:
    """Move a held request on, but only if nobody else did meanwhile (SQLite has no row locks)."""
    result = await session.execute(
        update(QuarantinedRequest)
        .where(QuarantinedRequest.id == held.id, QuarantinedRequest.status == "held")
        .values(status=status, sms_id=sms_id, resolved_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        await session.rollback()
        raise ClientException(f"quarantined request {held.id} was resolved meanwhile", status_code=409)


async def _held(session: AsyncSession, qid: RowId) -> QuarantinedRequest:
    held = await session.get(QuarantinedRequest, qid, with_for_update=True)
    if held is None:
        raise NotFoundException(f"no quarantined request {qid}")
    if held.status != "held":
        raise ClientException(f"quarantined request {qid} is already {held.status}", status_code=409)
    return held
