"""What a batch of messages decided, written in bulk: event rows, status changes, replies in the
outbox (rendered here) and the contacts' counters."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import CTE, Connection, Table, bindparam, func, insert, null, select, update
from sqlalchemy.dialects import postgresql

from app.db.dialect import as_arrays, execute_rows, insert_for, insert_rows, unnested
from app.db.models import Contact, FlowEvent, InboundMessage, OutboxMessage
from app.flows.decisions_postgres import write_decisions
from app.flows.kinds.base import Context, Inbound, Outcome
from app.flows.loader import LoadedFlow
from app.flows.reply_limits import Candidate, decided_nothing, suppressed
from app.outbox.table import OUTBOX, outbox_row


@dataclass
class Decisions:
    """Event rows and status changes of one batch, written with one statement each at the end.

    Only the flows' own effects and their replies are written message by message (inside each
    message's SAVEPOINT); the bookkeeping every message needs goes in bulk, which is what keeps
    the MO path fast when every message is a vote.
    """

    now: datetime
    events: list[dict[str, Any]] = field(default_factory=list)
    finishes: list[dict[str, Any]] = field(default_factory=list)
    replies: list[dict[str, Any]] = field(default_factory=list)
    reply_of_event: dict[int, int] = field(default_factory=dict)  # event index → replies index
    # Events that queue replies, with their reply rows: the reply limits may hold them back.
    limited: list[tuple[int, Candidate, list[int]]] = field(default_factory=list)

    def record(
        self,
        msg: Inbound,
        flow: LoadedFlow | None,
        outcome: Outcome,
        reply: dict[str, Any] | None,
        follow_ups: Sequence[dict[str, Any]] = (),
    ) -> None:
        detail = msgspec.json.encode(outcome.variables).decode() if outcome.variables else None
        rows = [len(self.replies) + n for n in range(int(reply is not None) + len(follow_ups))]
        if flow is not None and rows:
            candidate = Candidate(msg.sender, flow, outcome.name, len(rows))
            self.limited.append((len(self.events), candidate, rows))
        if reply is not None:
            self.reply_of_event[len(self.events)] = len(self.replies)
            self.replies.append(reply)
        self.replies.extend(follow_ups)  # after the reply: the outbox sends oldest first
        self.events.append(
            {
                "inbound_id": msg.id,
                "sender": msg.sender,
                "flow_id": flow.id if flow else None,
                "flow_hash": flow.hash if flow else None,
                "outcome": outcome.name,
                "detail": detail,
                "reply_ext_id": None,
                "created_at": self.now,
            }
        )
        self.finish(msg, flow.id if flow else None, outcome.status, None)

    def finish(self, msg: Inbound, flow_id: str | None, status: str, error: str | None) -> None:
        self.finishes.append(
            {"b_id": msg.id, "b_status": status, "b_flow": flow_id, "b_at": self.now, "b_error": error}
        )

    def write(self, conn: Connection, replies_per_day: int = 0) -> None:
        if self.limited:
            self._hold_back(conn, replies_per_day)
        for event, reply in self.reply_of_event.items():
            self.events[event]["reply_ext_id"] = self.replies[reply]["ext_id"]
        if conn.dialect.name == "postgresql":
            write_decisions(conn, self.replies, self.events, self.finishes)  # one statement
            return
        if self.replies:
            insert_rows(conn, OUTBOX, self.replies)
        if self.events:
            execute_rows(conn, _EVENT, self.events)
        if self.finishes:
            execute_rows(conn, _FINISH, self.finishes)

    def _hold_back(self, conn: Connection, replies_per_day: int) -> None:
        """Drop the replies the reply limits hold back; their events become ``suppressed``."""
        held = suppressed(conn, [c for _, c, _ in self.limited], self.now, replies_per_day)
        if not held:
            return
        dropped: set[int] = set()
        for n, reason in held.items():
            event, candidate, rows = self.limited[n]
            dropped.update(rows)
            self.reply_of_event.pop(event, None)
            e = self.events[event]
            detail = msgspec.json.decode(e["detail"]) if e["detail"] else {}
            if decided_nothing(candidate):
                detail |= {"outcome": candidate.outcome, "reason": reason}
                e["outcome"] = "suppressed"
            else:  # results are rebuilt from this outcome: it stays, the reply is marked
                detail |= {"suppressed": reason}
            e["detail"] = msgspec.json.encode(detail).decode()
        kept = [i for i in range(len(self.replies)) if i not in dropped]
        moved = {old: new for new, old in enumerate(kept)}
        self.replies = [self.replies[i] for i in kept]
        self.reply_of_event = {e: moved[r] for e, r in self.reply_of_event.items()}


# An event names its reply by the ext_id we gave it: the outbox ids need no RETURNING round.
_EVENT = insert(FlowEvent).values(
    reply_id=select(OutboxMessage.id)
    .where(OutboxMessage.ext_id == bindparam("reply_ext_id"))
    .scalar_subquery()
)

_FINISH = (
    update(InboundMessage)
    .where(InboundMessage.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        flow_id=bindparam("b_flow"),
        processed_at=bindparam("b_at"),
        error=bindparam("b_error"),
    )
)


def reply_row(
    flow: LoadedFlow, outcome: Outcome, ctx: Context, name: str | None = None
) -> dict[str, Any] | None:
    """The outbox row for the flow's reply (or its reply ``name``), rendered now, written with the batch."""
    name = name or outcome.reply
    reply = flow.replies.get(name) if name else None
    if reply is None:
        return None
    variables: dict[str, Any] = {
        **flow.blanks,
        "sender": ctx.msg.sender,
        "number": ctx.msg.number,
        "text": ctx.msg.text,
        "keyword": ctx.keyword or "",
        "flow": flow.id,
        "flow_name": flow.definition.name or flow.id,
        **outcome.variables,
    }
    # A reply that echoes what the phone wrote can outgrow the sample `flows check` measured.
    text, measured = reply.sms(variables, flow.definition.max_parts)
    if not text:
        return None
    return outbox_row(
        to=ctx.msg.sender,
        text=text,
        from_number=ctx.msg.number,
        flow=flow,
        inbound_id=ctx.msg.id,
        now=ctx.now,
        measured=measured,
    )


