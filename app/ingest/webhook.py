"""``POST /mobitex/mo``: the one door MO messages come in through.

Mobitex retries every 3 minutes anything that is not a 200, forever. So the answers are:
200 once the message (or the raw request, if it did not validate) is committed; 503 when the
database cannot take it (Mobitex will retry, which is what we want); 403 for addresses that are
not Mobitex; 413 for bodies no SMS can produce, and 400 (kept in the quarantine all the same) for a
multipart body no MO form can be.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Literal

import msgspec
from litestar import Request, Response, post
from litestar.datastructures import State
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.handlers import HTTPRouteHandler
from sqlalchemy.exc import SQLAlchemyError

from app.db.models import utcnow
from app.errors import DatabaseUnavailable, InvalidMessage
from app.ingest.allowlist import client_address, is_allowed
from app.ingest.gate import DatabaseGate
from app.ingest.writer import GroupWriter
from app.mobitex.mo_form import RefusedBody, decode_body, parse_mo
from app.settings import Settings

log = logging.getLogger("smsflows.ingest")

RETRY_AFTER = "180"  # Mobitex's own retry interval, in seconds


def _text(status: int, body: str, **headers: str) -> Response[str]:
    return Response(body + "\n", status_code=status, media_type="text/plain", headers=headers or None)


def mo_webhook(settings: Settings) -> HTTPRouteHandler:
    """Build the webhook handler for the configured path, allowlist and limits."""
    allowed = settings.allowed_networks
    proxies = settings.proxy_networks
    max_text = settings.mo_max_text

    @post(
        settings.mo_path,
        request_max_body_size=settings.mo_max_body,
        summary="Receive an MO message from Mobitex",
        description=(
            "Form fields number, sender, text, sms_id, time, and optional smcsc and ext_id, as "
            "Mobitex sends them. Answers 200 once stored (invalid requests are quarantined, also 200), "
            "403 for addresses outside the allowlist, 413 for oversized bodies, 503 when the "
            "database is unavailable (Mobitex retries)."
        ),
        tags=["mobitex"],
        status_code=200,
    )
    async def receive_mo(request: Request[object, object, State]) -> Response[str]:
        peer = request.client.host if request.client else None
        # Some proxies add a header line instead of appending to the last one: every line counts,
        # in order, as one list (RFC 9110 §5.3), or a forged first line would hide the real hop.
        forwarded = ", ".join(request.headers.getall("x-forwarded-for", [])) or None
        client = client_address(peer, forwarded, proxies)
        if not is_allowed(client, allowed):
            shown = client or "an unreadable address"
            log.warning("MO request refused: %s (peer %s) is not in the allowlist", shown, peer)
            return _text(403, f"Forbidden: {shown} is not an allowed Mobitex address")
        assert client is not None
        gate: DatabaseGate = request.app.state.db_gate
        if gate.down:  # known down: no need to wait for another failed connection to say so
            gate.refuse()
            return _text(503, "Service Unavailable: retry later", **{"Retry-After": RETRY_AFTER})
        writer: GroupWriter = request.app.state.writer
        received_at = utcnow()
        try:
            body = await request.body()
        except RequestEntityTooLarge:
            log.warning("MO request from %s refused: body over %d bytes", client, settings.mo_max_body)
            raise
        try:
            taken = await take(
                writer, body, request.headers.get("content-type"), client, received_at, max_text
            )
        except DatabaseUnavailable as exc:
            gate.failed(exc)  # logs the outage once, then answers 503 at once until it is over
            return _text(503, "Service Unavailable: retry later", **{"Retry-After": RETRY_AFTER})
        if taken.outcome == "refused":
            # Kept like any invalid request, but no Mobitex MO looks like this: say so.
            return _text(400, f"Bad Request: {taken.reason}; the raw body is kept in the quarantine")
        # Quarantined is a 200 on purpose: a 4xx would make Mobitex resend the same body every 3 minutes.
        return _text(200, "OK quarantined" if taken.outcome == "quarantined" else "OK")

    return receive_mo


class Taken(msgspec.Struct, frozen=True):
    """What became of a request: ``stored``, ``quarantined``, or ``refused`` (quarantined, but
    nothing Mobitex sends looks like it, so the sender hears a 400)."""

    outcome: Literal["stored", "quarantined", "refused"]
    reason: str | None = None


async def take(
    writer: GroupWriter,
    body: bytes,
    content_type: str | None,
    client: str,
    received_at: datetime,
    max_text: int,
) -> Taken:
    """Store one MO request's body through the writer (flows run on it there), or quarantine it.

    The webhook and the dashboard's phone simulator both come in through here. Raises
    :class:`DatabaseUnavailable` when the database cannot take it.
    """
    try:
        fields, charset = decode_body(body, content_type)
        msg = parse_mo(fields, max_text)
    except InvalidMessage as exc:
        log.warning("MO request from %s quarantined: %s", client, exc)
        await writer.quarantine(
            raw_body=body,
            content_type=content_type,
            client_ip=client,
            reason=str(exc),
            received_at=received_at,
        )
        return Taken("refused" if isinstance(exc, RefusedBody) else "quarantined", str(exc))
    try:
        await writer.store_message(
            msg, raw_body=body, charset=charset, client_ip=client, received_at=received_at
        )
    except SQLAlchemyError as exc:
        # The database is up but refused this one row: keep the request raw instead.
        log.error("MO %s refused by the database, quarantined: %s", msg.sms_id, exc)
        await writer.quarantine(
            raw_body=body,
            content_type=content_type,
            client_ip=client,
            reason=f"database refused the message: {exc.__class__.__name__}: {exc}"[:2000],
            received_at=received_at,
        )
        return Taken("quarantined", "database refused the message")
    return Taken("stored")
