"""The overview: today's totals, queue depths, what needs attention, each flow's state and figure."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

import msgspec
from sqlalchemy import Connection, func, select

from app.db.flow_models import Conversation, Redemption, Subscription, Vote
from app.db.models import FlowEvent, InboundMessage, OutboxMessage
from app.flows.loader import LoadedFlow
from app.reads.queues import QueueCounts, queue_counts
from app.reads.series import first_id_since

WARSAW = ZoneInfo("Europe/Warsaw")


class FlowState(msgspec.Struct, frozen=True):
    id: str
    name: str
    kind: str
    state: str
    """scheduled, open or closed: judged by the flow's window at ``now``."""
    opens: datetime | None
    closes: datetime | None
    figure: int
    figure_label: str
    """What ``figure`` counts: votes, redemptions, members, completed, events."""


class Overview(msgspec.Struct, frozen=True):
    today_start: datetime
    inbound_today: int
    outbound_today: int
    queues: QueueCounts
    """The outbox by status, the quarantine, failed messages: the shared queue read."""
    flows: list[FlowState]


def today_start(now: datetime) -> datetime:
    """Midnight in Warsaw, the start of "today" for people reading the dashboard."""
    local = now.astimezone(WARSAW)
    return datetime.combine(local.date(), time(0), tzinfo=WARSAW)


def _since(conn: Connection, model: type[InboundMessage] | type[OutboxMessage], since: datetime) -> int:
    at = model.received_at if model is InboundMessage else model.created_at  # type: ignore[union-attr]
    first = first_id_since(conn, model.id, at, since)
    if first is None:
        return 0
    return int(conn.execute(select(func.count()).where(model.id >= first)).scalar() or 0)


def _figure(conn: Connection, flow: LoadedFlow) -> tuple[int, str]:
    kind, fid = flow.kind, flow.id
    if kind == "vote":
        q = select(func.count()).where(Vote.flow_id == fid)
        label = "votes"
    elif kind == "code":
        q = select(func.count()).where(Redemption.flow_id == fid)
        label = "redemptions"
    elif kind == "subscription":
        list_id = getattr(flow.definition, "list_id", None) or fid
        q = select(func.count()).where(Subscription.list_id == list_id, Subscription.status == "active")
        label = "members"
    elif kind == "survey":
        q = select(func.count()).where(Conversation.flow_id == fid, Conversation.status == "completed")
        label = "completed"
    else:
        q = select(func.count()).where(FlowEvent.flow_id == fid)
        label = "messages"
    return int(conn.execute(q).scalar() or 0), label


def flow_state(flow: LoadedFlow, now: datetime) -> tuple[str, datetime | None, datetime | None]:
    lo, hi = flow.definition.window()
    opens = None if lo.year == 1 else lo
    closes = None if hi.year == 9999 else hi
    if now < lo:
        return "scheduled", opens, closes
    return ("open" if now < hi else "closed"), opens, closes


def flow_states(
    conn: Connection, flows: list[LoadedFlow], now: datetime, figures: dict[str, int] | None = None
) -> list[FlowState]:
    """Each flow's state and headline figure, by id; ``figures`` are those the caller knows
    already (a vote's live tally), by flow id."""
    states = []
    for flow in sorted(flows, key=lambda f: f.id):
        state, opens, closes = flow_state(flow, now)
        known = figures is not None and flow.id in figures
        figure, label = (figures[flow.id], "votes") if figures is not None and known else _figure(conn, flow)
        states.append(
            FlowState(
                id=flow.id,
                name=flow.definition.name or flow.id,
                kind=flow.kind,
                state=state,
                opens=opens,
                closes=closes,
                figure=figure,
                figure_label=label,
            )
        )
    return states


def overview(
    conn: Connection,
    flows: list[LoadedFlow],
    now: datetime,
    figures: dict[str, int] | None = None,
    *,
    today: tuple[int, int] | None = None,
    cap: int | None = None,
) -> Overview:
    """``today``: messages in and out since midnight when the caller counted them already;
    ``cap``: queue counts stop there (see ``queue_counts``)."""
    start = today_start(now)
    inbound, outbound = (
        today
        if today is not None
        else (_since(conn, InboundMessage, start), _since(conn, OutboxMessage, start))
    )
    return Overview(
        today_start=start,
        inbound_today=inbound,
        outbound_today=outbound,
        queues=queue_counts(conn, now, cap),
        flows=flow_states(conn, flows, now, figures),
    )
