"""A flow's entries rebuilt from the event log alone, and the same entries read from the live tables.

Both sides come out in one shape, key → value, so that comparing them is a dictionary diff:

- vote: the message a vote came from → (phone, option); a replaced vote moves to the new message;
- code: the message → (phone, code);
- survey: phone → how many surveys it completed;
- subscription: phone → its status on the list (``pending``, ``active``, ``left``), STOP included.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import msgspec
from sqlalchemy import Connection, func, select

from app.db.flow_models import Conversation, Redemption, Subscription, Vote
from app.db.models import FlowEvent
from app.flows.loader import LoadedFlow

Entries = dict[Any, Any]
AUDITED = ("vote", "code", "survey", "subscription")
_LIST_OUTCOMES = {"joined": "active", "confirm_request": "pending", "confirmed": "active", "left": "left"}
_STOP_OUTCOMES = ("opted_out", "already_opted_out")


class Event(msgspec.Struct, frozen=True):
    id: int
    inbound_id: int | None
    sender: str
    flow_id: str | None
    flow_hash: str | None
    outcome: str
    detail: dict[str, Any]


def events(conn: Connection, *where: Any) -> list[Event]:
    rows = conn.execute(
        select(
            FlowEvent.id,
            FlowEvent.inbound_id,
            FlowEvent.sender,
            FlowEvent.flow_id,
            FlowEvent.flow_hash,
            FlowEvent.outcome,
            FlowEvent.detail,
        )
        .where(*where)
        .order_by(FlowEvent.id)
    ).all()
    return [Event(*r[:6], detail=msgspec.json.decode(r[6]) if r[6] else {}) for r in rows]


def list_id(flow: LoadedFlow) -> str:
    spec = getattr(flow.definition, "subscription", None)
    return getattr(spec, "list_id", None) or flow.id


def rebuilt(conn: Connection, flow: LoadedFlow) -> tuple[Entries, dict[Any, str]]:
    """The entries the event log says the flow has, and the version (hash) that made each."""
    if flow.kind == "subscription":
        return _members(conn, list_id(flow))
    log = events(conn, FlowEvent.flow_id == flow.id)
    found: Entries = {}
    made_by: dict[Any, str] = {}
    if flow.kind == "survey":
        done = Counter(e.sender for e in log if e.outcome == "completed")
        return dict(done), {}
    current: dict[str, list[int]] = {}  # phone → the messages its live votes came from
    for e in log:
        if e.inbound_id is None:
            continue
        if flow.kind == "vote" and e.outcome == "replaced":
            for old in current.get(e.sender, [])[:1]:
                found.pop(old, None)
            current[e.sender] = []
        if e.outcome in ("accepted", "replaced"):
            value = e.detail.get("option") if flow.kind == "vote" else e.detail.get("code")
            found[e.inbound_id] = (e.sender, value)
            made_by[e.inbound_id] = e.flow_hash or ""
            current.setdefault(e.sender, []).append(e.inbound_id)
    return found, made_by


def _members(conn: Connection, list_: str) -> tuple[Entries, dict[Any, str]]:
    outcomes = (*_LIST_OUTCOMES, *_STOP_OUTCOMES)
    status: Entries = {}
    made_by: dict[Any, str] = {}
    for e in events(conn, FlowEvent.outcome.in_(outcomes)):
        if e.outcome in _STOP_OUTCOMES:
            left = [s.strip() for s in str(e.detail.get("lists", "")).split(",")]
            if list_ in left and e.sender in status:
                status[e.sender] = "left"
        elif e.detail.get("list") == list_:
            status[e.sender] = _LIST_OUTCOMES[e.outcome]
            made_by[e.sender] = e.flow_hash or ""
    return status, made_by


def live(conn: Connection, flow: LoadedFlow) -> Entries:
    """The same entries as the live tables hold them."""
    if flow.kind == "vote":
        votes = conn.execute(select(Vote.inbound_id, Vote.sender, Vote.option).where(Vote.flow_id == flow.id))
        return {i: (s, o) for i, s, o in votes}
    if flow.kind == "code":
        codes = conn.execute(
            select(Redemption.inbound_id, Redemption.sender, Redemption.code).where(
                Redemption.flow_id == flow.id
            )
        )
        return {i: (s, c) for i, s, c in codes}
    if flow.kind == "survey":
        done = conn.execute(
            select(Conversation.sender, func.count())
            .where(Conversation.flow_id == flow.id, Conversation.status == "completed")
            .group_by(Conversation.sender)
        )
        return {s: int(n) for s, n in done}
    members = conn.execute(
        select(Subscription.phone, Subscription.status).where(Subscription.list_id == list_id(flow))
    )
    return dict(members.tuples().all())


def tally(entries: Entries, kind: str) -> dict[str, int]:
    """The figures a result page shows, from entries of either side."""
    if kind == "vote":
        return dict(sorted(Counter(v[1] for v in entries.values()).items()))
    if kind == "code":
        return {"redemptions": len(entries), "participants": len({v[0] for v in entries.values()})}
    if kind == "survey":
        return {"completed": sum(entries.values()), "phones": len(entries)}
    return dict(sorted(Counter(entries.values()).items()))


def by_version(made_by: dict[Any, str], keys: Iterable[Any]) -> dict[str, int]:
    return dict(sorted(Counter(made_by.get(k, "") for k in keys).items()))
