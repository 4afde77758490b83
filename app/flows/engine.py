"""The flow engine: decide what each new message means, inside the transaction that stores it.

For every message still ``received`` the engine picks a flow (STOP-like keywords, then an open
conversation, then the keyword index, then the number's fallback), lets the flow act in a
SAVEPOINT, queues its reply in the outbox and appends an event. A flow that raises only rolls
back its own savepoint: the message is kept as ``failed`` with the error, and the others go on.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import Connection, Table, bindparam, insert, select, update

from app.db.dialect import insert_for, insert_rows
from app.db.models import Contact, FlowEvent, InboundMessage, OutboxMessage, utcnow
from app.flows.kinds.base import Context, Inbound, Outcome
from app.flows.kinds.reply_answers import Answered, correlate
from app.flows.loader import FlowSet, LoadedFlow
from app.flows.matching import words
from app.flows.reply_limits import Candidate, suppressed
from app.outbox.table import OUTBOX, outbox_row

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


@dataclass
class _Decisions:
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
            self.limited.append(
                (len(self.events), Candidate(msg.sender, flow, outcome.name, len(rows)), rows)
            )
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
        if self.replies:
            insert_rows(conn, OUTBOX, self.replies)
        for event, reply in self.reply_of_event.items():
            self.events[event]["reply_ext_id"] = self.replies[reply]["ext_id"]
        if self.events:
            conn.execute(_EVENT, self.events)
        if self.finishes:
            conn.execute(_FINISH, self.finishes)

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
            e["detail"] = msgspec.json.encode(
                {**detail, "outcome": candidate.outcome, "reason": reason}
            ).decode()
            e["outcome"] = "suppressed"
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


_PENDING = (
    select(*_INBOUND_COLUMNS, InboundMessage.status)
    .where(
        InboundMessage.sms_id.in_(bindparam("sms_ids", expanding=True)),
        InboundMessage.status.in_(bindparam("statuses", expanding=True)),
    )
    .order_by(InboundMessage.id)
)


def process_new(
    conn: Connection,
    flows: FlowSet,
    sms_ids: Sequence[str],
    statuses: Sequence[str] = ("received",),
    only_flow: str | None = None,
) -> dict[str, str]:
    """Run flows over the given messages that are in one of ``statuses``; returns sms_id → status."""
    rows = conn.execute(_PENDING, {"sms_ids": list(sms_ids), "statuses": list(statuses)}).all()
    if not rows:
        return {}
    decisions = _Decisions(utcnow())
    # A replayed message was counted when it first came in; only new ones add to their contact.
    fresh = [r.sender for r in rows if r.status == "received"]
    if fresh:
        _touch_contacts(conn, fresh, decisions.now)
    results = {}
    msgs = [Inbound(r.id, r.sms_id, r.number, r.sender, r.text, r.time, r.ext_id) for r in rows]
    # Answers to sent messages are linked to them whether or not a flow acts on them.
    answered = correlate(conn, msgs, {r.id for r in rows if r.status == "received"}, decisions.now)
    # Optimistic: the whole batch under one SAVEPOINT. Only if a flow raises is the batch rolled
    # back to it and done again with a SAVEPOINT per message, so that one failure stays alone.
    try:
        with _savepoint(conn, "smsflows_batch"):
            routes = _route_batch(conn, flows, msgs, decisions.now, only_flow, answered)
            for msg in msgs:
                results[msg.sms_id] = _process_one(
                    conn, flows, msg, decisions, only_flow, answered.get(msg.id), routes.get(msg.id), False
                )
    except _FlowRaised:
        decisions, results = _Decisions(decisions.now), {}
        for msg in msgs:
            results[msg.sms_id] = _process_one(conn, flows, msg, decisions, only_flow, answered.get(msg.id))
    decisions.write(conn, flows.replies_per_day)
    return results


class _FlowRaised(Exception):
    """A flow raised while the batch ran without per-message savepoints: run it again with them."""


_Routed = tuple[LoadedFlow | None, Context]


def _route_batch(
    conn: Connection,
    flows: FlowSet,
    msgs: list[Inbound],
    now: datetime,
    only_flow: str | None,
    answered: dict[int, Answered],
) -> dict[int, _Routed]:
    """Route the batch up front where that changes nothing, and let each flow prepare its share.

    Where a message goes depends on its text, except for a phone in a conversation (a survey),
    and only that phone's own messages to a conversational flow can open one. So a phone with
    an open conversation, or one that opens one in this batch, has its messages (from that one
    on) routed one after another as they are processed; every other message is routed now.
    """
    waiting: set[tuple[str, str]] = set()  # (phone, number) routed one message after another
    if flows.conversational:
        from app.flows.conversations import phones_in_conversation

        waiting = phones_in_conversation(conn, {m.sender for m in msgs})
    routes: dict[int, _Routed] = {}
    shares: dict[str, tuple[LoadedFlow, list[Context]]] = {}
    for msg in msgs:
        phone = (msg.sender, msg.number)
        if phone in waiting:
            continue
        chosen, ctx = _route(
            conn, flows, msg, words(msg.text), now, answered.get(msg.id), conversations=False
        )
        if chosen is not None and type(chosen.definition).conversational:
            waiting.add(phone)
            continue
        routes[msg.id] = chosen, ctx
        if chosen is None or (only_flow is not None and chosen.id != only_flow):
            continue
        if chosen.definition.is_open(msg.sent_at):
            shares.setdefault(chosen.id, (chosen, []))[1].append(ctx)
    for flow, contexts in shares.values():
        try:
            flow.definition.prepare(contexts)
        except Exception as exc:
            raise _FlowRaised from exc
    return routes


def _process_one(
    conn: Connection,
    flows: FlowSet,
    msg: Inbound,
    decisions: _Decisions,
    only_flow: str | None,
    answered: Answered | None = None,
    routed: _Routed | None = None,
    isolate: bool = True,
) -> str:
    now = decisions.now
    in_order = routed is None and flows.conversational  # routed here, after the batch's earlier ones
    if not in_order:
        # Routed with the batch (or a set without conversations): routing needed no database,
        # so unmatched messages cost nothing here.
        chosen, ctx = routed or _route(conn, flows, msg, words(msg.text), now, answered)
        if only_flow is not None and (chosen is None or chosen.id != only_flow):
            return "skipped"
        if chosen is None:
            decisions.record(msg, None, _UNMATCHED, None)
            return "ignored"
    try:
        with _savepoint(conn, "smsflows_message") if isolate else contextlib.nullcontext():
            if in_order:
                chosen, ctx = _route(conn, flows, msg, words(msg.text), now, answered)
                if only_flow is not None and (chosen is None or chosen.id != only_flow):
                    return "skipped"  # a replay of one flow leaves other flows' messages as they were
                if chosen is None:
                    decisions.record(msg, None, _UNMATCHED, None)
                    return "ignored"
            assert chosen is not None
            d = chosen.definition
            open_now = d.is_open(msg.sent_at) or ctx.conversation is not None
            outcome = d.handle(ctx) if open_now else d.closed(ctx)
            reply = _reply_row(chosen, outcome, ctx)
            follow_ups = [r for name in outcome.follow_ups if (r := _reply_row(chosen, outcome, ctx, name))]
    except Exception as exc:  # the flow's own effects are rolled back; the message is kept
        if not isolate:
            raise _FlowRaised from exc
        log.exception("flow failed on MO %s", msg.sms_id)
        decisions.finish(msg, None, "failed", f"{exc.__class__.__name__}: {exc}"[:2000])
        return "failed"
    decisions.record(msg, chosen, outcome, reply, follow_ups)
    return outcome.status


_UNMATCHED = Outcome("unmatched", status="ignored")


@contextmanager
def _savepoint(conn: Connection, name: str) -> Iterator[None]:
    """A SAVEPOINT said directly: SQLAlchemy's own costs two compilations each time."""
    conn.exec_driver_sql(f"SAVEPOINT {name}")
    try:
        yield
    except BaseException:
        conn.exec_driver_sql(f"ROLLBACK TO SAVEPOINT {name}")
        conn.exec_driver_sql(f"RELEASE SAVEPOINT {name}")
        raise
    conn.exec_driver_sql(f"RELEASE SAVEPOINT {name}")


