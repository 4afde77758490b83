"""Messages that share a text travel in one request; each number's answer lands on its own message.

Against the fake Mobitex over real HTTP, on SQLite and PostgreSQL; time is moved by hand where
backoff, leases and rate limits matter (see test_dispatcher.py, whose helpers these share).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.cli import main
from app.db.engine import create_engine
from app.db.migrate import upgrade
from app.db.models import OutboxMessage
from app.mobitex.fake_gateway import fake_gateway_running
from app.outbox.claims import OUTBOX, claim
from app.outbox.limits import SendLimits
from app.outbox.table import outbox_row
from tests.conftest import make_settings, running
from tests.test_dispatcher import CONFIG, T0, Clock, Monotonic, dispatcher, fail_next, received, row, sending

VOTE_REPLY = "Dziękujemy, głos przyjęty!"


@pytest.fixture
async def gateway() -> AsyncIterator[str]:
    async with fake_gateway_running(CONFIG) as url:
        yield url


def phones(count: int, start: int = 0) -> list[str]:
    return [f"48600{i:06d}" for i in range(start, start + count)]


async def queue_to(engine: AsyncEngine, text: str, numbers: list[str], **extra: Any) -> list[int]:
    """Queue ``text`` to each of ``numbers`` (in order), with extra outbox columns; returns the ids."""
    rows = [
        outbox_row(to=n, text=text, from_number="70120", flow=None, inbound_id=None, now=T0) | extra
        for n in numbers
    ]
    async with engine.begin() as conn:
        result = await conn.execute(insert(OutboxMessage).returning(OutboxMessage.id), rows)
        return sorted(result.scalars())


async def rows(engine: AsyncEngine, ids: list[int]) -> list[dict[str, Any]]:
    return [await row(engine, i) for i in ids]


async def received_when(gateway: str, count: int) -> list[dict[str, Any]]:
    """What the fake accepted, once it holds ``count`` messages (a delayed request lands late)."""
    deadline = time.monotonic() + 120  # generous: a loaded machine is slow, never wrong
    while time.monotonic() < deadline:
        messages = await received(gateway)
        if len(messages) >= count:
            return messages
        await asyncio.sleep(0.05)
    raise AssertionError(f"the fake gateway never got {count} messages")


# --- groups -------------------------------------------------------------------------------------


async def test_one_text_to_many_numbers_goes_in_one_request_with_each_numbers_own_id(
    engine: AsyncEngine, gateway: str, database_url: str
) -> None:
    ids = await queue_to(engine, VOTE_REPLY, phones(30))
    async with dispatcher(engine, sending(database_url, gateway)) as d:
        done = await d.tick()
    assert (done.claimed, done.sent, done.requests) == (30, 30, 1)
    got = {m["number"]: m for m in await received(gateway)}
    assert Counter(m["number"] for m in await received(gateway)) == Counter(phones(30))
    for sent in await rows(engine, ids):
        assert sent["status"] == "sent" and sent["mobitex_id"] == got[sent["to_number"]]["id"]
        assert sent["sent_at"] == T0 and sent["claimed_by"] is None
    # A group carries no ext_id (Mobitex takes one a request): answers match on Mobitex's own Id.
    assert {m["ext_id"] for m in got.values()} == {None}


async def test_groups_hold_at_most_the_group_size_and_personalised_texts_go_one_a_request(
    engine: AsyncEngine, gateway: str, database_url: str
) -> None:
    await queue_to(engine, VOTE_REPLY, phones(7))
    personal = [await queue_to(engine, f"Twój kod: {i}", [n]) for i, n in enumerate(phones(3, 100))]
    async with dispatcher(engine, sending(database_url, gateway, send_group_size="3")) as d:
        done = await d.tick()
    assert (done.sent, done.requests) == (10, 3 + 3)  # 3 + 3 + 1 numbers, then three alone
    by_number = {m["number"]: m for m in await received(gateway)}
    for [outbox_id] in personal:
        alone = await row(engine, outbox_id)
        assert by_number[alone["to_number"]]["ext_id"] == alone["ext_id"]  # alone: with our ext_id


async def test_a_message_an_application_waits_an_answer_for_travels_alone_with_its_ext_id(
    engine: AsyncEngine, gateway: str, database_url: str
) -> None:
    tagged = await queue_to(engine, "Wizyta jutro. Odpisz TAK lub NIE.", phones(2), tag="visit")
    async with dispatcher(engine, sending(database_url, gateway)) as d:
        assert (await d.tick()).requests == 2
    ext_ids = {m["number"]: m["ext_id"] for m in await received(gateway)}
    assert ext_ids == {r["to_number"]: r["ext_id"] for r in await rows(engine, tagged)}


async def test_a_refused_number_in_a_group_fails_alone(
    engine: AsyncEngine, gateway: str, database_url: str
) -> None:
    ids = await queue_to(engine, VOTE_REPLY, [*phones(2), "12345", *phones(2, 2)])
    async with dispatcher(engine, sending(database_url, gateway)) as d:
        done = await d.tick()
    assert (done.sent, done.failed, done.requests) == (4, 1, 1)
    outcomes = {r["to_number"]: (r["status"], r["last_error"]) for r in await rows(engine, ids)}
    status, error = outcomes.pop("12345")
    assert status == "failed" and "status 106 (number wrong or missing)" in error
    assert set(outcomes.values()) == {("sent", None)}


async def test_a_transient_status_for_one_number_retries_only_that_number(
    engine: AsyncEngine, gateway: str, database_url: str
) -> None:
    clock = Clock()
    numbers = phones(4)
    ids = await queue_to(engine, VOTE_REPLY, numbers)
    await fail_next(gateway, status="201", number=numbers[2])
    async with dispatcher(engine, sending(database_url, gateway), clock) as d:
        first = await d.tick()
        waiting = await row(engine, ids[2])
        clock.now = waiting["next_attempt_at"]
        second = await d.tick()
    assert (first.sent, first.retried, second.claimed, second.sent) == (3, 1, 1, 1)
    assert waiting["status"] == "queued" and "status 201 (system error)" in waiting["last_error"]
    assert Counter(m["number"] for m in await received(gateway)) == Counter(numbers)
    assert {(r["status"], r["attempts"]) for r in await rows(engine, ids)} == {("sent", 1), ("sent", 2)}


async def test_a_phones_messages_keep_their_order_across_groups(
    engine: AsyncEngine, gateway: str, database_url: str
) -> None:
    one, other = phones(2)
    await queue_to(engine, "pierwsza", [one, other])
    await queue_to(engine, "druga", [one])
    await queue_to(engine, "pierwsza", [one])  # the same text again: not in the first group
    async with dispatcher(engine, sending(database_url, gateway)) as d:
        assert (await d.tick()).sent == 4
    texts = [m["text"] for m in await received(gateway) if m["number"] == one]
    assert texts == ["pierwsza", "druga", "pierwsza"]


# --- timeouts -----------------------------------------------------------------------------------


async def test_on_timeout_hold_is_never_sent_again_and_retry_is(
    engine: AsyncEngine, gateway: str, database_url: str
) -> None:
    clock = Clock()
    held_to, retried_to = phones(2)
    [held] = await queue_to(engine, VOTE_REPLY, [held_to], on_timeout="hold")
    [retried] = await queue_to(engine, VOTE_REPLY, [retried_to], on_timeout="retry")
    await fail_next(gateway, delay=1.5)  # the fake takes both, but answers after the timeout
    async with dispatcher(engine, sending(database_url, gateway), clock, gateway_timeout=0.3) as d:
        first = await d.tick()
        await received_when(gateway, 2)
        clock.advance(600)
        later = [await d.tick() for _ in range(3)]
    assert (first.requests, first.unknown, first.retried) == (1, 1, 1)
    assert [t.sent for t in later] == [1, 0, 0]
    unknown, sent = await row(engine, held), await row(engine, retried)
    assert (unknown["status"], unknown["claimed_by"], unknown["next_attempt_at"]) == ("unknown", None, None)
    assert "did not answer within 0.3 s" in unknown["last_error"] and "held" in unknown["last_error"]
    assert sent["status"] == "sent"
    # At most once under hold, at least once under retry: here the retried phone got it twice.
    assert Counter(m["number"] for m in await received(gateway)) == {held_to: 1, retried_to: 2}


async def test_without_a_policy_of_its_own_a_flow_reply_is_held_and_an_application_message_retried(
    engine: AsyncEngine, gateway: str, database_url: str
) -> None:
    reply_to, send_to = phones(2)
    [reply] = await queue_to(engine, VOTE_REPLY, [reply_to], inbound_id=1)
    [application] = await queue_to(engine, VOTE_REPLY, [send_to])
    await fail_next(gateway, delay=1.5)
    async with dispatcher(engine, sending(database_url, gateway), gateway_timeout=0.3) as d:
        done = await d.tick()
    assert (done.unknown, done.retried) == (1, 1)
    assert [(await row(engine, i))["status"] for i in (reply, application)] == ["unknown", "queued"]
    settings = sending(database_url, gateway, reply_on_timeout="retry", send_on_timeout="hold")
    [reply] = await queue_to(engine, "inna", [reply_to], inbound_id=2)
    [application] = await queue_to(engine, "inna", [send_to])
    await fail_next(gateway, delay=1.5)
    async with dispatcher(engine, settings, Clock(T0 - timedelta(hours=1)), gateway_timeout=0.3) as d:
        await d.tick()
    assert [(await row(engine, i))["status"] for i in (reply, application)] == ["queued", "unknown"]


async def test_an_operator_resends_or_fails_a_held_message_through_the_api(
    database_url: str, gateway: str
) -> None:
    async with running(sending(database_url, gateway, dispatcher="false")) as svc:
        engine = svc.engine
        first, second = await queue_to(engine, "x", phones(2), on_timeout="hold")
        async with engine.begin() as conn:
            await conn.execute(OUTBOX.update().values(status="unknown"))
        listed = (await svc.api.get("/api/outbox", params={"status": "unknown"})).json()["items"]
        resent = await svc.api.post(f"/api/outbox/{first}/resend")
        failed = await svc.api.post(f"/api/outbox/{second}/fail")
        again = await svc.api.post(f"/api/outbox/{first}/resend")
        missing = await svc.api.post("/api/outbox/999999/fail")
    assert sorted(i["id"] for i in listed) == [first, second]
    assert (resent.status_code, resent.json()["status"]) == (200, "queued")
    assert (failed.status_code, failed.json()["status"]) == (200, "failed")
    assert again.status_code == 409 and f"not held as unknown: {first} (queued)" in again.json()["detail"]
    assert missing.status_code == 404


def test_an_operator_lists_resends_and_fails_held_messages_from_the_command_line(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # away from any .env file

    async def prepare() -> list[int]:
        db = create_engine(make_settings(database_url))
        await upgrade(db)
        ids = await queue_to(db, "Dziękujemy!", phones(2), on_timeout="hold")
        async with db.begin() as conn:
            await conn.execute(OUTBOX.update().values(status="unknown", last_error="timeout"))
        await db.dispose()
        return ids

    async def statuses() -> dict[int, str]:
        db = create_engine(make_settings(database_url))
        async with db.connect() as conn:
            found = dict((await conn.execute(select(OUTBOX.c.id, OUTBOX.c.status))).all())
        await db.dispose()
        return found

    first, second = asyncio.run(prepare())
    env = {"SMSFLOWS_DATABASE_URL": database_url, "SMSFLOWS_FLOWS_DIR": str(tmp_path / "none")}
    runner = CliRunner()
    listed = runner.invoke(main, ["outbox", "unknown"], env=env)
    resent = runner.invoke(main, ["outbox", "resend", str(first)], env=env)
    failed = runner.invoke(main, ["outbox", "fail", str(second)], env=env)
    wrong = runner.invoke(main, ["outbox", "fail", str(first)], env=env)
    assert listed.exit_code == 0 and f"{first}\t{phones(1)[0]}" in listed.output
    assert "2 message(s) held as unknown" in listed.output
    assert resent.exit_code == 0 and "queued again" in resent.output
    assert failed.exit_code == 0 and "marked failed" in failed.output
    assert wrong.exit_code == 1 and "not held as unknown" in wrong.output and "Traceback" not in wrong.output
    assert asyncio.run(statuses()) == {first: "queued", second: "failed"}


# --- rate limits and leases ---------------------------------------------------------------------


async def test_a_group_counts_against_the_rate_limit_as_many_messages_as_it_has_numbers(
    engine: AsyncEngine, gateway: str, database_url: str
) -> None:
    await queue_to(engine, VOTE_REPLY, phones(300))
    mono = Monotonic()
    settings = sending(database_url, gateway, send_rate="100")
    # 32 slots claim up to 128 at once: the limit, not the claim, decides how many go.
    async with dispatcher(engine, settings, limits=SendLimits(100, 1000, clock=mono), concurrency=32) as d:
        sent = [(await d.tick()).sent, (await d.tick()).sent]
        mono.now += 1
        third = await d.tick()
        mono.now += 0.5
        fourth = await d.tick()
    assert sent == [100, 0] and (third.sent, third.requests) == (100, 1) and fourth.sent == 50
    assert len(await received(gateway)) == 250


async def test_a_dead_workers_group_is_sent_once_by_the_next_after_its_lease(
    engine: AsyncEngine, gateway: str, database_url: str
) -> None:
    numbers = phones(600)
    ids = await queue_to(engine, VOTE_REPLY, numbers)
    dead = await claim(engine, "dead-worker", T0, timedelta(seconds=1), limit=1000)
    assert len(dead) == 600
    clock = Clock()
    async with dispatcher(engine, sending(database_url, gateway), clock, concurrency=4) as d:
        assert (await d.tick()).claimed == 0
        clock.advance(1.5)
        total = await d.drain()
    # In groups: claims grow while they bring one text (16, 32, ... messages), up to 500 a request.
    assert total.sent == 600 and total.requests <= 7
    assert Counter(m["number"] for m in await received(gateway)) == Counter(numbers)
    assert {(r["status"], r["attempts"]) for r in await rows(engine, ids)} == {("sent", 2)}


async def test_one_stalled_request_does_not_hold_the_others(
    engine: AsyncEngine, gateway: str, database_url: str
) -> None:
    ids = [(await queue_to(engine, f"kod {i}", [n]))[0] for i, n in enumerate(phones(40))]
    await fail_next(gateway, hold=True)  # the first request to arrive stalls until released
    settings = sending(database_url, gateway, send_lease="600")  # no timeout while it is held
    async with dispatcher(engine, settings, concurrency=4, gateway_timeout=300) as d:
        draining = asyncio.create_task(d.drain())
        try:
            others = await received_when(gateway, 39)
            deadline = asyncio.get_running_loop().time() + 60
            while True:  # their results are written a moment after their answers
                stalled = [r for r in await rows(engine, ids) if r["status"] == "sending"]
                if len(stalled) <= 1 or asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.01)
        finally:
            async with httpx.AsyncClient(base_url=gateway) as http:
                released = (await http.post("/fake/release")).json()["released"]
        total = await draining
    assert released == 1 and len(others) == 39 and len(stalled) == 1  # the others went while it waited
    assert stalled[0]["to_number"] not in {m["number"] for m in others}
    assert total.sent == 40 and Counter(m["number"] for m in await received(gateway)) == Counter(phones(40))


async def test_fake_gateway_fails_one_numbers_line_only(gateway: str) -> None:
    first, second = phones(2)
    async with httpx.AsyncClient(base_url=gateway) as http:
        assert (await http.post("/fake/fail", json={"number": second, "delay": 1})).status_code == 400
        assert (await http.post("/fake/fail", json={"number": second, "status": "202"})).status_code == 201
        password = hashlib.md5(b"sekret", usedforsecurity=False).hexdigest()
        form = {"user": "konto", "pass": password, "type": "sms", "text": "x", "from": "SMSFLOWS"}
        answer = (await http.post("/sms.php", data=form | {"number": f"{first},{second}"})).text
        again = (await http.post("/sms.php", data=form | {"number": second})).text
    lines = answer.splitlines()
    assert lines[0].startswith("Status: 002, Id: ") and lines[0].endswith(f", Number: {first}")
    assert lines[1] == f"Status: 202, Id: , Number: {second}"
    assert again.startswith("Status: 002")
