"""``smsflows simulate`` posts like Mobitex: against the real service, and against a scripted server."""

from __future__ import annotations

import asyncio
import itertools
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, quote_from_bytes

import msgspec
import pytest
from click.testing import CliRunner

from app.cli import main
from app.mobitex.simulator import Pacer, ServiceUnreachable, SimulationOptions, run_simulation
from tests.conftest import Service, free_port, make_settings, start_service

POLISH = "Zażółć gęślą jaźń ĄĆĘŁŃÓŚŹŻ"


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode("ascii"), keep_blank_values=True, encoding="latin-1")


@dataclass
class ScriptedServer:
    """A bare HTTP/1.1 keep-alive server on loopback: records every request, answers from a script."""

    statuses: Iterable[int] = ()
    then: int = 200  # the answer once the script has run out
    delay: float = 0.0
    now: Callable[[], float] = time.monotonic  # when a request arrives, by this clock
    port: int = 0
    requests: list[Request] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    async def __aenter__(self) -> ScriptedServer:
        self._script = iter(self.statuses)
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        for writer in self._connections.values():
            writer.close()  # the handler sees end-of-stream and returns
        await asyncio.gather(*self._connections)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mobitex/mo"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                method, path, _ = head[0].split(" ")
                headers = {
                    k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:] if h)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if method == "HEAD":  # the simulator checking that something listens, as the webhook
                    writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                    await writer.drain()
                    continue
                self.requests.append(Request(method, path, headers, body, self.now()))
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                await asyncio.sleep(self.delay)
                self.in_flight -= 1
                status = next(self._script, self.then)
                writer.write(f"HTTP/1.1 {status} Scripted\r\nContent-Length: 3\r\n\r\nOK\n".encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def options(url: str, **overrides: object) -> SimulationOptions:
    values = {"url": url, "retry_interval": 0.2, "concurrency": 4, **overrides}
    return msgspec.convert(values, SimulationOptions)


async def test_every_simulated_message_is_stored_once_with_the_mobitex_fields(service: Service) -> None:
    before = int(time.time())
    result = await run_simulation(options(service.mo_url, count=25, concurrency=8))
    after = int(time.time())
    assert (result.sent, result.acknowledged, result.retried, result.failed) == (25, 25, 0, 0)
    assert result.requests == 25
    rows = await service.rows(
        "SELECT sms_id, number, sender, text, smcsc, time, ext_id, deliveries, client_ip "
        "FROM inbound_messages"
    )
    assert len(rows) == 25
    assert len({r.sms_id for r in rows}) == 25
    for row in rows:
        assert re.fullmatch("[0-9a-f]{32}", row.sms_id)
        assert (row.number, row.sender, row.text, row.smcsc, row.ext_id) == (
            "70120",
            "48600123456",
            "GLOS A",
            "48602951111",
            None,
        )
        assert before <= row.time <= after
        assert (row.deliveries, row.client_ip) == (1, "127.0.0.1")


@pytest.mark.parametrize("charset", ["windows-1250", "iso-8859-2", "utf-8"])
async def test_polish_text_is_sent_in_the_chosen_charset_and_stored_intact(
    service: Service, charset: str
) -> None:
    result = await run_simulation(options(service.mo_url, text=POLISH, charset=charset))
    assert result.acknowledged == 1
    text, raw = (await service.rows("SELECT text, raw_body FROM inbound_messages"))[0]
    assert text == POLISH
    # The bytes on the wire are the charset's own, percent-encoded: "ą" is %B9 in windows-1250.
    assert quote_from_bytes("gęślą".encode(charset)).encode() in bytes(raw)


async def test_ext_id_is_passed_through_to_the_stored_message(service: Service) -> None:
    ext_id = "4f1c2a9e0b7d4c3e8a6f5d2b1c0e9a87"
    result = await run_simulation(options(service.mo_url, count=3, ext_id=ext_id))
    assert result.acknowledged == 3
    assert await service.rows("SELECT DISTINCT ext_id FROM inbound_messages") == [(ext_id,)]


async def test_request_is_a_form_post_exactly_as_mobitex_sends_it() -> None:
    async with ScriptedServer() as server:
        await run_simulation(options(server.url, charset="windows-1250", forwarded_for="213.5.10.19"))
    [request] = server.requests
    assert (request.method, request.path) == ("POST", "/mobitex/mo")
    assert request.headers["content-type"] == "application/x-www-form-urlencoded; charset=windows-1250"
    assert request.headers["x-forwarded-for"] == "213.5.10.19"
    form = request.form
    assert set(form) == {"number", "sender", "text", "sms_id", "smcsc", "time", "ext_id"}
    assert form["ext_id"] == [""]  # sent, and empty, when no --ext-id is given
    assert form["smcsc"] == ["48602951111"]
    assert re.fullmatch("[0-9a-f]{32}", form["sms_id"][0])


async def test_non_200_is_resent_with_the_same_body_every_retry_interval_until_acknowledged() -> None:
    async with ScriptedServer(statuses=[503, 500, 403]) as server:
        result = await run_simulation(options(server.url, text=POLISH, max_attempts=None))
    assert (result.acknowledged, result.retried, result.failed, result.requests) == (1, 1, 0, 4)
    assert result.refusals == {"503": 1, "500": 1, "403": 1}
    bodies = {r.body for r in server.requests}
    assert len(bodies) == 1  # same sms_id, same time, same text on every resend
    gaps = [b.at - a.at for a, b in itertools.pairwise(server.requests)]
    assert all(gap >= 0.19 for gap in gaps), gaps


async def test_nothing_listening_at_the_url_fails_at_once_saying_what_was_tried() -> None:
    url = f"http://127.0.0.1:{free_port()}/mobitex/mo"
    with pytest.raises(ServiceUnreachable) as refused:
        await run_simulation(options(url))
    message = str(refused.value)
    assert message.startswith(f"nothing answers at {url} (ConnectError")
    assert "smsflows serve" in message and "--url" in message


def test_simulate_command_says_when_nothing_listens(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/mobitex/mo"
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "simulate", "--url", url],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert f"Error: nothing answers at {url}" in result.stderr
    assert "Traceback" not in result.stderr


async def test_max_attempts_gives_up_and_counts_the_messages_failed() -> None:
    async with ScriptedServer(then=503) as server:
        result = await run_simulation(options(server.url, count=2, max_attempts=3, retry_interval=0.05))
    assert (result.acknowledged, result.failed, result.requests) == (0, 2, 6)
    assert len(server.requests) == 6
    assert len({r.body for r in server.requests}) == 2


async def test_service_refusing_the_client_with_403_ends_in_failed_messages(database_url: str) -> None:
    settings = make_settings(database_url, mo_allowed_ips="213.5.10.19")
    server, task, base_url = await start_service(settings)
    try:
        result = await run_simulation(options(base_url + settings.mo_path, count=3, max_attempts=2))
    finally:
        server.should_exit = True
        await task
    assert (result.acknowledged, result.failed) == (0, 3)
    assert result.refusals == {"403": 6}
    assert "0 acknowledged with 200" in result.summary() and "403 x6" in result.summary()


@dataclass
class HandClock:
    """Time that moves only when the pacer sleeps: the schedule is checked exactly, on any machine."""

    now: float = 1000.0
    slept: list[float] = field(default_factory=list)

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)  # others run meanwhile, as in a real sleep

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def test_rate_spaces_the_starts_of_messages() -> None:
    clock = HandClock()
    async with ScriptedServer(now=clock.monotonic) as server:
        result = await run_simulation(options(server.url, count=6, rate=10), clock=clock)
    # Six starts at 10/s: one at once, then one every 0.1 s; none lands before its turn.
    assert clock.slept == pytest.approx([0.1] * 5)
    arrivals = sorted(r.at - 1000.0 for r in server.requests)
    assert all(at >= k / 10 - 1e-9 for k, at in enumerate(arrivals)), arrivals
    assert result.acknowledged == 6


