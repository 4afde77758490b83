"""A stand-in for the Mobitex gateway: POST MO messages to a webhook the way Mobitex does.

Mobitex resends a request that did not get HTTP 200 every 3 minutes, with the same body, until it
does; ``smsflows simulate`` reproduces that, so the service can be load-tested and its answers
watched before the real gateway is pointed at it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import secrets
import ssl
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Annotated, Protocol
from urllib.parse import urlencode

import httpx
import msgspec
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from app.errors import SettingsError, SmsflowsError

CHARSETS = ("utf-8", "windows-1250", "iso-8859-2")  # what Mobitex's own sending API accepts
SMCSC = "48602951111"  # the SMS centre number of the Mobitex spec's example
TIMEOUT = 30.0  # seconds; a request that takes longer counts as unanswered and is resent
CONNECT_TIMEOUT = 5.0  # seconds to open a connection: a service on this machine or near answers in ms
# Connections per httpx client: one client's pool slows down sharply past a handful of connections
# (measured on loopback: 1250 req/s with 8, 310 with 32), so higher concurrency uses more clients.
PER_CLIENT = 4


class ServiceUnreachable(SmsflowsError):
    """Nothing answers at the webhook URL: the service is not running there."""


async def check_reachable(url: str, tls: ssl.SSLContext) -> None:
    """Fail at once, saying what was tried, when nothing listens at ``url``: the retries that
    follow a refused request would otherwise wait minutes without a word."""
    timeout = httpx.Timeout(TIMEOUT, connect=CONNECT_TIMEOUT)
    try:
        async with httpx.AsyncClient(timeout=timeout, verify=tls) as client:
            await client.head(url)  # any answer will do (the webhook takes only POST)
    except httpx.TransportError as exc:
        detail = str(exc) or "no answer"
        raise ServiceUnreachable(
            f"nothing answers at {url} ({exc.__class__.__name__}: {detail}; connecting gives up after "
            f"{CONNECT_TIMEOUT:g} s): start the service (`make run` or `smsflows serve`), or give "
            "its webhook URL with --url"
        ) from None


class SimulationOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What to send, where, and how fast; the names are those of ``smsflows simulate``'s options.

    The numeric bounds are checked by ``msgspec.convert`` (as the CLI builds it), the rest always.
    """

    url: str = "http://127.0.0.1:8000/mobitex/mo"
    count: Annotated[int, msgspec.Meta(ge=1)] = 1
    rate: Annotated[float, msgspec.Meta(ge=0)] = 0.0  # message starts per second; 0 = unpaced
    concurrency: Annotated[int, msgspec.Meta(ge=1)] = 16
    number: str = "70120"
    sender: str = "48600123456"
    text: str = "GLOS A"
    ext_id: str = ""
    charset: str = "utf-8"
    retry_interval: Annotated[float, msgspec.Meta(ge=0)] = 180.0
    max_attempts: Annotated[int, msgspec.Meta(ge=1)] | None = None  # None: retry forever, as Mobitex
    forwarded_for: str | None = None

    def __post_init__(self) -> None:
        if self.charset not in CHARSETS:
            raise SettingsError(f"charset: {self.charset!r} is not one of {', '.join(CHARSETS)}")
        try:
            self.text.encode(self.charset)
        except UnicodeEncodeError as exc:
            bad = self.text[exc.start : exc.end]
            raise SettingsError(
                f"text: {bad!r} cannot be encoded in {self.charset}; use charset utf-8"
            ) from None
        try:
            url = httpx.URL(self.url)
        except httpx.InvalidURL as exc:
            raise SettingsError(f"url: {self.url!r} is not a URL ({exc})") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise SettingsError(f"url: {self.url!r} must be http(s)://host[:port]/path")

    @property
    def content_type(self) -> str:
        return f"application/x-www-form-urlencoded; charset={self.charset}"


def mo_body(options: SimulationOptions, sms_id: str, unix_time: int) -> bytes:
    """The form Mobitex POSTs, with the text percent-encoded in the chosen charset."""
    fields = {
        "number": options.number,
        "sender": options.sender,
        "text": options.text,
        "sms_id": sms_id,
        "smcsc": SMCSC,
        "time": str(unix_time),
        "ext_id": options.ext_id,
    }
    return urlencode(fields, encoding=options.charset).encode("ascii")


@dataclass
class SimulationResult:
    """Counts per message (sent, acknowledged, retried, failed) and timings per request."""

    sent: int = 0  # messages whose first request went out
    requests: int = 0  # every POST, resends included
    acknowledged: int = 0  # messages that got a 200
    retried: int = 0  # messages that needed more than one request
    failed: int = 0  # messages given up after max_attempts, never acknowledged
    waiting: int = 0  # messages waiting out retry_interval right now
    elapsed: float = 0.0  # seconds, first start to last answer
    refusals: Counter[str] = field(default_factory=Counter)  # answers other than 200, errors by name
    latencies: list[float] = field(default_factory=list)  # seconds, one per answered request

    @property
    def per_second(self) -> float:
        return self.acknowledged / self.elapsed if self.elapsed > 0 else 0.0

    def latency(self, quantile: float) -> float | None:
        """Nearest-rank quantile of the request latencies, in seconds; None before any answer."""
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(quantile * len(ordered)) - 1)]

    def summary(self) -> str:
        def ms(quantile: float) -> str:
            value = self.latency(quantile)
            return "n/a" if value is None else f"{value * 1000:.1f} ms"

        lines = [
            f"sent {self.sent} messages in {self.elapsed:.2f} s ({self.requests} requests): "
            f"{self.acknowledged} acknowledged with 200, {self.retried} retried, {self.failed} failed",
            f"{self.per_second:.1f} messages/s; request latency p50 {ms(0.5)}, p99 {ms(0.99)}",
        ]
        if self.refusals:
            seen = ", ".join(f"{name} x{n}" for name, n in self.refusals.most_common())
            lines.append(f"answers other than 200: {seen}")
        return "\n".join(lines)


