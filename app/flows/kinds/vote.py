"""``vote``: options with aliases, N votes per phone, repeats rejected or replacing the vote.

Exactness does not rest on reads: a vote is the ``seq``-th of its phone, and the unique key
(flow, phone, seq) with seq <= per_sender makes an extra vote impossible, whatever arrives at once.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from sqlalchemy import Table, select, update

from app.db.dialect import insert_each_unless_taken, insert_unless_taken
from app.db.flow_models import Vote
from app.flows.kinds.base import Context, Flow, Outcome
from app.flows.matching import alias_table, check_aliases

VOTES: Table = Vote.__table__  # type: ignore[assignment]


class VoteSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    options: dict[str, list[str]]
    labels: dict[str, str] = {}
    per_sender: Annotated[int, msgspec.Meta(ge=1)] = 1
    on_repeat: Literal["reject", "replace"] = "reject"

    def __post_init__(self) -> None:
        if len(self.options) < 2:
            raise ValueError(
                'options: a vote needs at least two options, e.g. { A = ["ANNA"], B = ["BARTEK"] }'
            )
        check_aliases(self.options, "options", noun="option ")
        for option in self.labels:
            if option not in self.options:
                raise ValueError(f"labels.{option}: no such option (options are {', '.join(self.options)})")
        if self.on_repeat == "replace" and self.per_sender != 1:
            raise ValueError('on_repeat: "replace" works with per_sender = 1 only')

    def aliases(self) -> dict[str, str]:
        return alias_table(self.options)


class VoteReplies(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    accepted: str | None = None
    replaced: str | None = None
    invalid: str | None = None
    repeat: str | None = None
    closed: str | None = None


class VoteFlow(Flow, frozen=True, kw_only=True, tag="vote"):
    vote: VoteSpec
    replies: VoteReplies = VoteReplies()

    def prepare(self, contexts: list[Context]) -> None:
        # One vote per phone: one INSERT for the batch tries every first vote, and the unique
        # key says which were first (an earlier row of the same batch takes the key too).
        if self.vote.per_sender != 1:
            return
        rows = [self._row(ctx, choice, seq=1) for ctx in contexts if (choice := self._choice(ctx))]
        if not rows:
            return
        inserted = insert_each_unless_taken(contexts[0].conn, VOTES, rows, key="inbound_id")
        for ctx in contexts:
            ctx.prepared_insert = ctx.msg.id in inserted

    def handle(self, ctx: Context) -> Outcome:
        choice = self._choice(ctx)
        if choice is None:
            return Outcome("invalid", reply="invalid", variables=self._vars(None))
        if self.vote.per_sender == 1:
            inserted = ctx.prepared_insert
            if inserted is None:  # not prepared: the unique key decides this one vote alone
                inserted = insert_unless_taken(ctx.conn, VOTES, self._row(ctx, choice, seq=1))
            if inserted:
                return Outcome("accepted", reply="accepted", variables=self._vars(choice, 1))
        mine = ctx.conn.execute(
            select(Vote.id, Vote.option)
            .where(Vote.flow_id == self.id, Vote.sender == ctx.msg.sender)
            .order_by(Vote.seq)
        ).all()
        if len(mine) < self.vote.per_sender:
            if not insert_unless_taken(ctx.conn, VOTES, self._row(ctx, choice, seq=len(mine) + 1)):
                # another process took this seq a moment ago
                return Outcome("repeat", reply="repeat", variables=self._vars(choice, len(mine)))
            return Outcome("accepted", reply="accepted", variables=self._vars(choice, len(mine) + 1))
        if self.vote.on_repeat == "replace":
            previous = mine[0].option
            ctx.conn.execute(
                update(Vote)
                .where(Vote.id == mine[0].id)
                .values(
                    option=choice,
                    inbound_id=ctx.msg.id,
                    created_at=ctx.now,
                    message_time=ctx.msg.time,
                    flow_hash=ctx.flow_hash,
                )
            )
            reply = "replaced" if self.replies.replaced is not None else "accepted"
            return Outcome("replaced", reply=reply, variables={**self._vars(choice, 1), "previous": previous})
        return Outcome("repeat", reply="repeat", variables=self._vars(mine[-1].option, len(mine)))

    def _choice(self, ctx: Context) -> str | None:
        return self.vote.aliases().get(ctx.args[0]) if ctx.args else None

    def _row(self, ctx: Context, option: str, seq: int) -> dict[str, Any]:
        return {
            "flow_id": self.id,
            "flow_hash": ctx.flow_hash,
            "sender": ctx.msg.sender,
            "seq": seq,
            "option": option,
            "inbound_id": ctx.msg.id,
            "created_at": ctx.now,
            "message_time": ctx.msg.time,
        }

    def _vars(self, option: str | None, votes: int = 0) -> dict[str, Any]:
        return {
            "option": option or "",
            "label": self.vote.labels.get(option, option) if option else "",
            "votes": votes,
            "per_sender": self.vote.per_sender,
            "votes_left": max(self.vote.per_sender - votes, 0),
            "options": ", ".join(self.vote.options),
        }

    def sample(self) -> dict[str, Any]:
        first = next(iter(self.vote.options))
        return {**self._vars(first, 1), "previous": first}
