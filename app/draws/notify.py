"""Telling the winners: one SMS each through the outbox, tagged so their answer ("TAK") is
tied to the message and taken by a ``reply`` flow like any other answer.

Each message's idempotency key names the draw and the entry, so telling them again queues
nothing new; a phone that sent STOP since the draw is skipped and said so.
"""

from __future__ import annotations

from datetime import datetime

import msgspec
from sqlalchemy import Connection, update

from app.db.audit import record_in
from app.db.draw_models import DrawPick
from app.draws.rounds import picks
from app.errors import InvalidSend
from app.flows.loader import FlowSet
from app.outbox.sending import NewMessage, queue


class Notified(msgspec.Struct, frozen=True):
    position: int
    role: str
    entry_id: str
    outbox_id: int | None
    """None when the message could not be queued; ``skipped`` says why."""
    created: bool
    skipped: str | None = None


class NotifyRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The JSON body of ``POST /api/flows/{id}/draws/{round}/notify``."""

    text: str
    flow: str | None = None
    """The ``reply`` flow that takes the answers (its tag is the message's tag)."""
    tag: str | None = None
    reserves: bool = False
    """Tell the reserves too (normally they are told only when a winner drops out)."""


def notify(
    conn: Connection,
    flow_id: str,
    round_: int | None,
    req: NotifyRequest,
    flows: FlowSet | None,
    now: datetime,
    actor: str,
) -> list[Notified]:
    """Queue the message to the round's winners (and reserves when asked), in the caller's
    transaction."""
    draw_id, found, chosen = picks(conn, flow_id, round_)
    done = []
    for p in chosen:
        if p.role == "reserve" and not req.reserves:
            continue
        message = NewMessage(
            to=p.phone,
            text=req.text,
            tag=req.tag,
            flow=req.flow,
            data={"draw": flow_id, "round": found, "entry": p.entry_id, "role": p.role},
            idempotency_key=f"draw:{draw_id}:{p.entry_id}",
        )
        try:
            queued = queue(conn, message, now, flows.flows if flows is not None else None)
        except InvalidSend as exc:
            if str(exc).startswith(("flow:", "tag:")):
                raise
            done.append(Notified(p.position, p.role, p.entry_id, None, False, skipped=str(exc)))
            continue
        mine = (DrawPick.draw_id == draw_id) & (DrawPick.entry_id == p.entry_id)
        conn.execute(update(DrawPick).where(mine).values(outbox_id=queued.id))
        done.append(Notified(p.position, p.role, p.entry_id, queued.id, queued.created))
    queued_now = [n.entry_id for n in done if n.created]
    if queued_now:
        record_in(
            conn,
            actor=actor,
            action="draws.notify",
            target=f"{flow_id} round {found}",
            detail={"told": queued_now, "tag": req.tag, "flow": req.flow},
        )
    return done
