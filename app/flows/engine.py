"""The flow engine: decide what each new message means, inside the transaction that stores it.

For every message still ``received`` the engine picks a flow (STOP-like keywords, then an open
conversation, then the keyword index, then the number's fallback), lets the flow act in a
SAVEPOINT, queues its reply in the outbox and appends an event. A flow that raises only rolls
back its own savepoint: the message is kept as ``failed`` with the error, and the others go on.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import Connection, Table, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from app.db.models import Contact, FlowEvent, InboundMessage, OutboxMessage, utcnow
from app.flows.kinds.base import Context, Inbound, Outcome
from app.flows.loader import FlowSet, LoadedFlow
from app.flows.matching import words
from app.mobitex.encoding import measure

log = logging.getLogger("smsflows.flows")

_INBOUND_COLUMNS = (
    InboundMessage.id,
    InboundMessage.sms_id,
    InboundMessage.number,
    InboundMessage.sender,
    InboundMessage.text,
    InboundMessage.time,
    InboundMessage.ext_id,
)


def process_new(
    conn: Connection,
    flows: FlowSet,
    sms_ids: Sequence[str],
    statuses: Sequence[str] = ("received",),
    only_flow: str | None = None,
) -> dict[str, str]:
    """Run flows over the given messages that are in one of ``statuses``; returns sms_id → status."""
    rows = conn.execute(
        select(*_INBOUND_COLUMNS, InboundMessage.status)
        .where(InboundMessage.sms_id.in_(sms_ids), InboundMessage.status.in_(statuses))
        .order_by(InboundMessage.id)
    ).all()
    if not rows:
        return {}
    now = utcnow()
    # A replayed message was counted when it first came in; only new ones add to their contact.
    fresh = [r.sender for r in rows if r.status == "received"]
    if fresh:
        _touch_contacts(conn, fresh, now)
    results = {}
    for row in rows:
        msg = Inbound(row.id, row.sms_id, row.number, row.sender, row.text, row.time, row.ext_id)
        results[msg.sms_id] = process_one(conn, flows, msg, now, only_flow=only_flow)
    return results


def process_one(
    conn: Connection, flows: FlowSet, msg: Inbound, now: datetime, only_flow: str | None = None
) -> str:
    folded = words(msg.text)
    try:
        with conn.begin_nested():
            chosen, ctx = _route(conn, flows, msg, folded, now)
            if only_flow is not None and (chosen is None or chosen.id != only_flow):
                return "skipped"  # a replay of one flow leaves other flows' messages as they were
            if chosen is None:
                _finish(conn, msg, None, "ignored", now)
                _event(conn, msg, None, Outcome("unmatched", status="ignored"), None, now)
                return "ignored"
            d = chosen.definition
            outcome = (
                d.handle(ctx) if d.is_open(msg.sent_at) or ctx.conversation is not None else d.closed(ctx)
            )
            reply_id = _queue_reply(conn, chosen, outcome, ctx)
            _event(conn, msg, chosen, outcome, reply_id, now)
            _finish(conn, msg, chosen.id, outcome.status, now)
            return outcome.status
    except Exception as exc:  # the flow's own effects are rolled back; the message is kept
        log.exception("flow failed on MO %s", msg.sms_id)
        error = f"{exc.__class__.__name__}: {exc}"[:2000]
        conn.execute(
            update(InboundMessage)
            .where(InboundMessage.id == msg.id)
            .values(status="failed", error=error, processed_at=now)
        )
        return "failed"


def _route(
    conn: Connection, flows: FlowSet, msg: Inbound, folded: list[str], now: datetime
) -> tuple[LoadedFlow | None, Context]:
    ctx = Context(conn=conn, msg=msg, flow_hash="", words=folded, keyword=None, now=now)
    matched = flows.index.lookup(msg.number, folded[0]) if folded else []
    at = msg.sent_at
    chosen = _pick(matched, at)
    if flows.conversational and (chosen is None or not type(chosen.definition).interrupts):
        from app.flows.conversations import active_conversation  # only sets with surveys pay for it

        conversation = active_conversation(conn, msg.sender, msg.number, at=at, now=now)
        if conversation is not None and conversation.flow_id in flows.flows:
            owner = flows.flows[conversation.flow_id]
            takes_over = (
                chosen is not None
                and chosen is not owner
                and owner.definition.yields_to_keyword(conn, conversation, now)
            )
            if not takes_over:
                ctx.conversation, ctx.flow_hash = conversation, owner.hash
                if chosen is not None:  # the owner decides what a keyword means mid-conversation
                    ctx.keyword, ctx.keyword_flow = folded[0], chosen.id
                return owner, ctx
    if chosen is not None:
        ctx.keyword, ctx.keyword_flow, ctx.flow_hash = folded[0], chosen.id, chosen.hash
        return chosen, ctx
    fallback = flows.fallback_for(msg.number)
    if fallback is not None:
        ctx.flow_hash = fallback.hash
    return fallback, ctx


def _pick(matched: list[LoadedFlow], at: datetime) -> LoadedFlow | None:
    """The flow whose window holds the message's time; else the nearest one, to say it is closed."""
    if not matched:
        return None
    for f in matched:
        if f.definition.is_open(at):
            return f

    def distance(f: LoadedFlow) -> float:
        lo, hi = f.definition.window()
        return (lo - at).total_seconds() if at < lo else (at - hi).total_seconds()

    return min(matched, key=distance)


