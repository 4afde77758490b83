"""``app.reads.queues``: what waits in the outbox and what needs a person."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import update

from app.db.models import OutboxMessage, utcnow
from app.reads.queues import QueueCounts, queue_counts
from tests.conftest import Service, send_mo


async def counts(service: Service) -> QueueCounts:
    now = utcnow()
    async with service.engine.connect() as conn:
        return await conn.run_sync(queue_counts, now)


async def test_an_empty_database_counts_zero_in_every_status(service: Service) -> None:
    found = await counts(service)
    assert found.outbox == {"queued": 0, "sending": 0, "sent": 0, "failed": 0, "dry-run": 0, "unknown": 0}
    assert found.quarantine == {"held": 0, "reingested": 0, "discarded": 0}
    assert (found.due, found.oldest_queued_at, found.failures) == (0, None, 0)


async def test_queued_held_and_ignored_messages_are_counted(service: Service) -> None:
    for text in ("one", "two"):
        response = await service.api.post("/api/messages", json={"to": "48600123456", "text": text})
        assert response.status_code == 201, response.text
    later = update(OutboxMessage).where(OutboxMessage.text == "two")
    async with service.engine.begin() as conn:  # one of them waits for its next attempt
        await conn.execute(later.values(next_attempt_at=utcnow() + timedelta(hours=1)))
    await send_mo(service, text="nobody takes this")
    async with httpx.AsyncClient() as client:
        held = await client.post(service.mo_url, data={"sender": "x"})
    assert held.text.strip() == "OK quarantined"
    found = await counts(service)
    assert found.outbox["queued"] == 2 and found.due == 1 and found.oldest_queued_at is not None
    assert found.inbound["ignored"] == 1 and found.quarantine["held"] == 1 and found.failures == 1


async def test_capped_counts_are_exact_up_to_the_cap_and_say_more_beyond(service: Service) -> None:
    for text in ("one", "two", "three", "four", "five"):
        response = await service.api.post("/api/messages", json={"to": "48600123456", "text": text})
        assert response.status_code == 201, response.text
    async with service.engine.begin() as conn:
        await conn.execute(update(OutboxMessage).where(OutboxMessage.text == "five").values(status="failed"))
    now = utcnow()
    async with service.engine.connect() as conn:
        capped = await conn.run_sync(lambda c: queue_counts(c, now, cap=2))
        exact = await conn.run_sync(lambda c: queue_counts(c, now))
    assert exact.outbox["queued"] == 4 and exact.due == 4 and exact.cap is None
    assert capped.outbox["queued"] == 3 and capped.due == 3 and capped.cap == 2  # 3: "more than 2"
    assert capped.outbox["failed"] == exact.outbox["failed"] == 1 and capped.outbox["sent"] == 0
    assert capped.oldest_queued_at == exact.oldest_queued_at is not None
