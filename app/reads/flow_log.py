"""What a flow's event log says about it: decisions by outcome, and the file versions behind them."""

from __future__ import annotations

import msgspec
from sqlalchemy import Connection, func, select

from app.db.models import FlowEvent


class FlowLog(msgspec.Struct, frozen=True):
    outcomes: dict[str, int]
    """Decisions by outcome: accepted, invalid, repeat, closed..."""
    hashes: dict[str, int]
    """Decisions by the hash of the flow file that made them: the versions the results come from."""


def flow_log(conn: Connection, flow_id: str) -> FlowLog:
    outcomes = conn.execute(
        select(FlowEvent.outcome, func.count())
        .where(FlowEvent.flow_id == flow_id)
        .group_by(FlowEvent.outcome)
    ).all()
    hashes = conn.execute(
        select(FlowEvent.flow_hash, func.count())
        .where(FlowEvent.flow_id == flow_id)
        .group_by(FlowEvent.flow_hash)
    ).all()
    return FlowLog(
        outcomes={str(k): int(v) for k, v in sorted(outcomes)},
        hashes={str(k or "-"): int(v) for k, v in hashes},
    )
