"""The audit log: one call records who changed what, in the caller's transaction."""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy import Connection, insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.access_models import AuditEntry
from app.db.models import utcnow


def record(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
    client: str | None = None,
) -> AuditEntry:
    """Add an entry to ``session``; it is written when the caller commits the change it describes.

    ``action`` is dotted (``users.disable``, ``outbox.requeue``), ``target`` names what it acted on
    (a user, a flow, a message id), ``detail`` is anything else worth keeping (JSON-encodable).
    """
    entry = AuditEntry(
        at=utcnow(),
        actor=actor,
        action=action,
        target=target,
        detail=msgspec.json.encode(detail).decode() if detail is not None else None,
        client=client,
    )
    session.add(entry)
    return entry


def record_in(
    conn: Connection,
    *,
    actor: str,
    action: str,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
    client: str | None = None,
) -> None:
    """:func:`record` for code that works on a Core connection (inside ``run_sync``), in the
    caller's transaction."""
    conn.execute(
        insert(AuditEntry).values(
            at=utcnow(),
            actor=actor[:64],
            action=action,
            target=None if target is None else target[:200],
            detail=msgspec.json.encode(detail).decode() if detail is not None else None,
            client=client,
        )
    )
