"""Recording the results of concurrent sends together: all recorded, one commit, nothing lost or resent.

On SQLite and PostgreSQL; the finisher's own tests claim rows by hand, the last one drives the
dispatcher against the fake Mobitex over real HTTP.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.models import OutboxMessage
from app.mobitex.fake_gateway import fake_gateway_running
from app.outbox.claims import Claim, claim
from app.outbox.dispatcher import Dispatcher
from app.outbox.finisher import Finisher
from app.outbox.table import outbox_row
from tests.test_dispatcher import CONFIG, fail_next, received, sending

WORKER = "host:1:abc"
LEASE = timedelta(seconds=60)


@pytest.fixture
async def gateway() -> AsyncIterator[str]:
    async with fake_gateway_running(CONFIG) as url:
        yield url


async def claimed(engine: AsyncEngine, count: int) -> list[Claim]:
    now = datetime.now(UTC)
    rows = [
        outbox_row(to=f"48600{i:06d}", text=f"Numer {i}", from_number="70120", flow=None,
                   inbound_id=None, now=now)
        for i in range(count)
    ]  # fmt: skip
    async with engine.begin() as conn:
        await conn.execute(insert(OutboxMessage), rows)
    return await claim(engine, WORKER, now, LEASE, count)


async def stored(engine: AsyncEngine) -> dict[int, dict[str, Any]]:
    o = OutboxMessage
    query = select(o.id, o.status, o.mobitex_id, o.claimed_by, o.sent_at, o.attempts)
    async with engine.connect() as conn:
        return {r.id: dict(r._mapping) for r in await conn.execute(query)}


def commits_of(engine: AsyncEngine) -> list[int]:
    """A list that grows by one at each commit on ``engine``."""
    seen: list[int] = []
    event.listen(engine.sync_engine, "commit", lambda _conn: seen.append(1))
    return seen


def mobitex_id(held: Claim) -> str:
    return f"{held.id:032x}"


async def test_results_arriving_apart_are_all_recorded_in_one_commit(engine: AsyncEngine) -> None:
    helds = await claimed(engine, 40)
    commits = commits_of(engine)
    # Held back as long as it takes: only the fortieth result lets the write go.
    finisher = Finisher(engine, WORKER, linger=3600, batch=40)
    sent_at = datetime.now(UTC)

    async def send_then_finish(held: Claim) -> bool:
        await asyncio.sleep(0)  # the answers land one event-loop turn apart, not all at once
        return await finisher.finish(held, mobitex_id=mobitex_id(held), sent_at=sent_at, status="sent")

    async def each_a_turn_apart() -> list[bool]:
        tasks = []
        for held in helds:
            tasks.append(asyncio.create_task(send_then_finish(held)))
            await asyncio.sleep(0)
        return list(await asyncio.gather(*tasks))

    assert await asyncio.wait_for(each_a_turn_apart(), 60) == [True] * 40
    assert len(commits) == 1
    rows = await stored(engine)
    assert {h.id: rows[h.id]["mobitex_id"] for h in helds} == {h.id: mobitex_id(h) for h in helds}
    assert {(r["status"], r["claimed_by"], r["attempts"]) for r in rows.values()} == {("sent", None, 1)}


async def test_a_result_that_cannot_be_written_costs_the_others_nothing(engine: AsyncEngine) -> None:
    helds = await claimed(engine, 10)
    finisher = Finisher(engine, WORKER, linger=3600, batch=10)
    bad = helds[3]

    async def finish(held: Claim) -> bool:
        if held is bad:  # a status the table refuses: the transaction of the whole batch fails
            return await finisher.finish(held, status=None)
        return await finisher.finish(held, mobitex_id=mobitex_id(held), status="sent")

    outcomes = await asyncio.gather(*(finish(h) for h in helds), return_exceptions=True)
    assert isinstance(outcomes[3], IntegrityError)
    assert outcomes[:3] + outcomes[4:] == [True] * 9
    rows = await stored(engine)
    assert rows[bad.id]["status"] == "sending" and rows[bad.id]["claimed_by"] == WORKER
    assert {rows[h.id]["status"] for h in helds if h is not bad} == {"sent"}


async def test_a_caller_that_gives_up_does_not_cost_the_others_their_results(engine: AsyncEngine) -> None:
    helds = await claimed(engine, 6)
    finisher = Finisher(engine, WORKER, linger=3600, batch=6)
    tasks = [asyncio.create_task(finisher.finish(h, mobitex_id=mobitex_id(h), status="sent")) for h in helds]
    await asyncio.sleep(0)  # all six are waiting
    tasks[0].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError) and results[1:] == [True] * 5
    rows = await stored(engine)
    assert {rows[h.id]["status"] for h in helds[1:]} == {"sent"}


async def test_a_claim_lost_to_another_worker_is_not_overwritten_and_the_rest_are_recorded(
    engine: AsyncEngine,
) -> None:
    helds = await claimed(engine, 5)
    async with engine.begin() as conn:  # the lease of one ran out and another worker took it
        await conn.execute(
            OutboxMessage.__table__.update()
            .where(OutboxMessage.id == helds[2].id)
            .values(claimed_by="other:2:def", attempts=2)
        )
    finisher = Finisher(engine, WORKER, linger=3600, batch=5)
    found = await finisher.finish_many(helds, [mobitex_id(h) for h in helds], status="sent")
    assert found == [True, True, False, True, True]
    rows = await stored(engine)
    assert (rows[helds[2].id]["status"], rows[helds[2].id]["claimed_by"]) == ("sending", "other:2:def")


async def test_concurrent_personalised_sends_are_each_sent_once_and_recorded_around_a_failing_one(
    database_url: str, engine: AsyncEngine, gateway: str
) -> None:
    settings = sending(database_url, gateway)
    now = datetime.now(UTC)
    rows = [
        outbox_row(to=f"48600{i:06d}", text=f"Numer {i}", from_number="70120", flow=None,
                   inbound_id=None, now=now)
        for i in range(200)
    ]  # fmt: skip
    async with engine.begin() as conn:
        await conn.execute(insert(OutboxMessage), rows)
    await fail_next(gateway, http_status=503)  # one request among the concurrent ones fails for now
    dispatcher = Dispatcher(engine, settings, concurrency=32)
    try:
        total = await dispatcher.drain()
    finally:
        await dispatcher.stop()
    assert (total.sent, total.retried, total.lost) == (199, 1, 0)
    per_number = Counter(m["number"] for m in await received(gateway))
    assert len(per_number) == 199 and set(per_number.values()) == {1}
    ids = {m["number"]: m["id"] for m in await received(gateway)}
    o = OutboxMessage
    async with engine.connect() as conn:
        found = (await conn.execute(select(o.to_number, o.status, o.mobitex_id, o.claimed_by))).all()
    assert {r.to_number: r.mobitex_id for r in found if r.status == "sent"} == ids
    assert Counter(r.status for r in found) == {"sent": 199, "queued": 1}
    assert {r.claimed_by for r in found} == {None}
