"""A lean HTTP/1.1 transport for httpx: kept-alive connections, one exchange at a time on each.

The dispatcher makes up to a thousand small ``sms.php`` requests a second. httpx's default
transport (httpcore over anyio) spends more CPU on each than the rest of a send together: every
request walks and probes every pooled connection, and the head and body go out in two writes.
This one keeps idle connections in a list, writes a request in one call and reads the answer by
its ``Content-Length`` (or chunks). :meth:`KeepAliveTransport.post` goes further for the one request
a sender repeats: its head is built once (:class:`FormPost`) and no ``httpx.Request`` or ``Response``
is made per send. Proxies set in the environment still go through httpx's own transport (httpx
mounts them ahead of this one).
"""

from __future__ import annotations

import asyncio
import ssl
import time
import urllib.request

import httpx

Origin = tuple[str, str, int]
IDLE_FOR = 4.0  # seconds a kept-alive connection may wait; servers commonly close them after 5


def proxied(url: str) -> bool:
    """Whether the environment (``HTTPS_PROXY`` and the like) sends requests to ``url`` through a proxy."""
    parsed = httpx.URL(url)
    proxies = urllib.request.getproxies()
    wanted = proxies.get(parsed.scheme) or proxies.get("all")
    return bool(wanted) and not urllib.request.proxy_bypass(parsed.host)


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.idle_since = time.monotonic()

    @property
    def usable(self) -> bool:
        fresh = time.monotonic() - self.idle_since < IDLE_FOR
        return fresh and not self.reader.at_eof() and not self.writer.is_closing()

    def close(self) -> None:
        self.writer.close()


class FormPost:
    """A form POST to one URL, its head built once: a send adds only the length and the body.

    ``within`` bounds each phase (a free connection, connecting, the answer) as httpx's timeout does.
    """

    def __init__(
        self, url: httpx.URL, content_type: str, within: float | None, user_agent: str = "smsflows"
    ) -> None:
        self.url = url
        self.timeouts: dict[str, float | None] = {"pool": within, "connect": within, "read": within}
        self.origin: Origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        host = url.netloc.decode("ascii")
        self._head = (
            b"POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\nContent-Type: %s\r\nContent-Length: "
            % (url.raw_path, host.encode("ascii"), user_agent.encode("ascii"), content_type.encode("ascii"))
        )

    def request(self, body: bytes) -> bytes:
        return b"%s%d\r\n\r\n%s" % (self._head, len(body), body)


class KeepAliveTransport(httpx.AsyncBaseTransport):
    """At most ``max_connections`` requests at once, over connections kept open between them."""

    def __init__(self, max_connections: int = 16) -> None:
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: dict[Origin, list[_Connection]] = {}
        self._tls: ssl.SSLContext | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        url = request.url
        origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        body = await request.aread()
        head = [b"%s %s HTTP/1.1" % (request.method.encode("ascii"), request.url.raw_path)]
        head += [b"%s: %s" % (name, value) for name, value in request.headers.raw]
        data = b"\r\n".join(head) + b"\r\n\r\n" + body
        status, headers, content = await self._round_trip(origin, data, request.method, timeouts, request)
        return httpx.Response(status, headers=headers, stream=httpx.ByteStream(content), request=request)

    async def post(self, form: FormPost, body: bytes) -> tuple[int, bytes]:
        """POST ``body`` with ``form``'s head: the status and the answer's body.

        Failures raise the httpx exceptions ``handle_async_request`` raises, without a request.
        """
        status, _, content = await self._round_trip(
            form.origin, form.request(body), "POST", form.timeouts, None
        )
        return status, content

    async def _round_trip(
        self,
        origin: Origin,
        data: bytes,
        method: str,
        timeouts: dict[str, float | None],
        request: httpx.Request | None,
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        try:
            if self._slots.locked():  # only a wait for a free slot needs its own deadline
                await asyncio.wait_for(self._slots.acquire(), timeouts.get("pool"))
            else:
                await self._slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("no free connection in time", request=request) from None
        try:
            conn = self._take(origin) or await self._connect(origin, timeouts.get("connect"), request)
            try:
                status, headers, body, keep = await self._exchange(
                    conn, data, method, timeouts.get("read"), request
                )
            except BaseException:
                conn.close()
                raise
            if keep:
                conn.idle_since = time.monotonic()
                self._idle.setdefault(origin, []).append(conn)
            else:
                conn.close()
        finally:
            self._slots.release()
        return status, headers, body

    async def aclose(self) -> None:
        for connections in self._idle.values():
            for conn in connections:
                conn.close()
        self._idle.clear()

    def _take(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if conn.usable:
                return conn
            conn.close()
        return None

    async def _connect(
        self, origin: Origin, within: float | None, request: httpx.Request | None
    ) -> _Connection:
        scheme, host, port = origin
        tls = self._context() if scheme == "https" else None
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=tls), within)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"no connection to {host}:{port} in time", request=request) from None
        except OSError as exc:
            raise httpx.ConnectError(f"{host}:{port}: {exc}", request=request) from None
        return _Connection(reader, writer)

    def _context(self) -> ssl.SSLContext:
        if self._tls is None:
            try:
                import certifi  # httpx's own certificate bundle, when installed

                self._tls = ssl.create_default_context(cafile=certifi.where())
            except ImportError:
                self._tls = ssl.create_default_context()
        return self._tls

    async def _exchange(
        self, conn: _Connection, data: bytes, method: str, within: float | None, request: httpx.Request | None
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes, bool]:
        try:
            conn.writer.write(data)
            await conn.writer.drain()
        except OSError as exc:
            raise httpx.WriteError(str(exc), request=request) from None
        try:
            # asyncio.timeout rather than wait_for: it runs the read in this task, not in a new one.
            async with asyncio.timeout(within):
                return await _read_response(conn.reader, method)
        except TimeoutError:
            raise httpx.ReadTimeout(f"no answer within {within} s", request=request) from None
        except asyncio.IncompleteReadError:
            closed = "the server closed the connection before its whole answer"
            raise httpx.RemoteProtocolError(closed, request=request) from None
        except (OSError, asyncio.LimitOverrunError, ValueError) as exc:
            raise httpx.ReadError(f"{type(exc).__name__}: {exc}", request=request) from None


async def _read_response(
    reader: asyncio.StreamReader, method: str
) -> tuple[int, list[tuple[bytes, bytes]], bytes, bool]:
    """Status, headers, body and whether the connection may be kept."""
    lines = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
    version, status, *_ = lines[0].split(b" ", 2)
    headers: list[tuple[bytes, bytes]] = []
    fields: dict[bytes, bytes] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(b":")
            headers.append((name.strip(), value.strip()))
            fields[name.strip().lower()] = value.strip().lower()
    code = int(status)
    keep = version == b"HTTP/1.1" and fields.get(b"connection") != b"close"
    if method == "HEAD" or code in (204, 304) or 100 <= code < 200:
        body = b""
    elif b"chunked" in fields.get(b"transfer-encoding", b""):
        body = await _read_chunks(reader)
    elif b"content-length" in fields:
        body = await reader.readexactly(int(fields[b"content-length"]))
    else:  # the answer ends when the connection does
        body, keep = await reader.read(), False
    return code, headers, body, keep


async def _read_chunks(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
    while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, if any
        pass
    return b"".join(parts)
