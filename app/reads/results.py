"""A flow's results (one Struct per kind) with its decisions by outcome, and its entries for export."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import Connection, Row, Table, exists, func, select
from sqlalchemy.orm import DeclarativeBase, aliased

from app.db.flow_models import Code, Conversation, Redemption, Subscription, SurveyAnswer, Vote
from app.db.models import Contact, FlowEvent, OutboxMessage, utcnow
from app.flows.kinds import subscription, survey
from app.flows.kinds.base import Flow
from app.flows.kinds.code import CodeFlow
from app.flows.kinds.fallback import FallbackFlow
from app.flows.kinds.optout import OptoutFlow
from app.flows.kinds.reply import ReplyFlow
from app.flows.kinds.subscription import SubscriptionFlow
from app.flows.kinds.survey import SurveyFlow
from app.flows.kinds.survey_steps import ChoiceStep, IntegerStep, Step
from app.flows.kinds.vote import VoteFlow
from app.flows.loader import LoadedFlow
from app.reads.series import counts_per_hour, hour_window


class NoResults(msgspec.Struct, frozen=True):
    """Kinds that keep nothing but their events (autoreply)."""


class VoteOption(msgspec.Struct, frozen=True):
    option: str
    label: str
    votes: int


class VoteResults(msgspec.Struct, frozen=True):
    tally: list[VoteOption]  # in the order of the flow file's options
    total: int
    voters: int


class Entrant(msgspec.Struct, frozen=True):
    sender: str
    entries: int


TOP_ENTRANTS = 10  # a contest's results list the phones with most entries, this many


class CodeResults(msgspec.Struct, frozen=True, kw_only=True):
    redemptions: int
    participants: int
    codes_imported: int | msgspec.UnsetType = msgspec.UNSET  # only for a list of codes
    codes_left: int | msgspec.UnsetType = msgspec.UNSET
    top_entrants: list[Entrant]  # the TOP_ENTRANTS with most entries, ties by phone


class Subscriber(msgspec.Struct, frozen=True):
    phone: str
    since: datetime | None


class SubscriptionResults(msgspec.Struct, frozen=True):
    list_id: str = msgspec.field(name="list")
    counts: dict[str, int]  # members by status: pending, active, left
    subscribers: list[Subscriber]  # active and not under STOP, longest first (unless left out)


class ValueCount(msgspec.Struct, frozen=True):
    value: str
    count: int


class StepResults(msgspec.Struct, frozen=True, kw_only=True):
    """One step: for a choice or integer how often each answer was given (``distribution``), for
    text, phone or email the answers themselves, oldest first (``answers``; a page reads only the
    latest, ``kind_results(latest=...)``)."""

    id: str
    type: str
    answered: int
    distribution: list[ValueCount] | msgspec.UnsetType = msgspec.UNSET
    answers: list[str] | msgspec.UnsetType = msgspec.UNSET


class SurveyResults(msgspec.Struct, frozen=True):
    conversations: dict[str, int]  # by status; active ones past their deadline count as expired
    started: int
    steps: list[StepResults]


class OptoutResults(msgspec.Struct, frozen=True):
    opted_out: int  # phones under the global STOP


class ReplyResults(msgspec.Struct, frozen=True):
    tag: str
    sent: int
    answers: dict[str, int]  # by answer class
    unanswered: int


class FallbackResults(msgspec.Struct, frozen=True):
    outcomes: dict[str, int]


KindResults = (
    VoteResults
    | CodeResults
    | SubscriptionResults
    | SurveyResults
    | OptoutResults
    | ReplyResults
    | FallbackResults
    | NoResults
)


class FlowResults(msgspec.Struct, frozen=True):
    """A flow's results; ``results`` is the Struct of its kind (untagged: ``kind`` says which)."""

    flow: str
    kind: str
    name: str
    hash: str
    results: KindResults
    outcomes: dict[str, int]
    """Decisions in the event log by outcome (accepted, invalid, closed, ...)."""
    events: int


def flow_results(conn: Connection, flow: LoadedFlow) -> FlowResults:
    """The kind's results and the event counts."""
    rows = conn.execute(
        select(FlowEvent.outcome, func.count())
        .where(FlowEvent.flow_id == flow.id)
        .group_by(FlowEvent.outcome)
        .order_by(FlowEvent.outcome)
    ).all()
    outcomes = {outcome: int(count) for outcome, count in rows}
    return FlowResults(
        flow=flow.id,
        kind=flow.kind,
        name=flow.definition.name or flow.id,
        hash=flow.hash,
        results=kind_results(conn, flow.definition),
        outcomes=outcomes,
        events=sum(outcomes.values()),
    )


def kind_results(
    conn: Connection, definition: Flow, *, members: bool = True, latest: int | None = None
) -> KindResults:
    """What the flow's kind counts: a vote's tally, a contest's entries, a list's members...
    ``members=False`` counts a list's members without listing them (pages read them a page at a
    time, ``app.reads.members``); ``latest`` keeps only that many of the newest answers of each
    survey text step (still oldest first; ``answered`` counts them all), None keeps every one."""
    if isinstance(definition, SubscriptionFlow):
        return _subscription(conn, definition, members)
    if isinstance(definition, SurveyFlow):
        return _survey(conn, definition, latest)
    for kind, read in _READERS:
        if isinstance(definition, kind):
            return read(conn, definition)
    return NoResults()


