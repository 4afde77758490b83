"""How uvicorn runs the app: one place for the options the CLI and the tests share."""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.settings import Settings

log = logging.getLogger("smsflows.server")

_TIMEOUT_BODY = b"Request Timeout: the request was not sent in time; send it whole, more quickly\n"
_TIMEOUT_ANSWER = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY)
)


class DeadlineHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for reading each request, headers and body.

    uvicorn itself only times out idle keep-alive connections: a client that drips its headers
    or its body a byte at a time would hold a connection (and a slot under the cap) for ever.
    """

    def __init__(self, *args: Any, read_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read_timeout = read_timeout
        self.read_deadline: asyncio.TimerHandle | None = None
        self.headers_read = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that never sends a request counts as a slow one

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.headers_read = False
        if self.read_deadline is None:
            self._arm()

    def on_headers_complete(self) -> None:
        self.headers_read = True
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _arm(self) -> None:
        self.read_deadline = self.loop.call_later(self.read_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self.read_deadline is not None:
            self.read_deadline.cancel()
            self.read_deadline = None

    def _too_slow(self) -> None:
        self.read_deadline = None
        if self.transport.is_closing():
            return
        peer = self.client[0] if self.client else "an unknown address"
        part = "body" if self.headers_read else "headers"
        log.warning(
            "connection from %s closed: request %s not read within %gs", peer, part, self.read_timeout
        )
        if not self.headers_read:
            # Nothing reached the app yet: the client is owed a plain answer.
            self.transport.write(_TIMEOUT_ANSWER)
        self.transport.close()


def server_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` / ``uvicorn.Config``."""
    return {
        "log_level": settings.log_level.lower(),
        "log_config": None,  # app.logs set up logging already; uvicorn's own would add a second format
        "access_log": False,  # a line per MO at thousands a second is noise; failures are logged by us
        # X-Forwarded-For is judged by SMSFLOWS_TRUSTED_PROXIES in the webhook; uvicorn's own
        # rewriting of the client address would let a forged header through.
        "proxy_headers": False,
        "server_header": False,
        "http": functools.partial(DeadlineHttpProtocol, read_timeout=settings.request_timeout),
        "timeout_keep_alive": settings.keepalive_timeout,
        # Beyond this many connections and requests in progress, uvicorn answers 503 at once.
        "limit_concurrency": settings.max_connections,
    }
