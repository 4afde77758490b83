"""Routing: which flow takes a message. STOP-like keywords first, then an answer to a message we
sent (its tag's ``reply`` flow), then the phone's open conversation, then the keyword index by
number and keyword, then the number's fallback."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Connection

from app.flows.kinds.base import Context, Inbound
from app.flows.loader import FlowSet, LoadedFlow
from app.flows.messages import Answered


class Route(NamedTuple):
    """The flow that takes a message (None: no flow does) and the context it will act in."""

    flow: LoadedFlow | None
    ctx: Context


def route(
    conn: Connection,
    flows: FlowSet,
    msg: Inbound,
    *,
    folded: list[str],
    now: datetime,
    answered: Answered | None = None,
    conversations: bool = True,
) -> Route:
    """The flow that takes the message; ``conversations=False`` when the phone is known to have
    no open conversation."""
    ctx = Context(conn=conn, msg=msg, flow_hash="", words=folded, keyword=None, now=now, answered=answered)
    matched = flows.index.lookup(msg.number, folded[0]) if folded else []
    at = msg.sent_at
    chosen = _pick(matched, at)
    if answered is not None:
        taker = flows.answer_flow(answered.tag, msg.number) if answered.tag else None
        # An answer to a tagged message goes to its reply flow; only STOP-like keywords come first.
        if taker is not None and (chosen is None or not type(chosen.definition).interrupts):
            ctx.flow_hash = taker.hash
            return Route(taker, ctx)
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
                return Route(owner, ctx)
    if chosen is not None:
        ctx.keyword, ctx.keyword_flow, ctx.flow_hash = folded[0], chosen.id, chosen.hash
        return Route(chosen, ctx)
    fallback = flows.fallback_for(msg.number)
    if fallback is not None:
        ctx.flow_hash = fallback.hash
    return Route(fallback, ctx)


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
