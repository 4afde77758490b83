"""A fake Mobitex for development and tests: sms.php and balance.php as the gateway answers them.

It validates like Mobitex (credentials, number, type, length, sender), records what it accepts,
fails on demand (``POST /fake/fail``) and plays the phone: ``POST /fake/reply`` (or ``auto_reply``)
sends an MO to the webhook and, like Mobitex, resends it every ``retry_interval`` until it gets 200.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import httpx
import msgspec
import uvicorn
from litestar import Litestar, Request, Response, delete, get, post, route
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import FromQuery, JSONBody

from app.errors import InvalidMessage, SettingsError
from app.mobitex.encoding import is_gsm7, measure
from app.mobitex.mo_form import decode_body
from app.mobitex.statuses import ACCEPTED

log = logging.getLogger("smsflows.fake_mobitex")

# Characters per type, from the Mobitex reference (3 parts at most for the long types).
LIMITS = dict(sms=160, sms_flash=160, concat=459, unicode=70, unicode_concat=201, wap_push=225, binary=280)
_NUMBER = re.compile(r"^[1-9][0-9]{9,14}$")  # international, no + or spaces
_SENDER = re.compile(r"^(?:[0-9]{1,16}|[A-Za-z0-9]{1,11})$")


class FakeGatewayConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The fake account, and where and how the fake phone answers."""

    user: str = "smsflows"
    password: str = "smsflows"
    senders: tuple[str, ...] = ("70120", "SMSFLOWS")
    """The ``from`` values authorised on the account; anything else gets 114."""
    allowed_ips: tuple[str, ...] = ()
    """Callers allowed by address (206 otherwise); empty: any address."""
    balance: Decimal = Decimal("100.00")
    webhook_url: str | None = None
    """Where replies go: the service's MO webhook, e.g. http://127.0.0.1:8000/mobitex/mo."""
    short_number: str | None = None
    """The MO ``number`` of replies; by default the ``from`` of the message answered (if digits)."""
    smcsc: str = "48602951111"
    retry_interval: Annotated[float, msgspec.Meta(gt=0)] = 180.0  # Mobitex resends every 3 minutes
    ext_id_mode: Literal["mobitex_id", "client_ext_id"] = "mobitex_id"
    """What a reply's ``ext_id`` holds: Mobitex's Id of the message answered, or the sender's ext_id."""
    auto_reply: str | None = None
    """Answer every accepted message with this text after ``auto_reply_delay`` seconds."""
    auto_reply_delay: Annotated[float, msgspec.Meta(ge=0)] = 1.0

    def __post_init__(self) -> None:
        if self.auto_reply is not None and not self.webhook_url:
            raise SettingsError("auto_reply needs webhook_url: the URL the replies are sent to")
        for value in self.allowed_ips:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise SettingsError(f"allowed_ips: {value!r} is not an IP address or CIDR range") from None


class FakeMessage(msgspec.Struct, frozen=True):
    """One message the fake accepted, with Mobitex's parameter names."""

    id: str
    number: str
    text: str
    type: str
    from_: str = msgspec.field(name="from")
    ext_id: str | None = None
    received_at: datetime = msgspec.field(default_factory=lambda: datetime.now(UTC))


