"""What a flow's event log says about it: decisions by outcome, and the file versions behind them."""

from __future__ import annotations

import msgspec
from sqlalchemy import Connection, func, select

from app.db.models import FlowEvent
from app.reads.series import unindexed

EventCounts = dict[tuple[str, str | None], int]
"""A flow's events by outcome and by the hash of the file that decided them."""


class FlowLog(msgspec.Struct, frozen=True):
    outcomes: dict[str, int]
    """Decisions by outcome: accepted, invalid, repeat, closed..."""
    hashes: dict[str, int]
    """Decisions by the hash of the flow file that made them: the versions the results come from."""


def count_events(
    conn: Connection, flow_id: str, after_id: int = 0, through: int | None = None
) -> tuple[EventCounts, int]:
    """The flow's events with an id above ``after_id`` (and up to ``through``) by outcome and hash,
    and the highest id seen (or ``after_id``). One pass: from the start through the index on
    (flow, outcome, hash) alone, after an id through the key range of the new rows."""
    flow = FlowEvent.flow_id == flow_id if after_id == 0 else unindexed(FlowEvent.flow_id) == flow_id  # type: ignore[arg-type]
    upto = [] if through is None else [FlowEvent.id <= through]
    rows = conn.execute(
        select(FlowEvent.outcome, FlowEvent.flow_hash, func.count(), func.max(FlowEvent.id))
        .where(flow, FlowEvent.id > after_id, *upto)
        .group_by(FlowEvent.outcome, FlowEvent.flow_hash)
    ).all()
    counts = {(str(outcome), flow_hash): int(n) for outcome, flow_hash, n, _ in rows}
    return counts, max([after_id, *(int(m) for *_, m in rows)])


def log_of(counts: EventCounts) -> FlowLog:
    outcomes: dict[str, int] = {}
    hashes: dict[str, int] = {}
    for (outcome, flow_hash), n in counts.items():
        outcomes[outcome] = outcomes.get(outcome, 0) + n
        hashes[flow_hash or "-"] = hashes.get(flow_hash or "-", 0) + n
    return FlowLog(outcomes=dict(sorted(outcomes.items())), hashes=hashes)


def flow_log(conn: Connection, flow_id: str) -> FlowLog:
    return log_of(count_events(conn, flow_id)[0])