class Clock(Protocol):
    """What paces the message starts: the real clock, or one a test moves by hand."""

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock, for every run but a test's."""

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class Pacer:
    """Spaces message starts 1/rate seconds apart, on a fixed schedule so sleep overshoot evens out."""

    def __init__(self, rate: float, clock: Clock) -> None:
        self._interval = 1 / rate if rate > 0 else 0.0
        self._clock = clock
        self._start = clock.monotonic()
        self._started = 0

    async def wait(self) -> None:
        if self._interval:
            delay = self._start + self._started * self._interval - self._clock.monotonic()
            if delay > 0:
                await self._clock.sleep(delay)
        self._started += 1


class _Simulation:
    def __init__(
        self,
        options: SimulationOptions,
        clients: list[httpx.AsyncClient],
        progress: Progress,
        clock: Clock,
    ) -> None:
        self.options = options
        self.clock = clock
        self.progress = progress
        self.bar = progress.add_task("sending", total=options.count)
        self.result = SimulationResult()
        # One token per request allowed in flight, each naming the client to send it with; a message
        # waiting out retry_interval holds none.
        self.slots: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()
        for i in range(options.concurrency):
            self.slots.put_nowait(clients[i % len(clients)])

    async def run(self) -> None:
        pacer = Pacer(self.options.rate, self.clock)
        async with asyncio.TaskGroup() as tasks:
            for _ in range(self.options.count):
                await pacer.wait()
                client = await self.slots.get()  # handed back by deliver() once the request is answered
                body = mo_body(self.options, secrets.token_hex(16), int(time.time()))
                self.result.sent += 1
                tasks.create_task(self.deliver(body, client))

    async def deliver(self, body: bytes, client: httpx.AsyncClient) -> None:
        """Send one message until it gets a 200 or max_attempts runs out, like Mobitex."""
        result, max_attempts = self.result, self.options.max_attempts
        for attempt in itertools.count(1):
            if attempt > 1:
                if attempt == 2:
                    result.retried += 1
                result.waiting += 1
                self.show()
                await asyncio.sleep(self.options.retry_interval)
                result.waiting -= 1
                client = await self.slots.get()
            try:
                acknowledged = await self.post(client, body)
            finally:
                self.slots.put_nowait(client)
            if acknowledged:
                result.acknowledged += 1
                break
            if max_attempts is not None and attempt >= max_attempts:
                result.failed += 1
                break
        self.progress.advance(self.bar)
        self.show()

    async def post(self, client: httpx.AsyncClient, body: bytes) -> bool:
        self.result.requests += 1
        started = time.perf_counter()
        try:
            response = await client.post(self.options.url, content=body)
        except httpx.TransportError as exc:
            self.result.refusals[type(exc).__name__] += 1
            return False
        self.result.latencies.append(time.perf_counter() - started)
        if response.status_code != 200:
            self.result.refusals[str(response.status_code)] += 1
            return False
        return True

    def show(self) -> None:
        r = self.result
        self.progress.update(
            self.bar, description=f"ok {r.acknowledged}  retrying {r.waiting}  failed {r.failed}"
        )


async def run_simulation(options: SimulationOptions, clock: Clock | None = None) -> SimulationResult:
    """Send ``options.count`` messages and return what happened to them; ``clock`` paces the starts."""
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        # No bar in logs, pipes and CI output; FORCE_COLOR and the like do not change that.
        disable=not console.file.isatty(),
    )
    headers = {"Content-Type": options.content_type, "User-Agent": "smsflows-simulate"}
    if options.forwarded_for:
        headers["X-Forwarded-For"] = options.forwarded_for
    limits = httpx.Limits(max_connections=PER_CLIENT, max_keepalive_connections=PER_CLIENT)
    tls = httpx.create_ssl_context()  # built once: loading the CA bundle costs ~30 ms per client
    await check_reachable(options.url, tls)
    timeout = httpx.Timeout(TIMEOUT, connect=CONNECT_TIMEOUT)
    started = time.perf_counter()
    with progress:
        async with contextlib.AsyncExitStack() as stack:
            clients = [
                await stack.enter_async_context(
                    httpx.AsyncClient(headers=headers, limits=limits, timeout=timeout, verify=tls)
                )
                for _ in range(math.ceil(options.concurrency / PER_CLIENT))
            ]
            simulation = _Simulation(options, clients, progress, clock or SystemClock())
            await simulation.run()
    simulation.result.elapsed = time.perf_counter() - started
    return simulation.result
