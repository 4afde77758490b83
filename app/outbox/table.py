"""The outbox table and the one function that builds its rows: every message to a phone (a flow's
reply, an application's message, a broadcast) starts as ``outbox_row(...)``."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Table

from app.db.models import OutboxMessage
from app.mobitex.encoding import SmsEncoding, measure

OUTBOX: Table = OutboxMessage.__table__  # type: ignore[assignment]


class FlowRef(Protocol):
    """The flow a message belongs to, as the outbox records it (a loaded flow is one)."""

    @property
    def id(self) -> str: ...

    @property
    def hash(self) -> str: ...


def outbox_row(
    *,
    to: str,
    text: str,
    from_number: str | None,
    flow: FlowRef | None,
    inbound_id: int | None,
    now: datetime,
    measured: SmsEncoding | None = None,
) -> dict[str, Any]:
    """A new ``queued`` row with a fresh ``ext_id`` (answers name it); ``measured`` spares measuring
    a text that was measured already."""
    m = measured or measure(text)
    return {
        "ext_id": secrets.token_hex(16),
        "to_number": to,
        "from_number": from_number,
        "text": text,
        "encoding": m.encoding,
        "parts": m.parts,
        "status": "queued",
        "flow_id": flow.id if flow else None,
        "flow_hash": flow.hash if flow else None,
        "inbound_id": inbound_id,
        "created_at": now,
    }
