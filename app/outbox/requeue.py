"""Putting failed (or dry-run) messages back in the queue: for when the cause is fixed, such as a
Mobitex account topped up after "202 no funds"."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, Connection, func, select, update

from app.db.models import OutboxMessage
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
    dry_run: bool = False,
) -> int:
    """Queue again the messages in ``status`` (created at or after ``since``, refused by Mobitex with
    ``mobitex_status``), due now and with a fresh count of attempts; returns how many."""
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
    if dry_run:
        return int(conn.scalar(select(func.count()).select_from(OutboxMessage).where(*chosen)) or 0)
    result = conn.execute(
        update(OutboxMessage)
        .where(*chosen)
        .values(status="queued", attempts=0, next_attempt_at=now, claimed_by=None, claimed_until=None)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)
