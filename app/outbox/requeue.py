"""Failed sends back in the queue, in bulk: after the account is topped up ("no funds", status
202) or the gateway is fixed, the messages it refused go out again.

The same filter counts (for the confirmation) and requeues, so the number confirmed is the number
moved, give or take messages that failed in between.
"""

from __future__ import annotations

import re
from collections import Counter

from sqlalchemy import ColumnElement, Connection, func, select, update

from app.db.models import OutboxMessage


def _failed(error: str | None, flow: str | None) -> list[ColumnElement[bool]]:
    where = [OutboxMessage.status == "failed"]
    if error:
        where.append(OutboxMessage.last_error.contains(error, autoescape=True))
    if flow:
        where.append(OutboxMessage.flow_id == flow)
    return where


def count_failed(conn: Connection, *, error: str | None = None, flow: str | None = None) -> int:
    """Failed messages whose last error contains ``error`` (and of ``flow``, if given)."""
    return int(conn.scalar(select(func.count()).where(*_failed(error, flow))) or 0)


def failed_reasons(conn: Connection, *, sample: int = 5000, limit: int = 8) -> list[tuple[str, int]]:
    """What the latest failed messages failed of, commonest first: each reason is a text that
    :func:`count_failed` and :func:`requeue_failed` take as ``error`` (``status 202`` and the like).
    """
    errors = conn.scalars(
        select(OutboxMessage.last_error)
        .where(OutboxMessage.status == "failed")
        .order_by(OutboxMessage.id.desc())
        .limit(sample)
    )
    return Counter(reason_of(e or "") for e in errors).most_common(limit)


_STATUS = re.compile(r"status (\d{3}) ")
_PHONE = re.compile(r"\d{9,}")


def reason_of(error: str) -> str:
    """The part of an error that many messages share: Mobitex's status, or the text without numbers."""
    found = _STATUS.search(error)
    if found:
        return f"status {found.group(1)}"
    return _PHONE.split(error, maxsplit=1)[0].strip()[:80] or error[:80]


def requeue_failed(conn: Connection, *, error: str | None = None, flow: str | None = None) -> int:
    """Queue the matching failed messages again, due now, with their attempts counted afresh.

    Returns how many moved. Their last error stays until a send replaces it.
    """
    result = conn.execute(
        update(OutboxMessage)
        .where(*_failed(error, flow))
        .values(status="queued", attempts=0, next_attempt_at=None, claimed_by=None, claimed_until=None)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)
