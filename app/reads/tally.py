"""A vote flow as its page shows it: the tally, votes per minute, the latest votes.

``count_votes`` can count only what came after a vote id, so a live page adds the new votes to
what it already knows instead of counting the whole table again.
"""

from __future__ import annotations

from datetime import datetime

import msgspec
from sqlalchemy import Connection, func, select

from app.db.flow_models import Vote
from app.db.models import InboundMessage
from app.reads.series import unindexed


class OptionCount(msgspec.Struct, frozen=True):
    option: str
    label: str
    votes: int


class Tally(msgspec.Struct, frozen=True):
    flow: str
    options: list[OptionCount]
    """In the order of the flow file, so colours stay put between pages and refreshes."""
    total: int
    last_vote_id: int
    counted_at: datetime

    @property
    def rows(self) -> list[tuple[str, int]]:
        """(label, votes) in the flow file's order, as the bar chart takes them."""
        return [(o.label, o.votes) for o in self.options]


class LatestVote(msgspec.Struct, frozen=True):
    at: datetime
    sender: str
    option: str
    text: str | None
    """The SMS as the phone sent it."""


def count_votes(
    conn: Connection, flow_id: str, after_id: int = 0, through: int | None = None
) -> tuple[dict[str, int], int]:
    """Votes per option with an id above ``after_id`` (and up to ``through``), and the highest id
    seen (or ``after_id``)."""
    # From the start the flow's index is the way; after an id, the key range of the new rows is.
    flow = Vote.flow_id == flow_id if after_id == 0 else unindexed(Vote.flow_id) == flow_id
    upto = [] if through is None else [Vote.id <= through]
    rows = conn.execute(
        select(Vote.option, func.count(), func.max(Vote.id))
        .where(flow, Vote.id > after_id, *upto)
        .group_by(Vote.option)
    ).all()
    counts = {option: int(n) for option, n, _ in rows}
    last = max([after_id, *(int(m) for _, _, m in rows)])
    return counts, last


def make_tally(
    flow_id: str, options: list[str], labels: dict[str, str], counts: dict[str, int], last: int, at: datetime
) -> Tally:
    listed = [OptionCount(o, labels.get(o, o), counts.get(o, 0)) for o in options]
    return Tally(
        flow=flow_id, options=listed, total=sum(c.votes for c in listed), last_vote_id=last, counted_at=at
    )


def latest_votes(conn: Connection, flow_id: str, limit: int = 10, recent: int = 50_000) -> list[LatestVote]:
    """The newest votes: looked for among the ``recent`` newest rows first (by key, fast on a
    busy flow), then through the flow's index (a quiet flow among busy ones)."""
    query = (
        select(Vote.created_at, Vote.sender, Vote.option, InboundMessage.text)
        .outerjoin(InboundMessage, InboundMessage.id == Vote.inbound_id)
        .order_by(Vote.id.desc())
        .limit(limit)
    )
    top = conn.execute(select(func.max(Vote.id))).scalar() or 0
    rows = conn.execute(query.where(unindexed(Vote.flow_id) == flow_id, Vote.id > top - recent)).all()
    if len(rows) < limit:
        rows = conn.execute(query.where(Vote.flow_id == flow_id)).all()
    return [LatestVote(at=r[0], sender=r[1], option=r[2], text=r[3]) for r in rows]
