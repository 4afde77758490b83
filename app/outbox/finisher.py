"""Finishing many claims at once: the outcomes of concurrent requests in one transaction.

Like :func:`~app.outbox.claims.finish`, a row is only touched while the same claim (worker and
attempt number) still holds it. Every outcome that shares its values (all ``sent``, say, each with
its own Mobitex Id) goes in one ``UPDATE ... FROM <rows>`` statement.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import (
    BigInteger,
    FromClause,
    Integer,
    String,
    bindparam,
    column,
    func,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.db.models import UTCDateTime
from app.outbox.claims import UNDO_ATTEMPT, Claim
from app.outbox.table import OUTBOX


class Finisher:
    """Finishes a worker's claims as their outcomes arrive, all that are waiting in one transaction.

    A commit costs about as much for one row as for fifty, and concurrent requests land a few
    milliseconds apart: so a write waits up to ``linger`` seconds for more outcomes, or until
    ``batch`` are waiting, and while one commit is in flight the outcomes that arrive meanwhile
    gather for the next. Outcomes with the same values (the status and what goes with it) share
    one statement, each row keeping its own Mobitex Id and send time: one commit and one statement
    for a group of 500 sent messages. When a transaction fails, each of its outcomes is tried in
    one of its own, so that a bad one costs the others nothing.
    """

    def __init__(self, engine: AsyncEngine, worker: str, *, linger: float = 0.0, batch: int = 1) -> None:
        self._engine, self._worker = engine, worker
        self._linger, self._batch = linger, batch
        self._waiting: list[_Outcome] = []
        self._full = asyncio.Event()
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
        if len(self._waiting) >= self._batch:
            self._full.set()
        if self._task is None:
            self._task = asyncio.create_task(self._write())
        if len(outcomes) == 1:  # a personalised send: one future, no gathering
            return [await outcomes[0].done]
        return list(await asyncio.gather(*(o.done for o in outcomes)))

    async def release(self, held: Claim, until: datetime | None) -> bool:
        """Hand a message back unsent, due again at ``until``; the attempt it was claimed for is undone."""
        return await self.finish(held, status="queued", attempts=UNDO_ATTEMPT, next_attempt_at=until)

    async def _write(self) -> None:
        group: list[_Outcome] = []
        try:
            while self._waiting:
                if self._linger and len(self._waiting) < self._batch:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._linger):
                            await self._full.wait()
                self._full.clear()
                group, self._waiting = self._waiting, []
                try:
                    found = await self._commit(group)
                except Exception as exc:
                    if len(group) == 1:
                        _settle(group, exc=exc)
                        continue
                    # Which outcome failed is unknown: each gets a transaction of its own.
                    for outcome in group:
                        try:
                            _settle([outcome], found=await self._commit([outcome]))
                        except Exception as alone:
                            _settle([outcome], exc=alone)
                    continue
                _settle(group, found=found)
        except asyncio.CancelledError:
            for outcome in group + self._waiting:
                outcome.done.cancel()
            self._waiting = []
            raise
        finally:
            self._task = None

    async def _commit(self, group: list[_Outcome]) -> set[int]:
        """Write ``group`` in one transaction; the ids of the rows still held by their claims."""
        by_values: dict[tuple[tuple[str, Any], ...], list[_Outcome]] = {}
        for outcome in group:
            by_values.setdefault(outcome.values, []).append(outcome)
        found: set[int] = set()
        async with self._engine.begin() as conn:
            for key, outcomes in by_values.items():
                found |= await _finish_rows(conn, self._worker, outcomes, dict(key))
        return found


def _settle(group: list[_Outcome], *, found: set[int] | None = None, exc: Exception | None = None) -> None:
    for outcome in group:
        if outcome.done.done():  # given up on by a cancelled caller
            continue
        if exc is not None:
            outcome.done.set_exception(exc)
        else:
            outcome.done.set_result(found is not None and outcome.held.id in found)


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
    given, params = _rows(conn.dialect, rows)
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
    return set((await conn.execute(stmt, params)).scalars())


_GIVEN = (("id", BigInteger()), ("attempts", Integer()), ("mobitex_id", String()), ("sent_at", UTCDateTime()))


def _rows(
    dialect: Dialect, rows: list[tuple[int, int, str | None, datetime | None]]
) -> tuple[FromClause, dict[str, list[Any]]]:
    """The per-row values as a table ``(id, attempts, mobitex_id, sent_at)`` to join the update to,
    and the parameters that carry them."""
    if dialect.name == "postgresql":
        # One array a column, whatever the number of rows: the statement compiles once and is
        # cached, where a VALUES list would be compiled anew for each batch (4 parameters a row).
        arrays = [bindparam(f"given_{name}", type_=ARRAY(type_)) for name, type_ in _GIVEN]
        given = func.unnest(*arrays).table_valued(*(column(n, t) for n, t in _GIVEN)).render_derived("given")
        columns = [[row[i] for row in rows] for i in range(len(_GIVEN))]
        params = {f"given_{name}": values for (name, _), values in zip(_GIVEN, columns, strict=True)}
        return given, params
    # SQLite has no column list for an aliased VALUES: the rows travel as one JSON parameter.
    to_text = UTCDateTime().bind_processor(dialect)
    assert to_text is not None
    each = func.json_each(msgspec.json.encode([(*r[:3], to_text(r[3])) for r in rows]).decode())
    table = each.table_valued("value")
    names = ("id", "attempts", "mobitex_id", "sent_at")
    fields = (func.json_extract(table.c.value, f"$[{i}]").label(n) for i, n in enumerate(names))
    return select(*fields).select_from(table).subquery("given"), {}
