"""Reading stored draws: every round of a flow, a round's record, and its picks with phones.

The seed of a round that is committed but not drawn stays hidden: only its commitment shows.
"""

from __future__ import annotations

from datetime import datetime

import msgspec
from sqlalchemy import Connection, select

from app.db.draw_models import Draw, DrawPick
from app.draws.entries import DrawError, DrawRule
from app.draws.record import DrawRecord, decode


class DrawNotFound(DrawError):
    """The flow has no such round (or no draw yet)."""

    status_code = 404


class RoundSummary(msgspec.Struct, frozen=True):
    flow: str
    round: int
    status: str
    """``committed`` (the seed's hash is stored, nobody picked yet) or ``drawn``."""
    reason: str | None
    drawn_by: str
    committed_at: datetime
    drawn_at: datetime | None
    winners: int
    reserves: int
    entries_count: int | None
    entries_sha256: str | None
    seed_sha256: str
    seed: str | None
    seed_source: str
    algorithm: str
    rule: DrawRule


class StoredPick(msgspec.Struct, frozen=True):
    position: int
    role: str
    entry_id: str
    phone: str
    outbox_id: int | None


def list_rounds(conn: Connection, flow_id: str) -> list[RoundSummary]:
    """Every round of the flow's draws, the first first."""
    rows = conn.execute(select(Draw).where(Draw.flow_id == flow_id).order_by(Draw.round)).all()
    return [
        RoundSummary(
            flow=r.flow_id,
            round=r.round,
            status=r.status,
            reason=r.reason,
            drawn_by=r.created_by,
            committed_at=r.committed_at,
            drawn_at=r.drawn_at,
            winners=r.winners,
            reserves=r.reserves,
            entries_count=r.entries_count,
            entries_sha256=r.entries_sha256,
            seed_sha256=r.seed_sha256,
            seed=r.seed if r.status == "drawn" else None,
            seed_source=r.seed_source,
            algorithm=r.algorithm,
            rule=msgspec.json.decode(r.rule, type=DrawRule),
        )
        for r in rows
    ]


def _draw_id(conn: Connection, flow_id: str, round_: int | None) -> tuple[int, int]:
    """The id and round of the flow's given round, or of its latest drawn one."""
    query = select(Draw.id, Draw.round, Draw.status).where(Draw.flow_id == flow_id)
    if round_ is not None:
        query = query.where(Draw.round == round_)
    row = conn.execute(query.order_by(Draw.round.desc()).limit(1)).first()
    if row is None:
        which = f"no round {round_}" if round_ is not None else "no draw yet"
        raise DrawNotFound(f"flow {flow_id!r} has {which}; `smsflows draw list {flow_id}` shows its rounds")
    if row.status != "drawn":
        raise DrawError(
            f"round {row.round} of flow {flow_id!r} was committed but never drawn (the draw stopped "
            'before its result was stored); draw a further round with --new-round --reason "..."'
        )
    return int(row.id), int(row.round)


def stored_record(conn: Connection, flow_id: str, round_: int | None = None) -> DrawRecord:
    """The record of the round (default: the latest drawn), as it was exported."""
    draw_id, _ = _draw_id(conn, flow_id, round_)
    raw = conn.scalar(select(Draw.record).where(Draw.id == draw_id))
    assert raw is not None
    return decode(raw.encode(), f"the stored record of flow {flow_id!r}")


def picks(conn: Connection, flow_id: str, round_: int | None = None) -> tuple[int, int, list[StoredPick]]:
    """The draw's id, its round and its winners and reserves, with their whole phone numbers."""
    draw_id, found = _draw_id(conn, flow_id, round_)
    rows = conn.execute(
        select(DrawPick.position, DrawPick.role, DrawPick.entry_id, DrawPick.phone, DrawPick.outbox_id)
        .where(DrawPick.draw_id == draw_id)
        .order_by(DrawPick.position)
    ).all()
    return draw_id, found, [StoredPick(*r) for r in rows]
