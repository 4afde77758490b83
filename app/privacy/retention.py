"""Retention: raw request bodies, the quarantine and message texts older than a configured age
are purged; results, entries and the event log's decisions stay. Reply allowances whose interval
is over (a phone number kept for nothing) go at every purge, whatever the ages.

Purging goes in small batches, each its own transaction, so a large first purge never holds
the database's write lock long enough to delay the MO path. Messages that may still be needed
keep their text: a failed or unprocessed message (it can be replayed) and a message not yet sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

import msgspec
from sqlalchemy import Connection, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.models import InboundMessage, OutboxMessage, QuarantinedRequest, SendBackAction, utcnow
from app.flows import reply_limits
from app.privacy.forget import ERASED_PAYLOAD
from app.settings import Settings

log = logging.getLogger("smsflows.retention")
BATCH = 2000


class Purged(msgspec.Struct, frozen=True):
    raw_bodies: int = 0
    quarantine: int = 0
    inbound_texts: int = 0
    outbox_texts: int = 0
    send_back_payloads: int = 0
    reply_allowances: int = 0

    def summary(self) -> str:
        return (
            f"{self.raw_bodies} raw body(ies), {self.quarantine} quarantined request(s), "
            f"{self.inbound_texts} message text(s), {self.outbox_texts} sent text(s), "
            f"{self.send_back_payloads} send-back payload(s), "
            f"{self.reply_allowances} expired reply allowance(s) purged"
        )


def _raw_bodies(conn: Connection, before: datetime) -> int:
    ids = select(InboundMessage.id).where(
        InboundMessage.received_at < before, func.length(InboundMessage.raw_body) > 0
    )
    batch = list(conn.scalars(ids.limit(BATCH)))
    if batch:
        conn.execute(update(InboundMessage).where(InboundMessage.id.in_(batch)).values(raw_body=b""))
    return len(batch)


def _quarantine(conn: Connection, before: datetime) -> int:
    batch = list(
        conn.scalars(
            select(QuarantinedRequest.id).where(QuarantinedRequest.received_at < before).limit(BATCH)
        )
    )
    if batch:
        conn.execute(delete(QuarantinedRequest).where(QuarantinedRequest.id.in_(batch)))
    return len(batch)


def _inbound_texts(conn: Connection, before: datetime) -> int:
    ids = select(InboundMessage.id).where(
        InboundMessage.received_at < before,
        InboundMessage.status.in_(("processed", "ignored")),
        InboundMessage.text != "",
    )
    batch = list(conn.scalars(ids.limit(BATCH)))
    if batch:
        conn.execute(update(InboundMessage).where(InboundMessage.id.in_(batch)).values(text=""))
    return len(batch)


def _outbox_texts(conn: Connection, before: datetime) -> int:
    ids = select(OutboxMessage.id).where(
        OutboxMessage.created_at < before,
        OutboxMessage.status.in_(("sent", "failed", "dry-run")),
        OutboxMessage.text != "",
    )
    batch = list(conn.scalars(ids.limit(BATCH)))
    if batch:
        conn.execute(update(OutboxMessage).where(OutboxMessage.id.in_(batch)).values(text="", data=None))
    return len(batch)


def _payloads(conn: Connection, before: datetime) -> int:
    ids = select(SendBackAction.id).where(
        SendBackAction.created_at < before,
        SendBackAction.status.in_(("delivered", "failed")),
        SendBackAction.payload != ERASED_PAYLOAD,
    )
    batch = list(conn.scalars(ids.limit(BATCH)))
    if batch:
        conn.execute(
            update(SendBackAction).where(SendBackAction.id.in_(batch)).values(payload=ERASED_PAYLOAD)
        )
    return len(batch)


async def purge(
    engine: AsyncEngine, settings: Settings, now: datetime | None = None, *, by_age: bool = True
) -> Purged:
    """Purge what is older than SMSFLOWS_RETENTION_RAW_DAYS and SMSFLOWS_RETENTION_TEXT_DAYS (unless
    ``by_age`` is false), and the expired reply allowances."""
    now = now or utcnow()
    counts: dict[str, int] = {}
    steps: list[tuple[str, Callable[[Connection, datetime], int], datetime]] = [
        ("reply_allowances", functools.partial(reply_limits.prune, most=BATCH), now)
    ]
    if by_age and settings.retention_raw_days is not None:
        raw_before = now - timedelta(days=settings.retention_raw_days)
        steps += [("raw_bodies", _raw_bodies, raw_before), ("quarantine", _quarantine, raw_before)]
    if by_age and settings.retention_text_days is not None:
        text_before = now - timedelta(days=settings.retention_text_days)
        steps += [
            ("inbound_texts", _inbound_texts, text_before),
            ("outbox_texts", _outbox_texts, text_before),
            ("send_back_payloads", _payloads, text_before),
        ]
    for name, step, before in steps:
        while True:
            async with engine.begin() as conn:
                done = await conn.run_sync(step, before)
            counts[name] = counts.get(name, 0) + done
            if done < BATCH:
                break
    return Purged(**counts)


class ScheduledPurge:
    """The service's own purge, every SMSFLOWS_RETENTION_PURGE_HOURS hours (first one at start).

    Without that setting it still runs hourly, for the expired reply allowances alone.
    """

    def __init__(self, engine: AsyncEngine, settings: Settings) -> None:
        self.engine, self.settings = engine, settings
        self.by_age = bool(settings.retention_purge_hours)
        self.hours = settings.retention_purge_hours or 1
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="retention purge")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def _run(self) -> None:
        while True:
            try:
                purged = await purge(self.engine, self.settings, by_age=self.by_age)
                if self.by_age:
                    log.info("retention: %s", purged.summary())
            except Exception:  # a failed purge must not stop the service; the next one retries
                log.exception("retention purge failed; it runs again in %d hour(s)", self.hours)
            await asyncio.sleep(self.hours * 3600)