def _vote(conn: Connection, flow: Any) -> VoteResults:
    assert isinstance(flow, VoteFlow)
    mine = Vote.flow_id == flow.id
    counts = dict(conn.execute(select(Vote.option, func.count()).where(mine).group_by(Vote.option)).all())
    tally = [VoteOption(o, flow.vote.labels.get(o, o), int(counts.get(o, 0))) for o in flow.vote.options]
    voters = conn.scalar(select(func.count(func.distinct(Vote.sender))).where(mine))
    return VoteResults(tally, total=sum(t.votes for t in tally), voters=int(voters or 0))


def _code(conn: Connection, flow: Any) -> CodeResults:
    assert isinstance(flow, CodeFlow)
    mine = Redemption.flow_id == flow.id
    # A phone's n-th entry is stored with seq n (app.flows.kinds.code: the unique key (flow, phone,
    # seq) takes seq from the entries before it), and entries are never deleted (erasure renames
    # the phone, keeping seq): so each phone has one entry with seq 1, and its last entry's seq is
    # its number of entries. Entrants are counted in the same pass as entries, and the top ten
    # walk the index (flow_id, seq DESC, sender) from the top instead of grouping every entry.
    counted = conn.execute(select(func.count(), func.count().filter(Redemption.seq == 1)).where(mine)).one()
    total, participants = int(counted[0]), int(counted[1])
    later = aliased(Redemption)
    last = ~exists().where(
        later.flow_id == Redemption.flow_id, later.sender == Redemption.sender, later.seq > Redemption.seq
    )
    top = conn.execute(
        select(Redemption.sender, Redemption.seq)
        .where(mine, last)
        .order_by(Redemption.seq.desc(), Redemption.sender)
        .limit(TOP_ENTRANTS)
    ).all()
    listed: dict[str, Any] = {}
    if flow.code.source == "list":
        imported = int(conn.scalar(select(func.count()).where(Code.flow_id == flow.id)) or 0)
        listed = {"codes_imported": imported, "codes_left": max(imported - total, 0)}
    return CodeResults(
        redemptions=total,
        participants=participants,
        top_entrants=[Entrant(s, int(n)) for s, n in top],
        **listed,
    )


def _subscription(conn: Connection, flow: SubscriptionFlow, members: bool) -> SubscriptionResults:
    counts = dict(
        conn.execute(
            select(Subscription.status, func.count())
            .where(Subscription.list_id == flow.list_id)
            .group_by(Subscription.status)
        ).all()
    )
    active = (
        conn.execute(
            subscription.reachable(flow.list_id)
            .add_columns(Subscription.confirmed_at)
            .order_by(Subscription.confirmed_at, Subscription.phone)  # ties in a stable order
        ).all()
        if members
        else []
    )
    return SubscriptionResults(
        flow.list_id,
        counts={s: int(counts.get(s, 0)) for s in subscription.STATUSES},
        subscribers=[Subscriber(phone, since) for phone, since in active],
    )


def _survey(conn: Connection, flow: SurveyFlow, latest: int | None) -> SurveyResults:
    counts = dict(
        conn.execute(
            select(Conversation.status, func.count())
            .where(Conversation.flow_id == flow.id)
            .group_by(Conversation.status)
        ).all()
    )
    overdue = int(
        conn.scalar(
            select(func.count()).where(
                Conversation.flow_id == flow.id,
                Conversation.status == "active",
                Conversation.expires_at <= utcnow(),
            )
        )
        or 0
    )
    conversations = {s: int(counts.get(s, 0)) for s in survey.STATUSES}
    conversations["active"] -= overdue
    conversations["expired"] += overdue
    steps = [_step(conn, flow.id, step, latest) for step in flow.survey.steps]
    return SurveyResults(conversations, started=sum(conversations.values()), steps=steps)


def _step(conn: Connection, flow_id: str, step: Step, latest: int | None) -> StepResults:
    mine = (SurveyAnswer.flow_id == flow_id, SurveyAnswer.step == step.id)
    kind = str(type(step).__struct_config__.tag)
    if isinstance(step, ChoiceStep | IntegerStep):
        rows = conn.execute(
            select(SurveyAnswer.value, func.count()).where(*mine).group_by(SurveyAnswer.value)
        )
        given = {value: int(n) for value, n in rows.all()}
        order = list(step.choices) if isinstance(step, ChoiceStep) else sorted(given, key=int)
        distribution = [ValueCount(v, given.get(v, 0)) for v in order]
        return StepResults(id=step.id, type=kind, answered=sum(given.values()), distribution=distribution)
    if latest is None:
        values = list(conn.scalars(select(SurveyAnswer.value).where(*mine).order_by(SurveyAnswer.id)))
        return StepResults(id=step.id, type=kind, answered=len(values), answers=values)
    # Only what a page shows: the newest from the index (flow_id, step, id), the rest counted there.
    answered = int(conn.scalar(select(func.count()).where(*mine)) or 0)
    newest = conn.scalars(
        select(SurveyAnswer.value).where(*mine).order_by(SurveyAnswer.id.desc()).limit(latest)
    )
    return StepResults(id=step.id, type=kind, answered=answered, answers=list(newest)[::-1])


