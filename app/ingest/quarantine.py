"""Quarantined requests: repair and re-ingest one, or discard it.

The API and the dashboard both call these, in the caller's session: the stored message, its
flows and the entry's new status commit together, when the caller commits.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import QuarantinedRequest, utcnow
from app.errors import InvalidMessage, SmsflowsError
from app.flows.engine import process_new
from app.flows.loader import FlowSet
from app.ingest.writer import message_row, upsert_statement
from app.mobitex.mo_form import FIELDS, decode_body, parse_mo


class QuarantineError(SmsflowsError):
    """A quarantined request cannot be handled as asked; the message says why."""


class NoSuchRequest(QuarantineError):
    pass


class AlreadyResolved(QuarantineError):
    """Somebody re-ingested or discarded it first."""


class StillInvalid(QuarantineError):
    """The repaired fields still do not make a valid MO message."""


async def held(session: AsyncSession, qid: int) -> QuarantinedRequest:
    """The request ``qid``, locked, while it is still held."""
    found = await session.get(QuarantinedRequest, qid, with_for_update=True)
    if found is None:
        raise NoSuchRequest(f"no quarantined request {qid}")
    if found.status != "held":
        raise AlreadyResolved(f"quarantined request {qid} is already {found.status}")
    return found


async def reingest(
    session: AsyncSession, flows: FlowSet, qid: int, repair: Mapping[str, str], max_text: int
) -> str:
    """Decode the kept raw body, apply the corrected fields, validate, store, run the flows.

    Returns the new message's sms_id.
    """
    request = await held(session, qid)
    try:
        fields, charset = decode_body(request.raw_body, request.content_type)
    except InvalidMessage:
        fields, charset = {}, "repaired"
    unknown = sorted(set(repair) - set(FIELDS))
    if unknown:
        raise StillInvalid(f"unknown field(s) {', '.join(unknown)}; MO fields are {', '.join(FIELDS)}")
    fields.update(repair)
    try:
        msg = parse_mo(fields, max_text)
    except InvalidMessage as exc:
        raise StillInvalid(f"still invalid after repair: {exc}; send corrected fields") from None
    row = message_row(
        msg,
        raw_body=request.raw_body,
        charset=charset,
        client_ip=request.client_ip,
        received_at=request.received_at,
    )
    await _resolve(session, request, "reingested", msg.sms_id)
    await session.execute(upsert_statement(session.get_bind().dialect.name), [row])
    # The repaired message meets the flows like any other, in the same transaction.
    await session.run_sync(lambda sync: process_new(sync.connection(), flows, [msg.sms_id]))
    return msg.sms_id


async def discard(session: AsyncSession, qid: int) -> None:
    """Mark the request as handled without storing a message."""
    await _resolve(session, await held(session, qid), "discarded", None)


async def _resolve(
    session: AsyncSession, request: QuarantinedRequest, status: str, sms_id: str | None
) -> None:
    """Move a held request on, but only if nobody else did meanwhile (SQLite has no row locks)."""
    result = await session.execute(
        update(QuarantinedRequest)
        .where(QuarantinedRequest.id == request.id, QuarantinedRequest.status == "held")
        .values(status=status, sms_id=sms_id, resolved_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        await session.rollback()
        raise AlreadyResolved(f"quarantined request {request.id} was resolved meanwhile")