def _route(
    conn: Connection,
    flows: FlowSet,
    msg: Inbound,
    folded: list[str],
    now: datetime,
    answered: Answered | None = None,
    conversations: bool = True,
) -> tuple[LoadedFlow | None, Context]:
    """The flow that takes the message; ``conversations=False`` when the phone is known to have
    no open conversation."""
    ctx = Context(conn=conn, msg=msg, flow_hash="", words=folded, keyword=None, now=now)
    matched = flows.index.lookup(msg.number, folded[0]) if folded else []
    at = msg.sent_at
    chosen = _pick(matched, at)
    if answered is not None:
        ctx.extra["answered"] = answered
        taker = flows.answer_flow(answered.tag, msg.number) if answered.tag else None
        # An answer to a tagged message goes to its reply flow; only STOP-like keywords come first.
        if taker is not None and (chosen is None or not type(chosen.definition).interrupts):
            ctx.flow_hash = taker.hash
            return taker, ctx
    if conversations and flows.conversational and (chosen is None or not type(chosen.definition).interrupts):
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


def _reply_row(
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


def _touch_contacts(conn: Connection, phones: list[str], now: datetime) -> None:
    counts: dict[str, int] = {}
    for p in phones:
        counts[p] = counts.get(p, 0) + 1
    conn.execute(
        _contacts_upsert(conn.dialect.name),
        [
            {"phone": p, "first_seen": now, "last_seen": now, "messages": n, "opted_out_at": None}
            for p, n in counts.items()
        ],
    )


@functools.cache  # built once per dialect: ``excluded`` costs a proxy per column each time
def _contacts_upsert(dialect: str) -> Any:
    table: Table = Contact.__table__  # type: ignore[assignment]
    stmt = insert_for(dialect, table)
    return stmt.on_conflict_do_update(
        index_elements=["phone"],
        set_={"last_seen": stmt.excluded.last_seen, "messages": table.c.messages + stmt.excluded.messages},
    )