def _queue_reply(conn: Connection, flow: LoadedFlow, outcome: Outcome, ctx: Context) -> int | None:
    reply = flow.replies.get(outcome.reply) if outcome.reply else None
    if reply is None:
        return None
    variables: dict[str, Any] = {
        "sender": ctx.msg.sender,
        "number": ctx.msg.number,
        "text": ctx.msg.text,
        "keyword": ctx.keyword or "",
        "flow": flow.id,
        "flow_name": flow.definition.name or flow.id,
        **outcome.variables,
    }
    text = reply.render(variables)
    if not text:
        return None
    return queue_message(
        conn,
        to=ctx.msg.sender,
        text=text,
        from_number=ctx.msg.number,
        flow=flow,
        inbound_id=ctx.msg.id,
        now=ctx.now,
    )


def queue_message(
    conn: Connection,
    *,
    to: str,
    text: str,
    from_number: str | None,
    flow: LoadedFlow | None,
    inbound_id: int | None,
    now: datetime,
) -> int:
    """Put one message in the outbox; the sender picks it up after this transaction commits."""
    m = measure(text)
    result = conn.execute(
        insert(OutboxMessage).returning(OutboxMessage.id),
        {
            "ext_id": secrets.token_hex(16),
            "to_number": to,
            "from_number": from_number,
            "text": text,
            "encoding": m.encoding,
            "parts": m.parts,
            "status": "queued",
            "flow_id": flow.id if flow else None,
            "flow_hash": flow.hash if flow else None,
            "inbound_id": inbound_id,
            "created_at": now,
        },
    )
    return int(result.scalar_one())


def _event(
    conn: Connection,
    msg: Inbound,
    flow: LoadedFlow | None,
    outcome: Outcome,
    reply_id: int | None,
    now: datetime,
) -> None:
    detail = msgspec.json.encode(outcome.variables).decode() if outcome.variables else None
    conn.execute(
        insert(FlowEvent),
        {
            "inbound_id": msg.id,
            "sender": msg.sender,
            "flow_id": flow.id if flow else None,
            "flow_hash": flow.hash if flow else None,
            "outcome": outcome.name,
            "detail": detail,
            "reply_id": reply_id,
            "created_at": now,
        },
    )


def _finish(conn: Connection, msg: Inbound, flow_id: str | None, status: str, now: datetime) -> None:
    conn.execute(
        update(InboundMessage)
        .where(InboundMessage.id == msg.id)
        .values(status=status, flow_id=flow_id, processed_at=now, error=None)
    )


def _touch_contacts(conn: Connection, phones: list[str], now: datetime) -> None:
    counts: dict[str, int] = {}
    for p in phones:
        counts[p] = counts.get(p, 0) + 1
    table: Table = Contact.__table__  # type: ignore[assignment]
    stmt = postgresql.insert(table) if conn.dialect.name == "postgresql" else sqlite.insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=["phone"],
        set_={"last_seen": stmt.excluded.last_seen, "messages": table.c.messages + stmt.excluded.messages},
    )
    conn.execute(
        stmt,
        [
            {"phone": p, "first_seen": now, "last_seen": now, "messages": n, "opted_out_at": None}
            for p, n in counts.items()
        ],
    )
