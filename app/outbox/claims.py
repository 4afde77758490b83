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

import asyncio
import os
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    FromClause,
    Integer,
    Row,
    String,
    Update,
    and_,
    column,
    func,
    literal_column,
    or_,
    select,
    update,
    values,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.db.models import UTCDateTime
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


class Finisher:
    """Finishes a worker's claims as their outcomes arrive, all that are waiting in one transaction.

    Each outcome is written at the next commit, never held back for others; while one commit is
    in flight the outcomes that arrive meanwhile gather for the next. Outcomes with the same
    values (the status and what goes with it) share one statement, each row keeping its own
    Mobitex Id and send time: one commit and one statement for a group of 500 sent messages.
    """

    def __init__(self, engine: AsyncEngine, worker: str) -> None:
        self._engine, self._worker = engine, worker
        self._waiting: list[_Outcome] = []
        self._task: asyncio.Task[None] | None = None

    async def finish(
        self, held: Claim, *, mobitex_id: str | None = None, sent_at: datetime | None = None, **values: Any
    ) -> bool:
        """Like :func:`finish`; a database error of the group is raised to each of its callers."""
        [ok] = await self.finish_many([held], [mobitex_id], sent_at, **values)
        return ok

    async def finish_many(
        self,
        helds: Sequence[Claim],
        mobitex_ids: Sequence[str | None] | None = None,
        sent_at: datetime | None = None,
        **values: Any,
    ) -> list[bool]:
        """Finish several claims with the same ``values``; one bool per claim (False: it was lost)."""
        loop = asyncio.get_running_loop()
        key = tuple(sorted(values.items(), key=lambda kv: kv[0]))
        ids = mobitex_ids or [None] * len(helds)
        pairs = zip(helds, ids, strict=True)
        outcomes = [_Outcome(h, key, m, sent_at, loop.create_future()) for h, m in pairs]
        self._waiting += outcomes
        if self._task is None:
            self._task = asyncio.create_task(self._write())
        return list(await asyncio.gather(*(o.done for o in outcomes)))

    async def release(self, held: Claim, until: datetime | None) -> bool:
        """Hand a message back unsent, due again at ``until``; the attempt it was claimed for is undone."""
        return await self.finish(held, status="queued", attempts=UNDO_ATTEMPT, next_attempt_at=until)

    async def _write(self) -> None:
        group: list[_Outcome] = []
        try:
            while self._waiting:
                group, self._waiting = self._waiting, []
                by_values: dict[tuple[tuple[str, Any], ...], list[_Outcome]] = {}
                for outcome in group:
                    by_values.setdefault(outcome.values, []).append(outcome)
                try:
                    found: set[int] = set()
                    async with self._engine.begin() as conn:
                        for key, outcomes in by_values.items():
                            found |= await _finish_rows(conn, self._worker, outcomes, dict(key))
                except Exception as exc:
                    for outcome in group:
                        if not outcome.done.done():  # not given up on by a cancelled caller
                            outcome.done.set_exception(exc)
                    continue
                for outcome in group:
                    if not outcome.done.done():
                        outcome.done.set_result(outcome.held.id in found)
        except asyncio.CancelledError:
            for outcome in group + self._waiting:
                outcome.done.cancel()
            self._waiting = []
            raise
        finally:
            self._task = None


@dataclass(slots=True)
class _Outcome:
    held: Claim
    values: tuple[tuple[str, Any], ...]
    mobitex_id: str | None
    sent_at: datetime | None
    done: asyncio.Future[bool]


async def _finish_rows(
    conn: AsyncConnection, worker: str, outcomes: list[_Outcome], common: dict[str, Any]
) -> set[int]:
    """One UPDATE for all ``outcomes``; the ids of the rows still held by their claims."""
    rows = [(o.held.id, o.held.attempts, o.mobitex_id, o.sent_at) for o in outcomes]
    given = _rows(conn.dialect, rows)
    c = OUTBOX.c
    # On SQLite a unary + keeps the planner off the status index: it walks the given rows and
    # finds each by its primary key, instead of scanning every row being sent for each of them.
    status = literal_column("+outbox.status") if conn.dialect.name == "sqlite" else c.status
    held = (c.id == given.c.id, c.attempts == given.c.attempts, status == "sending", c.claimed_by == worker)
    stmt = update(OUTBOX).where(*held).values(claimed_by=None, claimed_until=None, **common).returning(c.id)
    if any(o.mobitex_id for o in outcomes):
        stmt = stmt.values(mobitex_id=given.c.mobitex_id)
    if any(o.sent_at for o in outcomes):
        stmt = stmt.values(sent_at=given.c.sent_at)
    return set((await conn.execute(stmt)).scalars())


def _rows(dialect: Dialect, rows: list[tuple[int, int, str | None, datetime | None]]) -> FromClause:
    """The per-row values as a table ``(id, attempts, mobitex_id, sent_at)`` to join the update to."""
    if dialect.name == "postgresql":
        columns = (
            column("id", BigInteger),
            column("attempts", Integer),
            column("mobitex_id", String),
            column("sent_at", UTCDateTime),
        )
        return values(*columns, name="given").data(rows)
    # SQLite has no column list for an aliased VALUES: the rows travel as one JSON parameter.
    to_text = UTCDateTime().bind_processor(dialect)
    assert to_text is not None
    each = func.json_each(msgspec.json.encode([(*r[:3], to_text(r[3])) for r in rows]).decode())
    table = each.table_valued("value")
    names = ("id", "attempts", "mobitex_id", "sent_at")
    fields = (func.json_extract(table.c.value, f"$[{i}]").label(n) for i, n in enumerate(names))
    return select(*fields).select_from(table).subquery("given")


async def next_due(engine: AsyncEngine) -> datetime | None:
    """When the next queued message is due (a past time when one is due now), or None if none is queued."""
    c = OUTBOX.c
    query = select(func.min(func.coalesce(c.next_attempt_at, c.created_at))).where(c.status == "queued")
    async with engine.connect() as conn:
        due: datetime | None = (await conn.execute(query)).scalar()
    return due
