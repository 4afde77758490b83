"""Quarantined requests: repair and re-ingest one, or discard it.

The API and the dashboard both call these. A repaired request is stored the way the webhook
stores a message: by the group-commit writer, with the flows in the same transaction and the
quarantine entry marked there too.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import QuarantinedRequest, utcnow
from app.errors import Conflict, InvalidMessage, InvalidRequest, NotFound
from app.ingest.writer import GroupWriter
from app.mobitex.mo_form import FIELDS, decode_body, parse_mo


class NoSuchRequest(NotFound):
    pass


class AlreadyResolved(Conflict):
    """Somebody re-ingested or discarded it first."""


class StillInvalid(InvalidRequest):
    """The repaired fields still do not make a valid MO message."""


async def held(session: AsyncSession, qid: int) -> QuarantinedRequest:
    """The request ``qid``, while it is still held."""
    found = await session.get(QuarantinedRequest, qid)
    if found is None:
        raise NoSuchRequest(f"no quarantined request {qid}")
    if found.status != "held":
        raise AlreadyResolved(f"quarantined request {qid} is already {found.status}")
    return found


async def reingest(
    session: AsyncSession, writer: GroupWriter, qid: int, repair: Mapping[str, str], max_text: int
) -> str:
    """Decode the kept raw body, apply the corrected fields, validate, and hand the message to the
    writer (which runs the flows and marks the request re-ingested). Returns its sms_id."""
    request = await held(session, qid)
    await session.commit()  # nothing held open while the writer works
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
    await writer.store_message(
        msg,
        raw_body=request.raw_body,
        charset=charset,
        client_ip=request.client_ip,
        received_at=request.received_at,
        resolves=request.id,
    )
    return msg.sms_id


async def discard(session: AsyncSession, qid: int) -> None:
    """Mark the request as handled without storing a message (in the caller's transaction)."""
    await held(session, qid)
    result = await session.execute(
        update(QuarantinedRequest)
        .where(QuarantinedRequest.id == qid, QuarantinedRequest.status == "held")
        .values(status="discarded", resolved_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]  # SQLite has no row locks
        raise AlreadyResolved(f"quarantined request {qid} was resolved meanwhile")
