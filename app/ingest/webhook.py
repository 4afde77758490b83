"""``POST /mobitex/mo``: the one door MO messages come in through.

Mobitex retries every 3 minutes anything that is not a 200, forever. So the answers are:
200 once the message (or the raw request, if it did not validate) is committed; 503 when the
database cannot take it (Mobitex will retry, which is what we want); 403 for addresses that are
not Mobitex; 413 for bodies no SMS can produce, and 400 (kept in the quarantine all the same) for a
multipart body no MO form can be.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Literal, cast

import msgspec
from litestar import post
from litestar.handlers import HTTPRouteHandler
from litestar.types import ASGIApp, HTTPResponseBodyEvent, HTTPResponseStartEvent, HTTPScope, Receive, Send
from sqlalchemy.exc import SQLAlchemyError

from app.db.models import utcnow
from app.errors import DatabaseBusy, DatabaseUnavailable, InvalidMessage
from app.ingest.allowlist import Allowlist
from app.ingest.gate import DatabaseGate
from app.ingest.writer import GroupWriter
from app.metrics import observe_mo
from app.mobitex.mo_form import RefusedBody, decode_body, parse_mo
from app.settings import Settings

log = logging.getLogger("smsflows.ingest")

RETRY_AFTER = "180"  # Mobitex's own retry interval, in seconds

_Headers = list[tuple[bytes, bytes]]


def _answer(status: int, body: str, *extra: tuple[bytes, bytes]) -> tuple[int, _Headers, bytes]:
    text = (body + "\n").encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"%d" % len(text))]
    return status, [*headers, *extra], text


# The answers every request of a burst gets, built once.
_OK = _answer(200, "OK")
_OK_QUARANTINED = _answer(200, "OK quarantined")
_UNAVAILABLE = _answer(503, "Service Unavailable: retry later", (b"retry-after", RETRY_AFTER.encode()))


class _Disconnected(Exception):
    """The client went away before its whole body arrived: there is nobody left to answer."""


class MoWebhook:
    """The webhook as a plain ASGI app: the hot path of a vote burst, kept to what it must do.

    The application hands it every POST to the webhook's path before its own routing, so a
    message costs no request object, dependency resolution, middleware or response conversion;
    it reads the few headers it needs in one pass over the scope and answers from prebuilt parts.
    The writer and the database gate are bound by the application's lifespan.
    """

    def __init__(self, settings: Settings) -> None:
        self.path = settings.mo_path
        self._door = Allowlist(settings.allowed_networks, settings.proxy_networks)
        self._max_body = settings.mo_max_body
        self._max_text = settings.mo_max_text
        self.writer: GroupWriter | None = None
        self.gate: DatabaseGate | None = None

    async def __call__(self, scope: HTTPScope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        try:
            status, headers, body = await self._respond(scope, receive)
        except _Disconnected:
            return
        except Exception as exc:  # the last resort: the operator gets the traceback, the client a 500
            log.error("unhandled %s on the MO webhook", exc.__class__.__name__, exc_info=exc)
            status, headers, body = _answer(
                500, "Internal Server Error: the error is logged with its details; try again later"
            )
        start: HTTPResponseStartEvent = {"type": "http.response.start", "status": status, "headers": headers}
        end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
        await send(start)
        await send(end)
        observe_mo(status, time.perf_counter() - started)

    async def _respond(self, scope: HTTPScope, receive: Receive) -> tuple[int, _Headers, bytes]:
        content_type = length = None
        forwarded: list[str] = []
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = content_type or value.decode("latin-1")
            elif name == b"x-forwarded-for":
                forwarded.append(value.decode("latin-1"))
            elif name == b"content-length":
                length = value
        tcp_peer = scope.get("client")
        peer = tcp_peer[0] if tcp_peer else None
        # Some proxies add a header line instead of appending to the last one: every line counts,
        # in order, as one list (RFC 9110 §5.3), or a forged first line would hide the real hop.
        client, allowed = self._door.judge(peer, ", ".join(forwarded) or None)
        if not allowed:
            shown = client or "an unreadable address"
            log.warning("MO request refused: %s (peer %s) is not in the allowlist", shown, peer)
            return _answer(403, f"Forbidden: {shown} is not an allowed Mobitex address")
        assert client is not None
        writer, gate = self.writer, self.gate
        if writer is None or gate is None:
            return _UNAVAILABLE  # the lifespan has not started yet
        if gate.down:  # known down: no need to wait for another failed connection to say so
            gate.refuse()
            return _UNAVAILABLE
        received_at = utcnow()
        body = await self._body(receive, length)
        if body is None:
            log.warning("MO request from %s refused: body over %d bytes", client, self._max_body)
            return _answer(
                413,
                f"Request Entity Too Large: the body is over {self._max_body} bytes, "
                "the most an MO request can need",
            )
        try:
            taken = await take(writer, body, content_type, client, received_at, self._max_text)
        except DatabaseBusy as exc:  # the database is up: the next request may well go through
            log.warning("MO request from %s answered 503: %s; Mobitex retries it", client, exc)
            return _UNAVAILABLE
        except DatabaseUnavailable as exc:
            gate.failed(exc)  # logs the outage once, then answers 503 at once until it is over
            return _UNAVAILABLE
        if taken.outcome == "refused":
            # Kept like any invalid request, but no Mobitex MO looks like this: say so.
            return _answer(400, f"Bad Request: {taken.reason}; the raw body is kept in the quarantine")
        # Quarantined is a 200 on purpose: a 4xx would make Mobitex resend the same body every 3 minutes.
        return _OK_QUARANTINED if taken.outcome == "quarantined" else _OK

    async def _body(self, receive: Receive, length: bytes | None) -> bytes | None:
        """The whole body, or None when it is over the limit (announced or actual)."""
        # uvicorn refuses a Content-Length that is not a number before the request gets here.
        if length is not None and int(length) > self._max_body:
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            event = await receive()
            if event["type"] != "http.request":
                raise _Disconnected
            chunk = event.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > self._max_body:
                    return None
                chunks.append(chunk)
            if not event.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def mo_route(webhook: MoWebhook) -> HTTPRouteHandler:
    """The webhook as the application's route table and schema know it.

    POSTs to the path reach ``webhook`` before the routing does; this route gives the OpenAPI
    document its entry, other methods their 405, and hands any POST routed here the same webhook.
    """

    @post(
        webhook.path,
        summary="Receive an MO message from Mobitex",
        description=(
            "Form fields number, sender, text, sms_id, time, and optional smcsc and ext_id, as "
            "Mobitex sends them. Answers 200 once stored (invalid requests are quarantined, also 200), "
            "403 for addresses outside the allowlist, 413 for oversized bodies, 503 when the "
            "database is unavailable (Mobitex retries)."
        ),
        tags=["mobitex"],
        status_code=200,
        media_type="text/plain",
    )
    async def receive_mo() -> ASGIApp:
        return cast("ASGIApp", webhook)

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
