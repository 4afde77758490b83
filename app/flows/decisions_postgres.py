"""A batch's bookkeeping on PostgreSQL in one statement: its replies into the outbox, its events
(each naming the reply it queued) and its messages' new status.

Row by row (an ``executemany``) the server runs each statement once per row, and the three
statements cost a round trip each. Here the rows travel as one array per column and are
unnested on the server: the outbox insert returns the ids of the replies to the event insert in
the same statement, and the status update rides along, so a batch costs one round trip and one
execution of each however many messages it holds.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import (
    Connection,
    Table,
    TableValuedAlias,
    bindparam,
    column,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.dml import Update

from app.db.models import FlowEvent, InboundMessage, OutboxMessage

OUTBOX: Table = OutboxMessage.__table__  # type: ignore[assignment]
EVENTS: Table = FlowEvent.__table__  # type: ignore[assignment]
INBOUND: Table = InboundMessage.__table__  # type: ignore[assignment]

# The key of Decisions' finish rows → the inbound_messages column it sets (b_id finds the row).
FINISH_COLUMNS = {"b_status": "status", "b_flow": "flow_id", "b_at": "processed_at", "b_error": "error"}
REPLY_KEY = "reply_ext_id"  # an event's reply, by the ext_id the reply row was given


def write_decisions(
    conn: Connection,
    replies: list[dict[str, Any]],
    events: list[dict[str, Any]],
    finishes: list[dict[str, Any]],
) -> None:
    """Insert ``replies`` and ``events`` and apply ``finishes``; every row of a list has the same keys.

    An event's ``reply_ext_id`` names its reply among ``replies`` (or is None).
    """
    if not finishes:  # every event comes with its message's status change
        return
    reply_keys = tuple(replies[0]) if replies else ()
    event_keys = tuple(k for k in events[0] if k != REPLY_KEY) if events else ()
    stmt = _statement(reply_keys, event_keys)
    params: dict[str, list[Any]] = {}
    _columns(params, "o", replies, reply_keys)
    _columns(params, "e", events, (*event_keys, REPLY_KEY) if events else ())
    _columns(params, "f", finishes, ("b_id", *FINISH_COLUMNS))
    conn.execute(stmt, params)


def _columns(
    params: dict[str, list[Any]], prefix: str, rows: list[dict[str, Any]], keys: tuple[str, ...]
) -> None:
    for key in keys:
        params[f"{prefix}_{key}"] = [row[key] for row in rows]


def _unnest(prefix: str, columns: list[tuple[str, Any]]) -> TableValuedAlias:
    """``unnest($1::t1[], $2::t2[], …) WITH ORDINALITY AS x(k1, k2, …, n)``: the rows, in order."""
    arrays = [bindparam(f"{prefix}_{key}", type_=ARRAY(type_)) for key, type_ in columns]
    return (
        func.unnest(*arrays)
        .table_valued(*[column(key, type_) for key, type_ in columns], with_ordinality="n")
        .render_derived()
    )


def _with_defaults(table: Table, keys: tuple[str, ...], values: list[Any]) -> tuple[list[str], list[Any]]:
    """The columns and values to insert: the rows' own, and the constant Python-side default of
    every column they leave out (an INSERT inside a WITH gets none filled in by SQLAlchemy)."""
    names, values = list(keys), list(values)
    for col in table.columns:
        if col.name in keys or col.default is None:
            continue
        if not col.default.is_scalar:
            raise ValueError(f"{table.name}.{col.name}: the rows must give it (it has no constant default)")
        names.append(col.name)
        values.append(literal(col.default.arg, col.type))  # type: ignore[attr-defined]
    return names, values


@functools.lru_cache(maxsize=32)  # built once per shape of rows: compiling costs more than running
def _statement(reply_keys: tuple[str, ...], event_keys: tuple[str, ...]) -> Update:
    ctes = []
    replies = None
    if reply_keys:
        o = _unnest("o", [(k, OUTBOX.c[k].type) for k in reply_keys])
        # ORDER BY the position: the ids follow the list's order, and the outbox sends oldest first.
        names, values = _with_defaults(OUTBOX, reply_keys, [o.c[k] for k in reply_keys])
        replies = (
            insert(OUTBOX)
            .from_select(names, select(*values).order_by(o.c.n), include_defaults=False)
            .returning(OUTBOX.c.id, OUTBOX.c.ext_id)
            .cte("queued_replies")
        )
        ctes.append(replies)
    if event_keys:
        e = _unnest("e", [(k, EVENTS.c[k].type) for k in event_keys] + [(REPLY_KEY, OUTBOX.c.ext_id.type)])
        names, chosen = _with_defaults(EVENTS, event_keys, [e.c[k] for k in event_keys])
        query = select(*chosen)
        if replies is not None:  # without replies in the batch, reply_id stays NULL
            query = select(*chosen, replies.c.id).select_from(
                e.outerjoin(replies, replies.c.ext_id == e.c[REPLY_KEY])
            )
            names.append("reply_id")
        ctes.append(
            insert(EVENTS)
            .from_select(names, query.order_by(e.c.n), include_defaults=False)
            .cte("recorded_events")
        )
    f = _unnest(
        "f", [("b_id", INBOUND.c.id.type)] + [(k, INBOUND.c[c].type) for k, c in FINISH_COLUMNS.items()]
    )
    stmt = (
        update(INBOUND).where(INBOUND.c.id == f.c.b_id).values({c: f.c[k] for k, c in FINISH_COLUMNS.items()})
    )
    for cte in ctes:
        stmt = stmt.add_cte(cte)
    return stmt
