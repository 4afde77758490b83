"""The audit log as people read it: newest first, one page at a time (keyset on id)."""

from __future__ import annotations

from datetime import datetime

import msgspec
from sqlalchemy import Connection, select

from app.db.access_models import AuditEntry

PAGE = 50


class AuditRow(msgspec.Struct, frozen=True):
    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    detail: str | None
    client: str | None


class AuditPage(msgspec.Struct, frozen=True):
    rows: list[AuditRow]
    older: int | None
    """Pass as ``before`` for the next (older) page; None on the last page."""


def audit_page(
    conn: Connection, *, before: int | None = None, action: str | None = None, limit: int = PAGE
) -> AuditPage:
    q = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit + 1)
    if before is not None:
        q = q.where(AuditEntry.id < before)
    if action:
        q = q.where(AuditEntry.action.startswith(action, autoescape=True))
    entries = list(conn.execute(q).all())
    rows = [
        AuditRow(
            id=e.id,
            at=e.at,
            actor=e.actor,
            action=e.action,
            target=e.target,
            detail=e.detail,
            client=e.client,
        )
        for e in entries[:limit]
    ]
    return AuditPage(rows=rows, older=rows[-1].id if len(entries) > limit else None)
