"""The outbox dispatcher against the fake Mobitex over real HTTP, on SQLite and PostgreSQL.

Time is moved by hand: the dispatcher's UTC clock and the rate limits' monotonic clock are
injected, so backoff, leases and rate limits are checked by what is due, never by how long it took.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.engine import create_engine
from app.db.models import OutboxMessage
from app.errors import SettingsError
from app.mobitex.fake_gateway import FakeGatewayConfig, fake_gateway_running
from app.outbox.backoff import next_delay
from app.outbox.claims import claim, finish
from app.outbox.dispatcher import Dispatcher, Tick
from app.outbox.limits import SendLimits, TokenBucket
from app.outbox.table import outbox_row
from app.settings import Settings
from tests.conftest import make_settings, running, send_mo, write_flows

USER, PASSWORD = "konto", "sekret"
PHONE = "48600123456"
CONFIG = FakeGatewayConfig(user=USER, password=PASSWORD, senders=("70120", "SMSFLOWS"))
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Clock:
    """A UTC clock that only moves when told to."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Monotonic:
    """A monotonic clock for the token buckets that only moves when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def gateway() -> AsyncIterator[str]:
    async with fake_gateway_running(CONFIG) as url:
        yield url


def sending(database_url: str, gateway: str, **overrides: str) -> Settings:
    """Settings that send through the fake gateway, with rate limits out of the way unless given."""
    values = {
        "send_mode": "mobitex",
        "mobitex_url": f"{gateway}/sms.php",
        "mobitex_user": USER,
        "mobitex_password": PASSWORD,
        "mobitex_from": "SMSFLOWS",
        "send_rate": "100000",
        "send_rate_per_number": "100000",
    }
    return make_settings(database_url, **(values | overrides))


@asynccontextmanager
async def dispatcher(
    engine: AsyncEngine, settings: Settings, clock: Clock | None = None, **options: Any
) -> AsyncIterator[Dispatcher]:
    d = Dispatcher(engine, settings, clock=clock or Clock(), rng=random.Random(4), **options)
    try:
        yield d
    finally:
        await d.stop()


async def queue(
    engine: AsyncEngine, *texts: str, to: str = PHONE, from_number: str | None = "70120", at: datetime = T0
) -> list[int]:
    """Put messages in the outbox as a flow does, created at ``at``; returns their ids."""
    rows = [
        outbox_row(to=to, text=t, from_number=from_number, flow=None, inbound_id=None, now=at) for t in texts
    ]
    async with engine.begin() as conn:
        result = await conn.execute(insert(OutboxMessage).returning(OutboxMessage.id), rows)
        return sorted(result.scalars())


async def row(engine: AsyncEngine, outbox_id: int) -> dict[str, Any]:
    async with engine.connect() as conn:
        found = (
            await conn.execute(select(OutboxMessage.__table__).where(OutboxMessage.id == outbox_id))
        ).one()
    return dict(found._mapping)


async def received(gateway: str) -> list[dict[str, Any]]:
    """What the fake Mobitex accepted, in order."""
    async with httpx.AsyncClient(base_url=gateway) as http:
        messages: list[dict[str, Any]] = (await http.get("/fake/messages")).json()
    return messages


async def fail_next(gateway: str, **failure: Any) -> None:
    async with httpx.AsyncClient(base_url=gateway) as http:
        assert (await http.post("/fake/fail", json=failure)).status_code == 201


# --- delivery -----------------------------------------------------------------------------------


async def test_queued_message_is_sent_with_the_gateway_id_recorded(
    engine: AsyncEngine, gateway: str, database_url: str
) -> None:
    clock = Clock()
    [outbox_id] = await queue(engine, "Dziękujemy! Twój głos został przyjęty.")
    async with dispatcher(engine, sending(database_url, gateway), clock) as d:
        clock.advance(2)
        done = await d.tick()
    assert (done.claimed, done.sent) == (1, 1)
    [message] = await received(gateway)
    sent = await row(engine, outbox_id)
    assert {k: message[k] for k in ("number", "text", "from", "type", "ext_id")} == {
        "number": PHONE,
        "text": "Dziękujemy! Twój głos został przyjęty.",
        "from": "SMSFLOWS",
        "type": "unicode",
        "ext_id": sent["ext_id"],
    }
    assert (sent["status"], sent["mobitex_id"], sent["mobitex_type"]) == ("sent", message["id"], "unicode")
    assert (sent["attempts"], sent["sent_at"], sent["last_error"]) == (1, T0 + timedelta(seconds=2), None)
    assert (sent["claimed_by"], sent["claimed_until"], sent["next_attempt_at"]) == (None, None, None)


async def test_without_a_configured_sender_the_reply_comes_from_the_number_written_to(
    engine: AsyncEngine, gateway: str, database_url: str
) -> None:
    await queue(engine, "GLOS przyjety", from_number="70120")
    async with dispatcher(engine, sending(database_url, gateway, mobitex_from="")) as d:
        await d.tick()
    assert [(m["from"], m["type"]) for m in await received(gateway)] == [("70120", "sms")]


async def test_sent_message_is_not_sent_again(engine: AsyncEngine, gateway: str, database_url: str) -> None:
    await queue(engine, "raz")
    async with dispatcher(engine, sending(database_url, gateway)) as d:
        first, second = await d.tick(), await d.tick()
    assert (first.sent, second.claimed) == (1, 0)
    assert len(await received(gateway)) == 1


@pytest.mark.parametrize(
    ("cause", "code", "meaning"),
    [
        ({"mobitex_password": "zle-haslo"}, "001", "no authorisation: wrong login or password"),
        ({"to": "12345"}, "106", "number wrong or missing"),
        ({"mobitex_from": "OBCY"}, "114", "sender not authorised"),
        ({"inject": "202"}, "202", "no funds on the account"),
    ],
)
async def test_permanent_refusal_fails_at_once_with_the_status_and_its_meaning(
    engine: AsyncEngine, gateway: str, database_url: str, cause: dict[str, str], code: str, meaning: str
) -> None:
    cause = dict(cause)  # the parameter is shared by both databases' runs
    [outbox_id] = await queue(engine, "Hej", to=cause.pop("to", PHONE))
    if "inject" in cause:
        await fail_next(gateway, status=cause.pop("inject"))
    async with dispatcher(engine, sending(database_url, gateway, **cause)) as d:
        first, again = await d.tick(), await d.tick()
    failed = await row(engine, outbox_id)
    assert (first.failed, again.claimed) == (1, 0)
    assert (failed["status"], failed["attempts"], failed["next_attempt_at"]) == ("failed", 1, None)
    assert f"status {code} ({meaning})" in failed["last_error"]
    assert PASSWORD not in failed["last_error"] and failed["claimed_by"] is None
    assert await received(gateway) == []


async def test_failure_is_logged_with_the_outbox_id_and_never_the_password(
    engine: AsyncEngine, gateway: str, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    [outbox_id] = await queue(engine, "Hej")
    settings = sending(database_url, gateway, mobitex_password="zle-haslo")
    async with dispatcher(engine, settings) as d:
        await d.tick()
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "smsflows.outbox")
    assert f"outbox {outbox_id} to {PHONE} failed" in logged and "001" in logged
    assert "zle-haslo" not in caplog.text


async def test_text_over_three_parts_fails_before_reaching_the_gateway(
    engine: AsyncEngine, gateway: str, database_url: str
) -> None:
    [outbox_id] = await queue(engine, "ż" * 202)
    async with dispatcher(engine, sending(database_url, gateway)) as d:
        assert (await d.tick()).failed == 1
    failed = await row(engine, outbox_id)
    assert failed["status"] == "failed" and "Shorten it" in failed["last_error"]
    assert await received(gateway) == []


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        ({"status": "201"}, "status 201 (system error)"),
        ({"http_status": 503}, "HTTP 503"),
        ({"delay": 1, "status": "201"}, "did not answer within 0.3 s"),
    ],
    ids=["status-201", "http-503", "timeout"],
)
async def test_transient_failure_is_retried_after_a_backoff_then_sent(
    engine: AsyncEngine, gateway: str, database_url: str, failure: dict[str, Any], error: str
) -> None:
    clock = Clock()
    [outbox_id] = await queue(engine, "Hej")
    await fail_next(gateway, **failure)
    async with dispatcher(engine, sending(database_url, gateway), clock, gateway_timeout=0.3) as d:
        assert (await d.tick()).retried == 1
        waiting = await row(engine, outbox_id)
        assert (waiting["status"], waiting["attempts"], waiting["claimed_by"]) == ("queued", 1, None)
        assert error in waiting["last_error"]
        delay = (waiting["next_attempt_at"] - T0).total_seconds()
        assert 2.5 <= delay <= 5.0  # the first backoff: half to all of 5 s
        clock.advance(delay - 0.1)
        assert (await d.tick()).claimed == 0  # not due yet
        clock.advance(0.1)
        assert (await d.tick()).sent == 1
    sent = await row(engine, outbox_id)
    assert (sent["status"], sent["attempts"]) == ("sent", 2)
    assert [m["ext_id"] for m in await received(gateway)] == [sent["ext_id"]]


async def test_backoff_grows_with_each_failure_and_ends_in_failure_past_the_max_age(
    engine: AsyncEngine, gateway: str, database_url: str
) -> None:
    clock = Clock()
    [outbox_id] = await queue(engine, "Hej")
    await fail_next(gateway, status="201", count=20)
    delays = []
    async with dispatcher(engine, sending(database_url, gateway, send_max_age="120"), clock) as d:
        while (state := await row(engine, outbox_id))["status"] == "queued":
            if state["next_attempt_at"] is not None:
                delays.append((state["next_attempt_at"] - clock.now).total_seconds())
                clock.now = state["next_attempt_at"]
            await d.tick()
    assert all(5 * 2**i / 2 <= d <= 5 * 2**i for i, d in enumerate(delays))
    assert state["status"] == "failed" and state["attempts"] == len(delays) + 1
    assert state["last_error"].startswith(f"gave up after {state['attempts']} attempt(s)")
    assert "SMSFLOWS_SEND_MAX_AGE=120" in state["last_error"] and "status 201" in state["last_error"]
    assert clock.now - T0 <= timedelta(seconds=120)
    assert await received(gateway) == []


async def test_dry_run_records_the_message_and_sends_nothing(
    engine: AsyncEngine, gateway: str, database_url: str
) -> None:
    [outbox_id] = await queue(engine, "Hej")
    settings = sending(database_url, gateway, send_mode="dry-run")
    async with dispatcher(engine, settings) as d:
        assert (await d.tick()).dry_run == 1
    recorded = await row(engine, outbox_id)
    assert (recorded["status"], recorded["mobitex_type"], recorded["sent_at"]) == ("dry-run", "sms", None)
    assert recorded["mobitex_id"] is None and recorded["claimed_by"] is None
    assert await received(gateway) == []


# --- several workers ----------------------------------------------------------------------------


async def test_message_of_a_worker_that_died_is_sent_once_after_its_lease(
    engine: AsyncEngine, gateway: str, database_url: str
) -> None:
    ids = await queue(engine, *(f"wiadomosc {i}" for i in range(5)))
    # A worker claims everything with a 1-second lease, and dies without sending anything.
    dead = await claim(engine, "dead-worker", T0, timedelta(seconds=1), limit=10)
    assert [c.id for c in dead] == ids
    clock = Clock()
    async with dispatcher(engine, sending(database_url, gateway), clock) as d:
        assert (await d.tick()).claimed == 0  # still leased
        clock.advance(1.5)
        assert (await d.tick()).sent == 5
        assert (await d.tick()).claimed == 0
    # Should the first worker wake up after all, its late outcome changes nothing.
    assert not await finish(engine, dead[0], "dead-worker", status="failed")
    rows = [await row(engine, i) for i in ids]
    assert {(r["status"], r["attempts"]) for r in rows} == {("sent", 2)}
    assert Counter(m["ext_id"] for m in await received(gateway)) == Counter(r["ext_id"] for r in rows)


async def test_two_workers_send_a_thousand_messages_each_exactly_once(
    database_url: str, engine: AsyncEngine, gateway: str
) -> None:
    settings = sending(database_url, gateway)
    async with engine.begin() as conn:
        rows = [
            outbox_row(to=f"48600{i:06d}", text=f"Numer {i}", from_number="70120", flow=None,
                       inbound_id=None, now=datetime.now(UTC))
            for i in range(1000)
        ]  # fmt: skip
        await conn.execute(insert(OutboxMessage), rows)
    second_engine = create_engine(settings)  # its own connections, as another machine would have
    try:
        first = Dispatcher(engine, settings, concurrency=16)
        second = Dispatcher(second_engine, settings, concurrency=16)
        try:
            totals: list[Tick] = list(await asyncio.gather(first.drain(), second.drain()))
        finally:
            await first.stop()
            await second.stop()
    finally:
        await second_engine.dispose()
    per_ext_id = Counter(m["ext_id"] for m in await received(gateway))
    assert len(per_ext_id) == 1000 and set(per_ext_id.values()) == {1}
    assert [t.sent for t in totals if t.sent] == [t.sent for t in totals]  # both did a share
    assert sum(t.sent for t in totals) == 1000
    async with engine.connect() as conn:
        statuses = dict(
            (await conn.execute(text("SELECT status, count(*) FROM outbox GROUP BY status"))).all()
        )
        stored = set((await conn.execute(text("SELECT ext_id FROM outbox WHERE attempts = 1"))).scalars())
    assert statuses == {"sent": 1000} and stored == set(per_ext_id)


# --- rate limits --------------------------------------------------------------------------------


async def test_global_rate_limit_sends_one_seconds_worth_per_second(
    engine: AsyncEngine, gateway: str, database_url: str
) -> None:
    ids = await queue(engine, *(f"m{i}" for i in range(12)))
    mono = Monotonic()
    settings = sending(database_url, gateway, send_rate="5")
    async with dispatcher(engine, settings, limits=SendLimits(5, 100, clock=mono)) as d:
        sent = [(await d.tick()).sent, (await d.tick()).sent]
        mono.now += 1
        sent.append((await d.tick()).sent)
        mono.now += 0.2
        sent.append((await d.tick()).sent)
    assert sent == [5, 0, 5, 1]
    by_ext_id = {(await row(engine, i))["ext_id"]: i for i in ids}
    order = [by_ext_id[m["ext_id"]] for m in await received(gateway)]
    # Oldest first; the messages of one round go out together, in any order.
    assert [set(order[:5]), set(order[5:10]), order[10:]] == [set(ids[:5]), set(ids[5:10]), ids[10:11]]


async def test_per_number_limit_spaces_messages_to_one_phone_without_holding_others(
    engine: AsyncEngine, gateway: str, database_url: str
) -> None:
    clock, mono = Clock(), Monotonic()
    to_one = await queue(engine, "pierwsza", "druga", "trzecia")
    [to_other] = await queue(engine, "inna", to="48600999888")
    settings = sending(database_url, gateway, send_rate_per_number="1")
    async with dispatcher(engine, settings, clock, limits=SendLimits(100, 1, clock=mono)) as d:
        first = await d.tick()
        held = await row(engine, to_one[1])
        second = await d.tick()
        clock.advance(1)
        mono.now += 1
        third = await d.tick()
        clock.advance(1)
        mono.now += 1
        fourth = await d.tick()
    assert (first.sent, first.deferred, second.claimed) == (2, 2, 0)
    assert (held["status"], held["attempts"], held["next_attempt_at"]) == (
        "queued",
        0,
        T0 + timedelta(seconds=1),
    )
    assert (third.sent, third.deferred, fourth.sent) == (1, 1, 1)
    texts = [m["text"] for m in await received(gateway)]
    assert texts == ["pierwsza", "inna", "druga", "trzecia"]
    assert (await row(engine, to_other))["status"] == "sent"


def test_token_bucket_refills_at_its_rate_up_to_one_seconds_worth() -> None:
    mono = Monotonic()
    bucket = TokenBucket(2, clock=mono)
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    assert bucket.wait() == 0.5
    mono.now += 10
    assert bucket.available() == 2


def test_backoff_doubles_up_to_the_cap_and_stays_in_the_upper_half() -> None:
    rng = random.Random(1)
    for attempt in range(1, 30):
        ceiling = min(300.0, 5.0 * 2 ** (attempt - 1))
        assert ceiling / 2 <= next_delay(attempt, 5.0, 300.0, rng) <= ceiling
    assert next_delay(10_000, 5.0, 300.0, rng) <= 300.0
    with pytest.raises(ValueError, match="attempt counts from 1"):
        next_delay(0, 5.0, 300.0, rng)


# --- in the service and as `smsflows worker` ----------------------------------------------------

REPLY_FLOW = """
id = "info"
kind = "autoreply"
numbers = ["70120"]
keywords = ["INFO"]
[replies]
reply = "Wyślij GLOS A lub GLOS B."
"""


async def test_service_sends_a_flows_reply_through_the_gateway(
    database_url: str, gateway: str, tmp_path: Path
) -> None:
    flows = write_flows(tmp_path / "flows", info=REPLY_FLOW)
    settings = sending(database_url, gateway, flows_dir=str(flows), dispatcher="true")
    async with running(settings) as svc:
        await send_mo(svc, text="INFO")
        for _ in range(200):
            if await received(gateway):
                break
            await asyncio.sleep(0.05)
        [message] = await received(gateway)
        for _ in range(200):
            if await svc.scalar("SELECT status FROM outbox") == "sent":
                break
            await asyncio.sleep(0.05)
        listed = (await svc.api.get("/api/outbox")).json()["items"]
    assert (message["number"], message["text"]) == (PHONE, "Wyślij GLOS A lub GLOS B.")
    assert [(i["status"], i["sent"]) for i in listed] == [("sent", True)]


async def test_without_credentials_the_service_shows_replies_as_dry_runs(
    database_url: str, tmp_path: Path
) -> None:
    flows = write_flows(tmp_path / "flows", info=REPLY_FLOW)
    async with running(make_settings(database_url, flows_dir=str(flows), dispatcher="true")) as svc:
        await send_mo(svc, text="INFO")
        for _ in range(200):
            listed = (await svc.api.get("/api/outbox", params={"status": "dry-run"})).json()["items"]
            if listed:
                break
            await asyncio.sleep(0.05)
    assert [(i["text"], i["status"], i["sent"]) for i in listed] == [
        ("Wyślij GLOS A lub GLOS B.", "dry-run", False)
    ]


async def test_worker_command_once_sends_what_is_due_and_exits(
    engine: AsyncEngine, gateway: str, database_url: str
) -> None:
    await queue(engine, "jeden", "dwa", at=datetime.now(UTC))
    settings = sending(database_url, gateway)
    env = os.environ | {f"SMSFLOWS_{k.upper()}": str(v) for k, v in _env_values(settings).items()}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.cli", "worker", "--once",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    # Both go to one phone: the second waits out SMSFLOWS_SEND_RATE_PER_NUMBER (1 a second).
    assert out.decode().startswith("3 claimed, 2 sent, 0 dry-run, 0 failed, 0 retried, 1 deferred")
    assert sorted(m["text"] for m in await received(gateway)) == ["dwa", "jeden"]


async def test_worker_command_sends_what_is_queued_while_it_runs_and_stops_cleanly_on_sigterm(
    engine: AsyncEngine, gateway: str, database_url: str
) -> None:
    settings = sending(database_url, gateway)
    env = os.environ | {f"SMSFLOWS_{k.upper()}": str(v) for k, v in _env_values(settings).items()}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.cli", "worker", env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        await queue(engine, "po starcie", at=datetime.now(UTC))
        for _ in range(400):
            if await received(gateway):
                break
            await asyncio.sleep(0.05)
    finally:
        process.terminate()
        _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    assert [m["text"] for m in await received(gateway)] == ["po starcie"]


def test_mobitex_mode_without_an_account_is_refused_with_what_to_set(database_url: str) -> None:
    settings = make_settings(database_url, send_mode="mobitex")
    with pytest.raises(SettingsError, match="needs SMSFLOWS_MOBITEX_USER and SMSFLOWS_MOBITEX_PASSWORD"):
        Dispatcher(create_engine(settings), settings)


def _env_values(settings: Settings) -> dict[str, Any]:
    keys = ("database_url", "send_mode", "mobitex_url", "mobitex_user", "mobitex_password", "mobitex_from")
    return {k: getattr(settings, k) for k in keys}
