"""Replies that cost without telling anything new: one per phone and flow in a quiet interval, and
a cap per phone per day across all flows.

A phone that repeats a keyword would otherwise get one paid SMS per message. Replies to a repeat,
an invalid or unknown answer, a closed flow and a fallback's reply carry no news: each flow sends a
phone at most one of them per ``quiet_minutes`` (a survey's retry is its question again, and
stays bounded by its ``max_retries``). Every reply (but those owed) also counts against
``SMSFLOWS_REPLIES_PER_DAY`` for its phone. Owed replies are never held back: the confirmation of
an accepted vote or code, the answer to STOP and START, and every reply of a flow with
``answer_every_message`` (premium-rate numbers). A held-back reply is recorded as the event
``suppressed``, with what it would have been; a decision that changed something (a join, a
completed survey) keeps its outcome, with ``suppressed`` and the reason in its detail.

Both limits are taken with one atomic upsert each per batch in the writer's transaction: the
database row decides, so two writers (``--workers N``) cannot both let the same reply through.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, time, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Connection, Table, case, delete, select, tuple_

from app.db.dialect import insert_for
from app.db.models import WARSAW, ReplyAllowance
from app.flows.loader import LoadedFlow

NO_NEWS = frozenset({"repeat", "already", "already_member", "invalid", "unknown", "closed"})
OWED = frozenset({"accepted", "replaced"})
DAY = "*day"  # the scope of the daily count: no flow id can be it

_TABLE: Table = ReplyAllowance.__table__  # type: ignore[assignment]


class Candidate(NamedTuple):  # one per reply-queuing decision: a tuple is built the cheapest
    """A flow's decision that would queue ``replies`` SMS to ``phone``."""

    phone: str
    flow: LoadedFlow
    outcome: str
    replies: int


def is_owed(c: Candidate) -> bool:
    d = c.flow.definition
    # STOP and START are always confirmed: the phone must know it will (not) get messages.
    return c.outcome in OWED or d.answer_every_message or d.interrupts


def has_no_news(c: Candidate) -> bool:
    d = c.flow.definition
    # A survey's retry asks its question again, and max_retries already bounds how often.
    return not d.conversational and (c.outcome in NO_NEWS or d.is_fallback)


def decided_nothing(c: Candidate) -> bool:
    """A decision that changed nothing but the reply: its event may become ``suppressed``. Others
    (a join, a completed survey) keep their outcome, which results are rebuilt from."""
    return c.outcome in NO_NEWS or c.flow.kind in ("autoreply", "fallback")


def suppressed(conn: Connection, batch: Sequence[Candidate], now: datetime, per_day: int) -> dict[int, str]:
    """Which of ``batch`` (by index) are held back, and why; the allowances are taken for the rest."""
    held: dict[int, str] = {}
    quiet: dict[tuple[str, str], int] = {}  # (phone, flow) → the batch's first reply without news
    for i, c in enumerate(batch):
        minutes = c.flow.definition.quiet_minutes
        if is_owed(c) or not has_no_news(c) or minutes == 0:
            continue
        if (c.phone, c.flow.id) in quiet:
            held[i] = _quiet_reason(c)
        else:
            quiet[(c.phone, c.flow.id)] = i
    if quiet:
        granted = _take_quiet(conn, [(k, batch[i]) for k, i in sorted(quiet.items())], now)
        for key, i in quiet.items():
            if key not in granted:
                held[i] = _quiet_reason(batch[i])
    if per_day:
        wanted: dict[str, list[int]] = {}
        for i, c in enumerate(batch):
            if i not in held and not is_owed(c):
                wanted.setdefault(c.phone, []).append(i)
        if wanted:
            asked = {phone: sum(batch[i].replies for i in idx) for phone, idx in wanted.items()}
            totals = _count_day(conn, asked, now)
            for phone, idx in wanted.items():
                room = per_day - (totals[phone] - asked[phone])  # what the day left before this batch
                for i in idx:
                    if batch[i].replies <= room:
                        room -= batch[i].replies
                    else:
                        room = 0
                        held[i] = f"the phone had its {per_day} replies of the day (SMSFLOWS_REPLIES_PER_DAY)"
    return held


def _quiet_reason(c: Candidate) -> str:
    return f"a reply without news went to this phone less than {c.flow.definition.quiet_minutes} min ago"


def _take_quiet(conn: Connection, wanted: list[tuple[tuple[str, str], Candidate]], now: datetime) -> set[Any]:
    """Start the quiet interval of each (phone, flow) whose last one is over; returns those started."""
    rows = [
        {
            "phone": phone,
            "scope": flow,
            "until": now + timedelta(minutes=c.flow.definition.quiet_minutes),
            "count": 1,
        }
        for (phone, flow), c in wanted
    ]
    # Rows whose interval still runs are neither updated nor returned.
    result = conn.execute(_quiet_upsert(conn.dialect.name, rows, now))
    return {(phone, scope) for phone, scope in result}


def _count_day(conn: Connection, asked: dict[str, int], now: datetime) -> dict[str, int]:
    """Add each phone's replies to its count of the (Warsaw) day; returns the new counts."""
    until = _end_of_day(now)
    rows = [{"phone": p, "scope": DAY, "until": until, "count": n} for p, n in sorted(asked.items())]
    result = conn.execute(_day_upsert(conn.dialect.name, rows, now))
    return {phone: int(count) for phone, count in result}


def _end_of_day(now: datetime) -> datetime:
    local = now.astimezone(WARSAW)
    return datetime.combine(local.date() + timedelta(days=1), time(), WARSAW).astimezone(now.tzinfo)


def _quiet_upsert(dialect: str, rows: list[dict[str, Any]], now: datetime) -> Any:
    stmt = insert_for(dialect, _TABLE).values(rows)
    return stmt.on_conflict_do_update(
        index_elements=["phone", "scope"],
        set_={"until": stmt.excluded.until, "count": _TABLE.c.count + 1},
        where=_TABLE.c.until <= now,
    ).returning(_TABLE.c.phone, _TABLE.c.scope)


def _day_upsert(dialect: str, rows: list[dict[str, Any]], now: datetime) -> Any:
    stmt = insert_for(dialect, _TABLE).values(rows)
    over = _TABLE.c.until <= now  # yesterday's count: start again
    return stmt.on_conflict_do_update(
        index_elements=["phone", "scope"],
        set_={
            "until": stmt.excluded.until,
            "count": case((over, stmt.excluded.count), else_=_TABLE.c.count + stmt.excluded.count),
        },
    ).returning(_TABLE.c.phone, _TABLE.c.count)


def prune(conn: Connection, now: datetime, most: int = 2000) -> int:
    """Delete up to ``most`` allowances whose interval or day is over; how many went.

    An expired row decides exactly what a missing one does (the upserts above start it again),
    so pruning changes no reply; it only stops the table from keeping every phone ever answered.
    """
    keys = conn.execute(select(_TABLE.c.phone, _TABLE.c.scope).where(_TABLE.c.until <= now).limit(most)).all()
    if keys:
        conn.execute(
            delete(_TABLE).where(tuple_(_TABLE.c.phone, _TABLE.c.scope).in_([tuple(k) for k in keys]))
        )
    return len(keys)
