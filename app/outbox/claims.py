"""Claiming outbox messages for sending, under a lease, so that no two workers send the same one.

A claim turns due rows (``sending`` with an expired lease: their worker died; then ``queued`` and
due) into ``sending``, owned by one worker until ``claimed_until``, and counts the attempt; all in
one short transaction:

- PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED LIMIT n`` then ``UPDATE``. Workers on any number
  of machines each lock different rows and never wait for one another.
- SQLite: a conditional ``UPDATE ... WHERE id IN (SELECT ... LIMIT n) AND <still due> RETURNING``.
  SQLite runs it under its single write lock, so a second process sees the rows already taken
  and claims others; within a process the dispatcher is the only claimer.

Finishing a claim (:func:`finish`, :class:`Finisher`) only touches a row still held by the same
claim (worker and attempt number): a worker that outlived its lease cannot overwrite what the next
one recorded. The finisher writes every outcome that shares its values (all ``sent``, say, each
with its own Mobitex Id) in one ``UPDATE ... FROM <rows>`` statement.

Lease times come from each worker's own clock: machines sharing one PostgreSQL must keep their
clocks in sync (NTP); a skew of a few seconds is harmless next to the 60-second default lease.
"""

from __future__ import annotations

import os
import secrets
import socket
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import (
    ColumnElement,
    Row,
    Update,
    and_,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from app.outbox.table import OUTBOX


class Claim(msgspec.Struct, frozen=True):
    """One message a worker holds until ``claimed_until``: what it needs to send it."""

    id: int
    ext_id: str
    to_number: str
    from_number: str | None
    text: str
    attempts: int
    """Counting this one."""
    created_at: datetime
    claimed_until: datetime
    inbound_id: int | None = None
    """Set for a flow's reply to an MO; None for messages applications send."""
    tag: str | None = None
    """Set when an application waits for the answer: the message then travels alone, with its ext_id."""
    on_timeout: str | None = None
    """``retry`` or ``hold`` as queued; None leaves it to the settings."""


def worker_name() -> str:
    """``host:pid:random``: who holds a claim, readable in the outbox and unique per dispatcher."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"


def _due(now: datetime) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    """What makes a row claimable: its worker died mid-send, or it is queued and due.

    Two conditions, looked up one after the other: each is an equality on ``status`` that walks
    the (status, id) index, where one condition with OR would read past every sent message.
    """
    c = OUTBOX.c
    return (
        and_(c.status == "sending", c.claimed_until < now),
        and_(c.status == "queued", or_(c.next_attempt_at.is_(None), c.next_attempt_at <= now)),
    )


_RETURNED = (
    OUTBOX.c.id,
    OUTBOX.c.ext_id,
    OUTBOX.c.to_number,
    OUTBOX.c.from_number,
    OUTBOX.c.text,
    OUTBOX.c.attempts,
    OUTBOX.c.created_at,
    OUTBOX.c.claimed_until,
    OUTBOX.c.inbound_id,
    OUTBOX.c.tag,
    OUTBOX.c.on_timeout,
)


async def claim(engine: AsyncEngine, worker: str, now: datetime, lease: timedelta, limit: int) -> list[Claim]:
    """Claim up to ``limit`` due messages, oldest first, for ``worker`` until ``now + lease``."""
    if limit < 1:
        return []
    taken = {
        "status": "sending",
        "claimed_by": worker,
        "claimed_until": now + lease,
        "attempts": OUTBOX.c.attempts + 1,
    }
    rows: list[Row[Any]] = []
    async with engine.begin() as conn:
        for due in _due(now):
            pick = select(OUTBOX.c.id).where(due).order_by(OUTBOX.c.id).limit(limit - len(rows))
            if conn.dialect.name == "postgresql":
                ids = list((await conn.execute(pick.with_for_update(skip_locked=True))).scalars())
                if not ids:
                    continue
                stmt = update(OUTBOX).where(OUTBOX.c.id.in_(ids))
            else:
                # The outer condition repeats the inner one: the row must still be due as it is taken.
                stmt = update(OUTBOX).where(OUTBOX.c.id.in_(pick.scalar_subquery()), due)
            rows += (await conn.execute(stmt.values(taken).returning(*_RETURNED))).all()
            if len(rows) >= limit:
                break
    claims = [Claim(**row._asdict()) for row in rows]
    claims.sort(key=lambda c: c.id)  # RETURNING promises no order; sends go oldest first
    return claims


def _finished(held: Claim, worker: str, values: dict[str, Any]) -> Update:
    c = OUTBOX.c
    return (
        update(OUTBOX)
        .where(c.id == held.id, c.status == "sending", c.claimed_by == worker, c.attempts == held.attempts)
        .values(claimed_by=None, claimed_until=None, **values)
    )


async def finish(engine: AsyncEngine, held: Claim, worker: str, **values: Any) -> bool:
    """End ``worker``'s claim on a message with ``values`` (its new status...); False if it was lost.

    Lost means the lease ran out and another worker claimed the message since: that worker now
    owns the outcome.
    """
    async with engine.begin() as conn:
        return (await conn.execute(_finished(held, worker, values))).rowcount == 1


UNDO_ATTEMPT = OUTBOX.c.attempts - 1
"""The ``attempts`` of a message handed back unsent: the attempt it was claimed for did not happen."""


async def next_due(engine: AsyncEngine) -> datetime | None:
    """When the next queued message is due (a past time when one is due now), or None if none is queued."""
    c = OUTBOX.c
    query = select(func.min(func.coalesce(c.next_attempt_at, c.created_at))).where(c.status == "queued")
    async with engine.connect() as conn:
        due: datetime | None = (await conn.execute(query)).scalar()
    return due
