"""The flow engine: decide what each new message of a batch means, inside the transaction that
stores it.

For every message still ``received`` the engine has it routed (``routing.py``), lets the flow
act, and collects the bookkeeping (``decisions.py``): its reply in the outbox, its event, its new
status. The batch runs under one SAVEPOINT; if a flow raises, it runs again with a SAVEPOINT per
message, so a failing flow loses only its own effects: its message is kept as ``failed`` with
the error, and the others go on.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, bindparam, select

from app.db.models import InboundMessage, utcnow
from app.db.outage import is_retryable
from app.flows.decisions import Decisions, reply_row, touch_contacts
from app.flows.kinds.base import Context, Inbound, Outcome
from app.flows.kinds.reply_answers import correlate
from app.flows.loader import FlowSet, LoadedFlow
from app.flows.matching import words
from app.flows.messages import Answered
from app.flows.routing import Route, route

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


Guard = Literal["savepoint", "transaction", "per_message"]

PENDING_COLUMNS = (*_INBOUND_COLUMNS, InboundMessage.status)  # a pending row: an Inbound, then its status

_PENDING = (
    select(*PENDING_COLUMNS)
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
    *,
    statuses: Sequence[str] = ("received",),
    only_flow: str | None = None,
    stored: Sequence[Sequence[Any]] | None = None,
    guard: Guard = "savepoint",
    contacts_touched: bool = False,
) -> dict[str, str]:
    """Run flows over the given messages that are in one of ``statuses``; returns sms_id → status.

    ``only_flow`` (a replay of one flow) leaves messages that go to other flows as they are.
    ``stored``: the messages' rows as of now (``PENDING_COLUMNS``, any order), already read by
    the caller (the writer's upsert returns them on PostgreSQL), which spares reading them again;
    ``contacts_touched``: that same statement counted them on their contacts already.

    ``guard`` is how a flow that raises is kept from its neighbours: ``"savepoint"``, the batch
    runs under one SAVEPOINT, and is run again from it with a SAVEPOINT per message if a flow
    raises; ``"transaction"``, the batch runs without one and :class:`FlowRaised` is raised
    instead, for a caller that owns the transaction: it rolls the whole transaction back and
    runs it again with ``"per_message"``, a SAVEPOINT per message from the start.
    """
    if stored is None:
        rows: Sequence[Sequence[Any]] = conn.execute(
            _PENDING, {"sms_ids": list(sms_ids), "statuses": list(statuses)}
        ).all()
    else:
        wanted = set(sms_ids)
        rows = sorted((r for r in stored if r[-1] in statuses and r[1] in wanted), key=lambda r: r[0])
    if not rows:
        return {}
    decisions = Decisions(utcnow())
    msgs: list[Inbound] = []
    first_time: set[int] = set()  # messages seen for the first time, not replayed
    for row in rows:  # by position: a Row's attributes cost a failed lookup each
        msg = Inbound(*row[:-1])
        msgs.append(msg)
        if row[-1] == "received":
            first_time.add(msg.id)
    # A replayed message was counted when it first came in; only new ones add to their contact.
    if first_time and not contacts_touched:
        touch_contacts(conn, [m.sender for m in msgs if m.id in first_time], decisions.now)
    results: dict[str, str] = {}
    # Answers to sent messages are linked to them whether or not a flow acts on them.
    answered = correlate(conn, msgs, first_time, decisions.now)
    # Optimistic: the whole batch under one SAVEPOINT (or none, the transaction being the guard).
    # Only if a flow raises is the batch rolled back and done again with a SAVEPOINT per message,
    # so that one failure stays alone.
    optimistic = guard != "per_message"
    if optimistic:
        guarded = (
            # PostgreSQL: the batch's savepoint is left to the transaction's end (a RELEASE is a
            # round trip, and COMMIT or a rollback ends the savepoint just the same).
            _savepoint(conn, "smsflows_batch", release=conn.dialect.name != "postgresql")
            if guard == "savepoint"
            else contextlib.nullcontext()
        )
        try:
            with guarded:
                routes = _route_batch(
                    conn, flows, msgs, now=decisions.now, only_flow=only_flow, answered=answered
                )
                for msg in msgs:
                    results[msg.sms_id] = _process_one(
                        conn,
                        flows,
                        msg,
                        decisions=decisions,
                        only_flow=only_flow,
                        answered=answered.get(msg.id),
                        routed=routes.get(msg.id),
                        isolate=False,
                    )
        except _FlowRaised as exc:
            if guard == "transaction":
                raise FlowRaised("a flow raised: run the batch again with a savepoint per message") from (
                    exc.__cause__
                )
            optimistic = False
    if not optimistic:
        decisions, results = Decisions(decisions.now), {}
        for msg in msgs:
            results[msg.sms_id] = _process_one(
                conn, flows, msg, decisions=decisions, only_flow=only_flow, answered=answered.get(msg.id)
            )
    decisions.write(conn, flows.replies_per_day)
    return results


class _FlowRaised(Exception):
    """A flow raised while the batch ran without per-message savepoints: run it again with them."""


class FlowRaised(Exception):
    """A flow raised in a batch run with ``guard="transaction"``: roll the transaction back and
    run it again with ``guard="per_message"``."""


def _route_batch(
    conn: Connection,
    flows: FlowSet,
    msgs: list[Inbound],
    *,
    now: datetime,
    only_flow: str | None,
    answered: dict[int, Answered],
) -> dict[int, Route]:
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
    routes: dict[int, Route] = {}
    shares: dict[str, tuple[LoadedFlow, list[Context]]] = {}
    for msg in msgs:
        phone = (msg.sender, msg.number)
        if phone in waiting:
            continue
        routed = route(
            conn,
            flows,
            msg,
            folded=words(msg.text),
            now=now,
            answered=answered.get(msg.id),
            conversations=False,
        )
        chosen, ctx = routed
        if chosen is not None and type(chosen.definition).conversational:
            waiting.add(phone)
            continue
        routes[msg.id] = routed
        if chosen is None or (only_flow is not None and chosen.id != only_flow):
            continue
        if chosen.definition.is_open(msg.sent_at):
            shares.setdefault(chosen.id, (chosen, []))[1].append(ctx)
    for flow, contexts in shares.values():
        try:
            flow.definition.prepare(contexts)
        except Exception as exc:
            if is_retryable(exc):  # not the flow's fault: the writer runs the transaction again
                raise
            raise _FlowRaised from exc
    return routes


def _process_one(
    conn: Connection,
    flows: FlowSet,
    msg: Inbound,
    *,
    decisions: Decisions,
    only_flow: str | None,
    answered: Answered | None = None,
    routed: Route | None = None,
    isolate: bool = True,
) -> str:
    """Route (unless routed with the batch) and handle one message; returns its new status."""
    now = decisions.now
    in_order = routed is None and flows.conversational  # routed here, after the batch's earlier ones
    if not in_order:
        # Routed with the batch (or a set without conversations): routing needed no database,
        # so unmatched messages cost nothing here.
        chosen, ctx = routed or route(conn, flows, msg, folded=words(msg.text), now=now, answered=answered)
        if only_flow is not None and (chosen is None or chosen.id != only_flow):
            return "skipped"
        if chosen is None:
            decisions.record(msg, None, _UNMATCHED, None)
            return "ignored"
    try:
        with _savepoint(conn, "smsflows_message") if isolate else contextlib.nullcontext():
            if in_order:
                chosen, ctx = route(conn, flows, msg, folded=words(msg.text), now=now, answered=answered)
                if only_flow is not None and (chosen is None or chosen.id != only_flow):
                    return "skipped"  # a replay of one flow leaves other flows' messages as they were
                if chosen is None:
                    decisions.record(msg, None, _UNMATCHED, None)
                    return "ignored"
            assert chosen is not None
            d = chosen.definition
            open_now = d.is_open(msg.sent_at) or ctx.conversation is not None
            outcome = d.handle(ctx) if open_now else d.closed(ctx)
            reply = reply_row(chosen, outcome, ctx)
            follow_ups = [r for name in outcome.follow_ups if (r := reply_row(chosen, outcome, ctx, name))]
    except Exception as exc:  # the flow's own effects are rolled back; the message is kept
        if is_retryable(exc):
            # A deadlock with another writer is no failure of the flow's: the whole transaction
            # was rolled back, and whoever owns it runs it again.
            raise
        if not isolate:
            raise _FlowRaised from exc
        log.exception("flow failed on MO %s", msg.sms_id)
        decisions.finish(msg, None, "failed", f"{exc.__class__.__name__}: {exc}"[:2000])
        return "failed"
    decisions.record(msg, chosen, outcome, reply, follow_ups)
    return outcome.status


_UNMATCHED = Outcome("unmatched", status="ignored")


@contextmanager
def _savepoint(conn: Connection, name: str, *, release: bool = True) -> Iterator[None]:
    """A SAVEPOINT said directly: SQLAlchemy's own costs two compilations each time.

    ``release=False`` keeps it once the block succeeds: it still undoes the block if the
    enclosing transaction is rolled back to it, and a later savepoint of the same name shadows it.
    """
    conn.exec_driver_sql(f"SAVEPOINT {name}")
    try:
        yield
    except BaseException:
        conn.exec_driver_sql(f"ROLLBACK TO SAVEPOINT {name}")
        conn.exec_driver_sql(f"RELEASE SAVEPOINT {name}")
        raise
    if release:
        conn.exec_driver_sql(f"RELEASE SAVEPOINT {name}")