def _optout(conn: Connection, flow: Any) -> OptoutResults:
    count = conn.scalar(select(func.count()).select_from(Contact).where(Contact.opted_out_at.is_not(None)))
    return OptoutResults(int(count or 0))


def _reply(conn: Connection, flow: Any) -> ReplyResults:
    """How the messages sent with the flow's tag were answered, by answer class."""
    assert isinstance(flow, ReplyFlow)
    counts = dict(
        conn.execute(
            select(OutboxMessage.answer, func.count())
            .where(OutboxMessage.tag == flow.reply.tag)
            .group_by(OutboxMessage.answer)
        ).all()
    )
    answers = {name: int(counts.get(name, 0)) for name in flow.reply.answers}
    return ReplyResults(flow.reply.tag, sum(counts.values()), answers, int(counts.get(None, 0)))


def _fallback(conn: Connection, flow: Any) -> FallbackResults:
    rows = conn.execute(
        select(FlowEvent.outcome, func.count())
        .where(FlowEvent.flow_id == flow.id)
        .group_by(FlowEvent.outcome)
    ).all()
    return FallbackResults({outcome: int(count) for outcome, count in rows})


_READERS: tuple[tuple[type[Flow], Callable[[Connection, Any], KindResults]], ...] = (
    (VoteFlow, _vote),
    (CodeFlow, _code),
    (OptoutFlow, _optout),
    (ReplyFlow, _reply),
    (FallbackFlow, _fallback),
)


class Activity(msgspec.Struct, frozen=True):
    """What a flow did per hour over the last days: ``series[name][i]`` counts the hour that starts
    ``i`` hours after ``start`` (redemptions; joins and leaves; hits). Empty for kinds shown otherwise."""

    start: datetime
    hours: int
    series: dict[str, list[int]]


def flow_activity(conn: Connection, flow: LoadedFlow, now: datetime, days: int = 7) -> Activity:
    start, hours = hour_window(now, days)
    definition = flow.definition
    series: dict[str, list[int]] = {}
    if isinstance(definition, CodeFlow):
        series["redemptions"] = counts_per_hour(
            conn, Redemption.created_at, start, hours, Redemption.flow_id == flow.id
        )
    elif isinstance(definition, SubscriptionFlow):
        on_list = Subscription.list_id == definition.list_id
        series["joins"] = counts_per_hour(conn, Subscription.confirmed_at, start, hours, on_list)
        series["leaves"] = counts_per_hour(conn, Subscription.left_at, start, hours, on_list)
    elif flow.kind in ("autoreply", "fallback"):
        series["hits"] = counts_per_hour(
            conn, FlowEvent.created_at, start, hours, FlowEvent.flow_id == flow.id
        )
    return Activity(start, hours, series)


def _table(model: type[DeclarativeBase]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


# The table holding each kind's entries; other kinds export their events.
_ENTRIES = {
    "vote": _table(Vote),
    "code": _table(Redemption),
    "subscription": _table(Subscription),
    "survey": _table(SurveyAnswer),
}


class EntriesPage(msgspec.Struct, frozen=True):
    """Entries in primary-key order from just after ``after``; ``next_cursor`` (the last row's key,
    as text) reads on, None once the page was the last."""

    columns: list[str]
    items: list[Row[Any]]  # rows read by column name: ``row.sender``
    next_cursor: str | None


def _entries_table(flow: LoadedFlow) -> Table:
    return _ENTRIES.get(flow.kind, _table(FlowEvent))


def entry_columns(flow: LoadedFlow) -> list[str]:
    """The columns of the flow's entries: its kind's table, or the event log for other kinds."""
    return [c.name for c in _entries_table(flow).columns]


def entries_page(
    conn: Connection, flow: LoadedFlow, *, after: str | None = None, limit: int = 1000
) -> EntriesPage:
    """One keyset page of the flow's entries."""
    table = _entries_table(flow)
    mine = table.c.flow_id == flow.id
    if isinstance(flow.definition, SubscriptionFlow):  # a list may be fed by several flows: all of it
        mine = table.c.list_id == flow.definition.list_id
    # The key's other columns (a subscription's list_id) are fixed by the filter, so the last
    # orders the page alone: an id, or a member's phone.
    key = list(table.primary_key.columns)[-1]
    query = select(table).where(mine).order_by(key).limit(limit)
    if after is not None:
        query = query.where(key > key.type.python_type(after))
    rows = list(conn.execute(query).all())
    more = bool(rows) and len(rows) == limit
    return EntriesPage(entry_columns(flow), rows, str(rows[-1]._mapping[key]) if more else None)
