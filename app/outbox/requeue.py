"""Putting failed (or dry-run) messages back in the queue, in bulk: for when the cause is fixed,
such as a Mobitex account topped up after "202 no funds".

The same filter counts (for a confirmation) and requeues, so the number confirmed is the number
moved, give or take messages that failed in between. ``smsflows outbox requeue`` and the
dashboard's failures page both go through :func:`requeue`.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime

from sqlalchemy import ColumnElement, Connection, func, select, update

from app.db.models import OutboxMessage, utcnow
from app.mobitex.statuses import STATUSES

REQUEUEABLE = ("failed", "dry-run")


def refused_with(code: str) -> ColumnElement[bool]:
    """Messages whose last error is Mobitex refusing them with this status code."""
    # The dispatcher records Mobitex's refusals as "… status 202 (no funds); …" (see mobitex.client).
    return OutboxMessage.last_error.like(f"%status {code} (%")


def requeue(
    conn: Connection,
    *,
    status: str,
    now: datetime,
    since: datetime | None = None,
    mobitex_status: str | None = None,
    error: str | None = None,
    flow: str | None = None,
    dry_run: bool = False,
) -> int:
    """Queue again the messages in ``status`` (created at or after ``since``, refused by Mobitex with
    ``mobitex_status``, whose last error contains ``error``, of ``flow``), due now and with a fresh
    count of attempts; returns how many (with ``dry_run``, how many would be)."""
    if status not in REQUEUEABLE:
        raise ValueError(f"status must be one of {', '.join(REQUEUEABLE)}")
    if mobitex_status is not None and mobitex_status not in STATUSES:
        raise ValueError(
            f"{mobitex_status!r} is not a Mobitex status code; known codes: {', '.join(STATUSES)}"
        )
    chosen = [OutboxMessage.status == status]
    if since is not None:
        chosen.append(OutboxMessage.created_at >= since)
    if mobitex_status is not None:
        chosen.append(refused_with(mobitex_status))
    if error:
        chosen.append(OutboxMessage.last_error.contains(error, autoescape=True))
    if flow:
        chosen.append(OutboxMessage.flow_id == flow)
    if dry_run:
        return int(conn.scalar(select(func.count()).select_from(OutboxMessage).where(*chosen)) or 0)
    result = conn.execute(
        update(OutboxMessage)
        .where(*chosen)
        .values(status="queued", attempts=0, next_attempt_at=now, claimed_by=None, claimed_until=None)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)


def count_failed(conn: Connection, *, error: str | None = None, flow: str | None = None) -> int:
    """Failed messages whose last error contains ``error`` (and of ``flow``, if given)."""
    return requeue(conn, status="failed", now=utcnow(), error=error, flow=flow, dry_run=True)


def requeue_failed(conn: Connection, *, error: str | None = None, flow: str | None = None) -> int:
    """Queue the failed messages :func:`count_failed` counts again; their last error stays until a
    send replaces it."""
    return requeue(conn, status="failed", now=utcnow(), error=error, flow=flow)


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
