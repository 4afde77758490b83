"""Replay: run stored messages through the flows as they are now, e.g. after fixing a flow that failed.

Replaying cannot count anything twice: the engine only takes messages still in the given statuses,
a message that succeeds leaves them, and the kinds' unique keys (one vote per message, ...) hold
even if two replays overlap. Batches commit one by one, so an interrupted replay keeps its progress.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import msgspec
from sqlalchemy import Connection, false, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.migrate import open_database
from app.db.models import InboundMessage
from app.db.outage import DEADLOCK_TRIES, is_retryable
from app.errors import InvalidRequest
from app.flows.engine import process_new
from app.flows.loader import FlowSet
from app.settings import Settings

# Processed messages are not replayable: their flows would answer them a second time.
REPLAYABLE = ("failed", "ignored", "received")
BATCH = 200


class ReplaySummary(msgspec.Struct, frozen=True, kw_only=True):
    statuses: list[str]
    flow: str | None
    dry_run: bool
    messages: int = 0
    outcomes: dict[str, int] = {}
    """New status → messages; ``skipped`` are messages that went to another flow than ``flow``."""
    failures: dict[str, str] = {}
    """sms_id → error, for messages that failed again."""


def replay_batch(
    conn: Connection, flows: FlowSet, statuses: Sequence[str], only_flow: str | None, after: int, limit: int
) -> tuple[dict[str, str], dict[str, str], int | None]:
    """The next ``limit`` messages after id ``after``: new statuses, errors, and the last id seen."""
    _write_lock_first(conn)
    rows = conn.execute(
        select(InboundMessage.id, InboundMessage.sms_id)
        .where(InboundMessage.status.in_(statuses), InboundMessage.id > after)
        .order_by(InboundMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)  # a concurrent replay takes other messages
    ).all()
    if not rows:
        return {}, {}, None
    new = process_new(conn, flows, [r.sms_id for r in rows], statuses=statuses, only_flow=only_flow)
    failed = [sms_id for sms_id, status in new.items() if status == "failed"]
    errors: dict[str, str] = {}
    if failed:
        found = conn.execute(
            select(InboundMessage.sms_id, InboundMessage.error).where(InboundMessage.sms_id.in_(failed))
        ).all()
        errors = {sms_id: error or "" for sms_id, error in found}
    return new, errors, rows[-1].id


async def run_replay(
    settings: Settings,
    flows: FlowSet,
    statuses: Sequence[str],
    only_flow: str | None = None,
    *,
    dry_run: bool = False,
    batch: int = BATCH,
) -> ReplaySummary:
    """Replay every message in ``statuses``, a batch per transaction (see :func:`replay`)."""
    async with open_database(settings) as engine:
        return await replay(engine, flows, statuses, only_flow, dry_run=dry_run, batch=batch)


async def replay(
    engine: AsyncEngine,
    flows: FlowSet,
    statuses: Sequence[str],
    only_flow: str | None = None,
    *,
    dry_run: bool = False,
    batch: int = BATCH,
) -> ReplaySummary:
    """Replay every message in ``statuses`` on ``engine``, a batch per transaction.

    A dry run does the same work and rolls each batch back, so decisions in one batch do not see
    those of earlier batches (a phone's second vote 200 messages later would look like a first).
    """
    if refused := sorted(set(statuses) - set(REPLAYABLE)):
        raise InvalidRequest(
            f"cannot replay {', '.join(refused)} messages; replayable: {', '.join(REPLAYABLE)}"
        )
    outcomes: Counter[str] = Counter()
    failures: dict[str, str] = {}
    after: int | None = 0
    async with engine.connect() as conn:
        tries = 0
        while after is not None:
            # Short transactions: on SQLite a long one would hold up the webhook's writes.
            try:
                async with conn.begin() as tx:
                    new, errors, last = await conn.run_sync(
                        replay_batch, flows, statuses, only_flow, after, batch
                    )
                    if dry_run:
                        await tx.rollback()
            except DBAPIError as exc:
                # The webhook's writer, running beside the replay, met it on a row (a contact, a
                # code): the database rolled this batch back whole, so it is run again.
                tries += 1
                if not is_retryable(exc) or tries >= DEADLOCK_TRIES:
                    raise
                continue
            tries = 0
            after = last
            outcomes.update(new.values())
            failures.update(errors)
    return ReplaySummary(
        statuses=list(statuses),
        flow=only_flow,
        dry_run=dry_run,
        messages=sum(outcomes.values()),
        outcomes=dict(sorted(outcomes.items())),
        failures=failures,
    )


def replay_message(conn: Connection, flows: FlowSet, sms_id: str) -> str | None:
    """Replay one message if it is replayable: its new status, or None when it is not."""
    _write_lock_first(conn)
    return process_new(conn, flows, [sms_id], statuses=REPLAYABLE).get(sms_id)


def _write_lock_first(conn: Connection) -> None:
    if conn.dialect.name == "sqlite":
        # Take the write lock before reading: on WAL, a read snapshot that the webhook's writer
        # commits past cannot become a write ("database is locked"), while a waiting lock can.
        conn.execute(update(InboundMessage).where(false()).values(status=InboundMessage.status))
