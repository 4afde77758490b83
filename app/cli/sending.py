"""What ``send`` and ``broadcast`` share: their options as a message, and what becomes of it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from app.db.migrate import open_database
from app.db.models import WARSAW, utcnow
from app.errors import InvalidSend
from app.flows.broadcast import MAX_KEY
from app.outbox.sending import NewMessage, Queued, queue
from app.settings import Settings


def send_note(settings: Settings) -> str:
    """What happens to a queued message with these settings."""
    if not settings.sends_for_real:
        return "sending is in dry-run mode: it is recorded as dry-run, not sent (see SMSFLOWS_SEND_MODE)"
    if not settings.dispatcher:
        return "the service does not send (SMSFLOWS_DISPATCHER=false): run `smsflows worker`"
    return "the running service sends it"


def new_message(
    to: str,
    text: str,
    *,
    tag: str | None,
    data: str | None,
    expires_at: str | None,
    key: str | None,
    on_timeout: str | None = None,
) -> NewMessage:
    """The command's options as the message ``POST /api/messages`` would take; a time without an
    offset is Warsaw time, as in flow files."""
    fields: dict[str, Any] = {
        "to": to,
        "text": text,
        "tag": tag,
        "idempotency_key": key,
        "on_timeout": on_timeout,
    }
    if data is not None:
        try:
            fields["data"] = msgspec.json.decode(data)
        except msgspec.DecodeError as exc:
            raise InvalidSend(f"--data: not JSON ({exc}); give an object, e.g. '{{\"visit\": 12}}'") from None
    if expires_at is not None:
        try:
            at = datetime.fromisoformat(expires_at)
        except ValueError:
            raise InvalidSend(f"--expires-at: {expires_at!r} is not a time; e.g. 2026-12-01T20:00") from None
        fields["expires_at"] = at if at.tzinfo else at.replace(tzinfo=WARSAW)
    if key is not None and len(key) > MAX_KEY:
        raise InvalidSend(f"--idempotency-key: at most {MAX_KEY} characters (the phone is added to it)")
    try:
        return msgspec.convert({k: v for k, v in fields.items() if v is not None}, NewMessage)
    except msgspec.ValidationError as exc:
        raise InvalidSend(str(exc)) from None


async def run_send(settings: Settings, message: NewMessage) -> Queued:
    """``smsflows send``: queue one message, as ``POST /api/messages`` does."""
    async with open_database(settings) as engine, engine.begin() as conn:
        return await conn.run_sync(queue, message, utcnow())
