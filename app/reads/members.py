"""A subscription list's reachable members (active, not under STOP), longest first, a page at a
time, and how many there are, counted in the database.

Pages are keyset pages on when each member joined. Many join in the same second (the message's
own time has no finer grain), so a position is that time and how many of its members came
before (ordered by number): the cursor names no phone, and the address of a viewer's page shows
no number the page masks.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import Connection, func, select

from app.db.flow_models import Subscription
from app.errors import InvalidRequest
from app.flows.kinds.subscription import reachable

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# When a member joined: confirmed, or asked on a list that needs no confirmation.
_joined = func.coalesce(Subscription.confirmed_at, Subscription.requested_at)


class Member(msgspec.Struct, frozen=True):
    phone: str
    since: datetime


class MemberPage(msgspec.Struct, frozen=True):
    items: list[Member]
    total: int
    """Reachable members of the whole list."""
    next_cursor: str | None
    """Later members: pass as ``start``; None on the last page."""
    prev_cursor: str | None = None
    """Earlier members: pass as ``before``; None on the first page."""


def count_members(conn: Connection, list_id: str) -> int:
    return int(conn.scalar(select(func.count()).select_from(reachable(list_id).subquery())) or 0)


def list_members(
    conn: Connection, list_id: str, *, limit: int = 50, start: str | None = None, before: str | None = None
) -> MemberPage:
    """The members from position ``start`` on, or the ``limit`` members before ``before``."""
    query = reachable(list_id).add_columns(_joined.label("since"))
    if before is not None:
        at, ahead = _position(before)
        # Backwards: the members who joined at ``at`` from the position on come first; skip them.
        rows = conn.execute(
            query.where(_joined <= at)
            .order_by(_joined.desc(), Subscription.phone.desc())
            .offset(max(_ties(conn, list_id, at) - ahead, 0))
            .limit(limit + 1)
        ).all()
        earlier = _cursor(conn, list_id, rows[limit - 1]) if len(rows) > limit else None
        items = [Member(phone, since) for phone, since in rows[:limit][::-1]]
        # The member at ``before`` opened the page we came from: it starts the next one.
        return MemberPage(items, count_members(conn, list_id), before if items else None, earlier)
    if start is not None:
        at, ahead = _position(start)
        query = query.where(_joined >= at).offset(ahead)
    rows = conn.execute(query.order_by(_joined, Subscription.phone).limit(limit + 1)).all()
    later = _cursor(conn, list_id, rows[limit]) if len(rows) > limit else None
    items = [Member(phone, since) for phone, since in rows[:limit]]
    earlier = start if start is not None and items and _any_before(conn, list_id, start) else None
    return MemberPage(items, count_members(conn, list_id), later, earlier)


def _any_before(conn: Connection, list_id: str, cursor: str) -> bool:
    at, ahead = _position(cursor)
    return ahead > 0 or conn.execute(reachable(list_id).where(_joined < at).limit(1)).first() is not None


def _ties(conn: Connection, list_id: str, at: datetime, below: str | None = None) -> int:
    """Members who joined at ``at`` (with a number below ``below``, when given)."""
    query = reachable(list_id).where(_joined == at)
    if below is not None:
        query = query.where(Subscription.phone < below)
    return int(conn.scalar(select(func.count()).select_from(query.subquery())) or 0)


def _cursor(conn: Connection, list_id: str, row: Any) -> str:
    phone, since = row[0], row[1]
    return f"{(since - _EPOCH) // timedelta(microseconds=1)}.{_ties(conn, list_id, since, phone)}"


def _position(cursor: str) -> tuple[datetime, int]:
    try:
        micros, ahead = (int(part) for part in cursor.split("."))
        return _EPOCH + timedelta(microseconds=micros), max(ahead, 0)
    except (ValueError, OverflowError):
        raise InvalidRequest(
            f"{cursor!r} is not a position in a member list; open the flow's page again and page from there"
        ) from None
