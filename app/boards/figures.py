"""What a public board shows: a flow's aggregated figures, never a phone number or a text.

Each kind's figures are picked from its results by name (a tally, counts, distributions), so a
field added to a kind's results later stays off the board until it is chosen here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import Connection, func, select

from app.db.models import FlowEvent, utcnow
from app.flows.loader import LoadedFlow
from app.reads.results import kind_results


class Board(msgspec.Struct, frozen=True):
    flow: str
    name: str
    kind: str
    figures: dict[str, Any]
    updated_at: datetime


def _vote(results: dict[str, Any]) -> dict[str, Any]:
    tally = [{"option": t["option"], "label": t["label"], "votes": t["votes"]} for t in results["tally"]]
    return {"tally": tally, "total": results["total"], "voters": results["voters"]}


def _code(results: dict[str, Any]) -> dict[str, Any]:
    keys = ("redemptions", "participants", "codes_imported", "codes_left")
    return {k: results[k] for k in keys if k in results}


def _subscription(results: dict[str, Any]) -> dict[str, Any]:
    return {"counts": dict(results["counts"])}


def _survey(results: dict[str, Any]) -> dict[str, Any]:
    steps = []
    for step in results["steps"]:
        shown = {"id": step["id"], "type": step["type"], "answered": step["answered"]}
        if "distribution" in step:  # choices and numbers; free-text answers are never shown
            shown["distribution"] = [{"value": d["value"], "count": d["count"]} for d in step["distribution"]]
        steps.append(shown)
    return {"conversations": dict(results["conversations"]), "started": results["started"], "steps": steps}


_PICK = {"vote": _vote, "code": _code, "subscription": _subscription, "survey": _survey}


def board_figures(conn: Connection, flow: LoadedFlow) -> Board:
    pick = _PICK.get(flow.kind)
    if pick is not None:
        figures = pick(msgspec.to_builtins(kind_results(conn, flow.definition, members=False, latest=0)))
    else:  # kinds without results: how many messages each outcome had
        rows = conn.execute(
            select(FlowEvent.outcome, func.count())
            .where(FlowEvent.flow_id == flow.id)
            .group_by(FlowEvent.outcome)
        ).all()
        figures = {"outcomes": {o: int(n) for o, n in sorted(rows)}}
    return Board(
        flow=flow.id,
        name=flow.definition.name or flow.id,
        kind=flow.kind,
        figures=figures,
        updated_at=utcnow(),
    )
