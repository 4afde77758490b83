"""Open conversations (surveys): which flow a phone is talking to on a number right now."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, select, update

from app.db.campaign_models import Conversation


def active_conversation(conn: Connection, sender: str, number: str, now: datetime) -> Row[Any] | None:
    """The phone's active conversation on this number; one past its deadline is closed as expired."""
    row = conn.execute(
        select(*Conversation.__table__.columns).where(
            Conversation.sender == sender, Conversation.number == number, Conversation.status == "active"
        )
    ).first()
    if row is None:
        return None
    if row.expires_at is not None and row.expires_at <= now:
        conn.execute(
            update(Conversation).where(Conversation.id == row.id).values(status="expired", updated_at=now)
        )
        return None
    return row
