"""Messages held as ``unknown``: Mobitex never answered their request, and their policy is ``hold``.

Mobitex may have taken such a message, so the dispatcher never sends it again by itself. An
operator looks them up (``GET /api/outbox?status=unknown``, ``smsflows outbox unknown``), checks
with the phone or the Mobitex panel, and either resends one (``queued`` again) or marks it failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import msgspec
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.errors import Conflict, NotFound
from app.outbox.table import OUTBOX

UNKNOWN = "unknown"


class NotHeld(Conflict):
    """The message is not held as ``unknown``: there is nothing to decide."""


class HeldMessage(msgspec.Struct, frozen=True):
    """One message waiting for an operator's decision."""

    id: int
    to_number: str
    text: str
    flow_id: str | None
    attempts: int
    last_error: str | None
    created_at: datetime


async def held_messages(conn: AsyncConnection, limit: int = 100) -> list[HeldMessage]:
    """The oldest messages held as unknown, at most ``limit``."""
    c = OUTBOX.c
    query = (
        select(c.id, c.to_number, c.text, c.flow_id, c.attempts, c.last_error, c.created_at)
        .where(c.status == UNKNOWN)
        .order_by(c.id)
        .limit(limit)
    )
    return [HeldMessage(*row) for row in (await conn.execute(query)).all()]


async def resend(conn: AsyncConnection, ids: Sequence[int]) -> None:
    """Queue held messages again, due now; :class:`NotHeld` names those that are not held."""
    await _decide(conn, ids, status="queued", next_attempt_at=None)


async def mark_failed(conn: AsyncConnection, ids: Sequence[int]) -> None:
    """Mark held messages failed: they are not sent; :class:`NotHeld` names those that are not held."""
    await _decide(conn, ids, status="failed")


async def _decide(conn: AsyncConnection, ids: Sequence[int], **values: object) -> None:
    c = OUTBOX.c
    statuses = dict((await conn.execute(select(c.id, c.status).where(c.id.in_(ids)))).all())
    missing = [str(i) for i in ids if i not in statuses]
    if missing:
        raise NotFound(
            f"no outbox message {', '.join(missing)}; list them with GET /api/outbox?status=unknown"
        )
    wrong = [f"{i} ({statuses[i]})" for i in ids if statuses[i] != UNKNOWN]
    if wrong:
        raise NotHeld(
            f"not held as unknown: {', '.join(wrong)}; only messages held after a timeout can be "
            "resent or marked failed here (list them with GET /api/outbox?status=unknown)"
        )
    await conn.execute(update(OUTBOX).where(c.id.in_(ids), c.status == UNKNOWN).values(**values))