async def test_pacer_keeps_a_fixed_schedule_so_a_late_start_is_made_up() -> None:
    clock = HandClock(now=0.0)
    pacer = Pacer(10, clock)
    await pacer.wait()  # start 0, due at 0
    clock.advance(0.25)  # sending it took longer than the interval
    await pacer.wait()  # start 1, due at 0.1: at once
    await pacer.wait()  # start 2, due at 0.2: at once
    await pacer.wait()  # start 3, due at 0.3
    assert clock.slept == pytest.approx([0.05])
    unpaced = HandClock()
    for _ in range(3):
        await Pacer(0, unpaced).wait()
    assert unpaced.slept == []


async def test_concurrency_caps_the_requests_in_flight() -> None:
    async with ScriptedServer(delay=0.1) as server:
        result = await run_simulation(options(server.url, count=18, concurrency=6))
    assert server.max_in_flight == 6  # spread over two httpx clients of 4 connections
    assert result.acknowledged == 18


async def test_simulate_command_stores_messages_and_prints_a_summary(service: Service) -> None:
    args = ["simulate", "--url", service.mo_url, "--count", "5", "--concurrency", "2", "--ext-id", "S1"]
    outcome = await asyncio.to_thread(CliRunner().invoke, main, args)
    assert outcome.exit_code == 0, outcome.output
    assert "5 acknowledged with 200, 0 retried, 0 failed" in outcome.stdout
    assert outcome.stderr == ""  # no progress bar when stderr is not a terminal
    assert await service.scalar("SELECT count(*) FROM inbound_messages WHERE ext_id = 'S1'") == 5


async def test_simulate_command_exits_1_when_messages_are_never_acknowledged() -> None:
    async with ScriptedServer(then=503) as server:
        args = [
            "simulate",
            "--url",
            server.url,
            "--count",
            "2",
            "--max-attempts",
            "2",
            "--retry-interval",
            "0",
        ]
        outcome = await asyncio.to_thread(CliRunner().invoke, main, args)
    assert isinstance(outcome.exception, SystemExit)
    assert outcome.exit_code == 1
    assert "0 acknowledged with 200, 2 retried, 2 failed" in outcome.stdout
    assert len(server.requests) == 4


def test_simulate_command_refuses_text_the_charset_cannot_carry() -> None:
    outcome = CliRunner().invoke(main, ["simulate", "--text", "żółw 🐢", "--charset", "iso-8859-2"])
    assert outcome.exit_code == 1
    assert "cannot be encoded in iso-8859-2" in outcome.output
    assert "Traceback" not in outcome.output