def touch_contacts(conn: Connection, phones: list[str], now: datetime) -> None:
    counts: dict[str, int] = {}
    for p in phones:
        counts[p] = counts.get(p, 0) + 1
    postgres = conn.dialect.name == "postgresql"
    # PostgreSQL: in the phones' order, so that two processes' batches lock the contacts they
    # share in the same order; and as one array per column, one execution for the batch.
    rows = [
        {"phone": p, "first_seen": now, "last_seen": now, "messages": n, "opted_out_at": None}
        for p, n in (sorted(counts.items()) if postgres else counts.items())
    ]
    if postgres:
        conn.execute(_contacts_upsert("postgresql", _CONTACT_KEYS), as_arrays(rows, _CONTACT_KEYS))
    else:
        execute_rows(conn, _contacts_upsert(conn.dialect.name), rows)


_CONTACT_KEYS = ("phone", "first_seen", "last_seen", "messages", "opted_out_at")
CONTACTS_NOW = "contacts_now"  # the parameter of touch_contacts_of()'s time


def touch_contacts_of(stored: CTE) -> CTE:
    """PostgreSQL: :func:`touch_contacts` as a CTE of the statement that stores the messages,
    for its rows still ``received`` (``stored``: a CTE with their ``sender`` and ``status``),
    so that it costs no round trip of its own. In the phones' order, as touch_contacts locks them.
    """
    table: Table = Contact.__table__  # type: ignore[assignment]
    now = bindparam(CONTACTS_NOW, type_=table.c.last_seen.type)
    counted = (
        select(stored.c.sender, now, now, func.count(), null())
        .where(stored.c.status == "received")
        .group_by(stored.c.sender)
        .order_by(stored.c.sender)
    )
    stmt = postgresql.insert(table).from_select(list(_CONTACT_KEYS), counted)
    return stmt.on_conflict_do_update(
        index_elements=["phone"],
        set_={"last_seen": stmt.excluded.last_seen, "messages": table.c.messages + stmt.excluded.messages},
    ).cte("touched_contacts")


@functools.cache  # built once per dialect: ``excluded`` costs a proxy per column each time
def _contacts_upsert(dialect: str, unnest: tuple[str, ...] = ()) -> Any:
    table: Table = Contact.__table__  # type: ignore[assignment]
    stmt = insert_for(dialect, table)
    if unnest:
        stmt = stmt.from_select(list(unnest), unnested(table, unnest))
    return stmt.on_conflict_do_update(
        index_elements=["phone"],
        set_={"last_seen": stmt.excluded.last_seen, "messages": table.c.messages + stmt.excluded.messages},
    )