class Failure(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How the next ``count`` sms.php/balance.php requests fail: hold, delay, then HTTP or status.

    With ``hold``, each waits until ``POST /fake/release``: a stall that lasts exactly as long as
    the caller wants, however slow the machine.

    With ``number``, only that number's status line, in the next ``count`` requests that name it,
    gets ``status``: one refused number among good ones.
    """

    count: Annotated[int, msgspec.Meta(ge=1)] = 1
    status: Annotated[str, msgspec.Meta(pattern="^[0-9]{3}$")] | None = None
    http_status: Annotated[int, msgspec.Meta(ge=400, le=599)] | None = None
    delay: Annotated[float, msgspec.Meta(ge=0, le=600)] | None = None
    hold: bool = False
    number: str | None = None


class Reply(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The phone answers ``message_id`` (Mobitex's Id); given only ``sender``, it answers the latest
    message to that phone, or writes first if there is none."""

    text: str
    message_id: str | None = None
    sender: str | None = None
    number: str | None = None


class Delivery(msgspec.Struct):
    """One MO on its way to the webhook, and how its attempts went."""

    url: str
    form: dict[str, str]
    attempts: int = 0
    last_answer: str | None = None
    delivered_at: datetime | None = None


class _Fake:
    """The fake's state for the lifetime of the app."""

    def __init__(self, config: FakeGatewayConfig) -> None:
        self.config = config
        self.password_md5 = hashlib.md5(config.password.encode(), usedforsecurity=False).hexdigest()
        self.networks = [ipaddress.ip_network(v, strict=False) for v in config.allowed_ips]
        self.messages: list[FakeMessage] = []
        self.failures: list[Failure] = []  # one entry per request still to fail
        self.line_failures: dict[str, list[str]] = {}  # per number: the statuses its next lines get
        self.held: list[asyncio.Event] = []  # one per held request, set by POST /fake/release
        self.deliveries: list[Delivery] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.http = httpx.AsyncClient(timeout=30)

    async def injected(self) -> Failure | None:
        """Take the next injected failure and wait out its hold and its delay."""
        failure = self.failures.pop(0) if self.failures else None
        if failure is not None and failure.hold:
            released = asyncio.Event()
            self.held.append(released)
            await released.wait()
        if failure is not None and failure.delay:
            await asyncio.sleep(failure.delay)
        return failure

    def refusal(self, fields: dict[str, str], client: str) -> str | None:
        """The status that refuses the whole request (caller, credentials), or None."""
        if self.networks and not any(ipaddress.ip_address(client) in n for n in self.networks):
            return "206"
        if fields.get("user") != self.config.user or fields.get("pass", "").lower() != self.password_md5:
            return "001"
        return None

    def message_refusal(self, fields: dict[str, str]) -> str | None:
        """The status that refuses the message itself (type, sender, text), or None."""
        kind, sender = fields.get("type", ""), fields.get("from", "")
        if kind not in LIMITS:
            return "107"
        if not _SENDER.match(sender):
            return "104"
        if sender not in self.config.senders:
            return "114"
        return _text_status(fields.get("text", ""), kind)

    def accept(self, message: FakeMessage) -> None:
        self.messages.append(message)
        if self.config.auto_reply is None:
            return
        try:
            self.start(self.reply(Reply(self.config.auto_reply, message.id)), self.config.auto_reply_delay)
        except ClientException as exc:
            log.warning("no automatic reply to %s: %s", message.id, exc.detail)

    def reply(self, reply: Reply) -> Delivery:
        """Build the MO form of a phone's answer, as Mobitex would POST it to the webhook."""
        url = self.config.webhook_url
        if not url:
            raise ClientException("no webhook: start the fake gateway with a webhook URL (--webhook)")
        original = None
        if reply.message_id is not None:
            original = next((m for m in self.messages if m.id == reply.message_id), None)
            if original is None:
                raise NotFoundException(f"no message with Id {reply.message_id!r} was sent")
        elif reply.sender is not None:  # the latest message to that phone, if any, is the one answered
            original = next((m for m in reversed(self.messages) if m.number == reply.sender), None)
        sender = reply.sender or (original.number if original else None)
        if sender is None:
            raise ClientException("give message_id (the message answered) or sender (the phone)")
        from_digits = original.from_ if original and original.from_.isdigit() else None
        number = reply.number or self.config.short_number or from_digits
        if number is None:
            raise ClientException("give number, or start the fake with a short number (--short-number)")
        ext_id = ""
        if original is not None:
            ext_id = original.id if self.config.ext_id_mode == "mobitex_id" else original.ext_id or ""
        form = {"number": number, "sender": sender, "text": reply.text, "sms_id": secrets.token_hex(16)}
        form |= {"smcsc": self.config.smcsc, "time": str(int(time.time())), "ext_id": ext_id}
        delivery = Delivery(url, form)
        self.deliveries.append(delivery)
        return delivery

    def start(self, delivery: Delivery, delay: float = 0) -> None:
        task = asyncio.create_task(self._deliver(delivery, delay))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _deliver(self, delivery: Delivery, delay: float) -> None:
        await asyncio.sleep(delay)
        while True:
            delivery.attempts += 1
            try:
                response = await self.http.post(delivery.url, data=delivery.form)
                delivery.last_answer = f"HTTP {response.status_code}"
                if response.status_code == 200:
                    delivery.delivered_at = datetime.now(UTC)
                    return
            except httpx.HTTPError as exc:
                delivery.last_answer = type(exc).__name__
            log.info("MO %s not taken (%s): resending in %s s", delivery.form["sms_id"],
                     delivery.last_answer, self.config.retry_interval)  # fmt: skip
            await asyncio.sleep(self.config.retry_interval)


def _length(text: str, kind: str) -> int:
    """Characters as Mobitex counts them: GSM-7 septets, or UTF-16 units for the unicode types."""
    if kind.startswith("unicode"):
        return len(text.encode("utf-16-le")) // 2
    return measure(text).length if kind in ("sms", "sms_flash", "concat") and is_gsm7(text) else len(text)


def _text_status(text: str, kind: str) -> str | None:
    if not text or (kind == "wap_push" and "|" not in text):
        return "103"
    if kind == "binary" and (len(text) % 2 or not re.fullmatch("[0-9A-Fa-f]+", text)):
        return "103"
    return "105" if _length(text, kind) > LIMITS[kind] else None


async def _fields(request: Request[Any, Any, Any]) -> dict[str, str]:
    """The parameters from the query and (for POST) the form body, in any charset Mobitex accepts."""
    fields, _ = decode_body(request.scope["query_string"], None)
    if request.method == "POST":
        body, _ = decode_body(await request.body(), request.headers.get("content-type"))
        fields |= body
    return fields


def _peer(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client else "0.0.0.0"


def _plain(body: str, status_code: int = 200) -> Response[str]:
    return Response(body, status_code=status_code, media_type="text/plain")


def create_fake_gateway(config: FakeGatewayConfig) -> Litestar:
    """The fake gateway's app: ``/sms.php``, ``/balance.php`` and the ``/fake/*`` control API."""
    fake = _Fake(config)

    async def gate(request: Request[Any, Any, Any]) -> tuple[dict[str, str], str | Response[str] | None]:
        """What both endpoints check first: an injected failure, then the account and the IP."""
        fields = await _fields(request)
        failure = await fake.injected()
        if failure is not None and failure.http_status:
            return fields, _plain("injected HTTP error\n", failure.http_status)
        return fields, (failure.status if failure else None) or fake.refusal(fields, _peer(request))

    @route("/sms.php", http_method=["GET", "POST"])
    async def sms(request: Request[Any, Any, Any]) -> Response[str]:
        fields, status = await gate(request)
        if isinstance(status, Response):
            return status
        status = status or fake.message_refusal(fields)
        lines = []
        for number in fields.get("number", "").split(","):  # one status line per number
            line_status = status or (ACCEPTED if _NUMBER.match(number) else "106")
            if line_status == ACCEPTED and fake.line_failures.get(number):
                line_status = fake.line_failures[number].pop(0)
            message_id = secrets.token_hex(16) if line_status == ACCEPTED else ""
            if message_id:
                fake.accept(FakeMessage(message_id, number, fields["text"], fields["type"], fields["from"],
                                        fields.get("ext_id") or None))  # fmt: skip
            lines.append(f"Status: {line_status}, Id: {message_id}, Number: {number}\n")
        return _plain("".join(lines))

    @route("/balance.php", http_method=["GET", "POST"])
    async def balance(request: Request[Any, Any, Any]) -> Response[str]:
        _, status = await gate(request)
        if isinstance(status, Response):
            return status
        return _plain(f"ERROR {status}\n" if status else f"OK {config.balance}\n")

    @get("/fake/messages", sync_to_thread=False)
    def messages(number: FromQuery[str | None] = None) -> list[FakeMessage]:
        return [m for m in fake.messages if number is None or m.number == number]

    @delete("/fake/messages", sync_to_thread=False)
    def forget() -> None:
        fake.messages.clear()

    @post("/fake/fail", sync_to_thread=False)
    def fail(data: JSONBody[Failure]) -> dict[str, int]:
        if data.status is None and data.http_status is None and data.delay is None and not data.hold:
            raise ClientException(
                "give status (e.g. 201), http_status (e.g. 503), delay (seconds) or hold (true)"
            )
        if data.number is not None:
            if data.status is None or data.http_status is not None or data.delay is not None or data.hold:
                raise ClientException("a failure of one number's line takes a status only (e.g. 201)")
            fake.line_failures.setdefault(data.number, []).extend([data.status] * data.count)
            return {"pending": len(fake.line_failures[data.number])}
        fake.failures.extend([data] * data.count)
        return {"pending": len(fake.failures)}

    @post("/fake/release", sync_to_thread=False)
    def release() -> dict[str, int]:
        """Let every request held by a ``hold`` failure go on; says how many there were."""
        held, fake.held = fake.held, []
        for released in held:
            released.set()
        return {"released": len(held)}

    @post("/fake/reply", status_code=202, sync_to_thread=False)
    def reply(data: JSONBody[Reply]) -> Delivery:
        delivery = fake.reply(data)
        fake.start(delivery)
        return delivery

    @get("/fake/deliveries", sync_to_thread=False)
    def deliveries() -> list[Delivery]:
        return fake.deliveries

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        try:
            yield
        finally:
            for task in list(fake.tasks):
                task.cancel()
            await asyncio.gather(*fake.tasks, return_exceptions=True)
            await fake.http.aclose()

    handlers = [sms, balance, messages, forget, fail, release, reply, deliveries]
    return Litestar(
        route_handlers=handlers,
        lifespan=[lifespan],
        exception_handlers={InvalidMessage: lambda _, exc: _plain(f"{exc}\n", 400)},
        openapi_config=None,
    )


def run_fake_gateway(config: FakeGatewayConfig, host: str, port: int, access_log: bool = True) -> None:
    """Serve the fake gateway until interrupted (``smsflows fake-mobitex``)."""
    app = create_fake_gateway(config)
    uvicorn.run(app, host=host, port=port, log_level="info", server_header=False, access_log=access_log)


@asynccontextmanager
async def fake_gateway_running(config: FakeGatewayConfig, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """The fake gateway on a free port for the duration of the block; yields its base URL."""
    server = uvicorn.Server(
        uvicorn.Config(create_fake_gateway(config), host=host, port=0, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the fake gateway stopped during start-up")
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await task
