"""Running a draw: gather the entries, commit the seed, pick, and store the record.

A round is taken by inserting its row, whose unique key (flow, round) lets one of two draws
started at once through; the seed's commitment is stored (and committed) before anyone is
picked, and the seed is revealed only with the result. A further round needs an explicit
``new_round`` and a reason, and every round stays stored.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Annotated

import msgspec
from sqlalchemy import Connection, Row, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.audit import record_in
from app.db.draw_models import Draw, DrawPick
from app.db.models import utcnow
from app.draws.canonical import list_sha256, mask, seed_sha256
from app.draws.entries import DrawError, DrawRule, Entry, Per, eligible, make_rule
from app.draws.record import FORMAT, DrawRecord, Pick, RecordEntry, encode
from app.draws.selection import ALGORITHM, pick
from app.flows.loader import LoadedFlow

MAX_PICKS = 10_000


class DrawRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What to draw and from whom (the JSON body of ``POST /api/flows/{id}/draws`` too)."""

    winners: Annotated[int, msgspec.Meta(ge=1, le=MAX_PICKS)]
    reserves: Annotated[int, msgspec.Meta(ge=0, le=MAX_PICKS)] = 0
    seed: Annotated[str, msgspec.Meta(min_length=1, max_length=1000)] | None = None
    """A seed nobody knew beforehand (e.g. a public lottery result); generated when left out."""
    per: Per = "phone"
    since: datetime | None = None
    until: datetime | None = None
    exclude: list[str] = []
    """Numbers that cannot win (staff), besides every phone that sent STOP."""
    new_round: bool = False
    reason: Annotated[str, msgspec.Meta(max_length=1000)] | None = None


class DrawAlreadyMade(DrawError):
    """The round asked for is taken; the message says how to draw a further one."""

    status_code = 409


async def run_draw(
    engine: AsyncEngine,
    flow: LoadedFlow,
    req: DrawRequest,
    actor: str,
    key: str | None,
    *,
    client: str | None = None,
) -> DrawRecord:
    """Draw and store the round; ``client`` (the address a dashboard request came from) goes on
    its audit entry."""
    if req.new_round and not (req.reason and req.reason.strip()):
        raise DrawError('a further round needs a reason: --new-round --reason "why"')
    rule = make_rule(flow, req.per, req.since, req.until, req.exclude, key)
    async with engine.connect() as conn:
        latest = await conn.run_sync(_latest, flow.id)
        found = await conn.run_sync(lambda c: eligible(c, flow, rule, req.exclude, key))
    round_ = _next_round(flow.id, latest, req.new_round)
    if not found:
        raise DrawError(f"flow {flow.id!r} has no {rule.entries} that can win under this rule")
    seed, source = (req.seed, "given") if req.seed is not None else (secrets.token_hex(32), "generated")
    committed_at = utcnow()
    draw_id = await _commit(engine, flow.id, round_, req, rule, seed, source, actor, committed_at)
    record = _draw(flow, round_, req, rule, found, seed, source, actor, committed_at)
    async with engine.begin() as conn:
        await conn.run_sync(_store, draw_id, record, found, client)
    return record


def _latest(conn: Connection, flow_id: str) -> Row[int, str, datetime] | None:
    return conn.execute(
        select(Draw.round, Draw.created_by, Draw.committed_at)
        .where(Draw.flow_id == flow_id)
        .order_by(Draw.round.desc())
        .limit(1)
    ).first()


def _next_round(flow_id: str, latest: Row[int, str, datetime] | None, new_round: bool) -> int:
    if latest is None:
        return 1
    if not new_round:
        raise _taken(flow_id, latest)
    return int(latest.round) + 1


def _taken(flow_id: str, latest: Row[int, str, datetime]) -> DrawAlreadyMade:
    when = latest.committed_at.isoformat(timespec="seconds")
    return DrawAlreadyMade(
        f"flow {flow_id!r} already has round {latest.round}, drawn by {latest.created_by} at {when}; "
        f"`smsflows draw list {flow_id}` shows every round. To draw again, say why: "
        '--new-round --reason "..."'
    )


async def _commit(
    engine: AsyncEngine,
    flow_id: str,
    round_: int,
    req: DrawRequest,
    rule: DrawRule,
    seed: str,
    source: str,
    actor: str,
    now: datetime,
) -> int:
    row = {
        "flow_id": flow_id,
        "round": round_,
        "reason": req.reason,
        "status": "committed",
        "rule": msgspec.json.encode(rule).decode(),
        "algorithm": ALGORITHM,
        "seed": seed,
        "seed_source": source,
        "seed_sha256": seed_sha256(seed),
        "winners": req.winners,
        "reserves": req.reserves,
        "created_by": actor,
        "committed_at": now,
    }
    try:
        # Insert, not read-then-insert: the unique key decides between two draws at once.
        async with engine.begin() as conn:
            return int((await conn.execute(insert(Draw).returning(Draw.id), row)).scalar_one())
    except IntegrityError:
        async with engine.connect() as conn:
            latest = await conn.run_sync(_latest, flow_id)
        assert latest is not None
        raise _taken(flow_id, latest) from None


def _draw(
    flow: LoadedFlow,
    round_: int,
    req: DrawRequest,
    rule: DrawRule,
    found: list[Entry],
    seed: str,
    source: str,
    actor: str,
    committed_at: datetime,
) -> DrawRecord:
    ids = [e.id for e in found]
    positions = pick(seed, len(ids), req.winners + req.reserves)
    picks = [Pick(n, found[p].id, mask(found[p].phone)) for n, p in enumerate(positions, start=1)]
    return DrawRecord(
        format=FORMAT,
        flow=flow.id,
        flow_name=flow.definition.name or flow.id,
        flow_kind=flow.kind,
        flow_hash=flow.hash,
        round=round_,
        reason=req.reason,
        rule=rule,
        algorithm=ALGORITHM,
        entries_count=len(ids),
        entries_sha256=list_sha256(ids),
        seed=seed,
        seed_source="given" if source == "given" else "generated",
        seed_sha256=seed_sha256(seed),
        committed_at=committed_at,
        drawn_at=utcnow(),
        drawn_by=actor,
        winners=picks[: req.winners],
        reserves=picks[req.winners :],
        entries=[RecordEntry(e.id, mask(e.phone)) for e in found],
    )


def _store(
    conn: Connection, draw_id: int, record: DrawRecord, found: list[Entry], client: str | None
) -> None:
    phones = {e.id: e.phone for e in found}
    winners = {p.id for p in record.winners}
    rows = [
        {
            "draw_id": draw_id,
            "position": p.position,
            "role": "winner" if p.id in winners else "reserve",
            "entry_id": p.id,
            "phone": phones[p.id],
        }
        for p in [*record.winners, *record.reserves]
    ]
    conn.execute(insert(DrawPick), rows)
    record_in(
        conn,
        actor=record.drawn_by,
        action="draws.run",
        target=f"{record.flow} round {record.round}",
        detail={
            "reason": record.reason,
            "entries": record.entries_count,
            "entries_sha256": record.entries_sha256,
            "seed_sha256": record.seed_sha256,
            "winners": [p.id for p in record.winners],
            "reserves": [p.id for p in record.reserves],
        },
        client=client,
    )
    conn.execute(
        update(Draw)
        .where(Draw.id == draw_id)
        .values(
            status="drawn",
            entries_count=record.entries_count,
            entries_sha256=record.entries_sha256,
            record=encode(record).decode(),
            drawn_at=record.drawn_at,
        )
    )
