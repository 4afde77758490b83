"""``optout``: the global STOP and START.

STOP leaves every list (on every number: an opt-out is about the phone, not the number), ends an
open conversation, and sets ``contacts.opted_out_at`` so no broadcast reaches the phone. START
clears that mark but rejoins no list: consent to a list is given by joining it again.
Its keywords win even inside a conversation, and no other flow may claim them on its numbers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec
from sqlalchemy import Connection, Table, func, select, update

from app.db.dialect import insert_for
from app.db.flow_models import Conversation, Subscription
from app.db.models import Contact
from app.flows.kinds.base import Context, Flow, Outcome
from app.flows.matching import fold, within_one_edit

CONTACTS: Table = Contact.__table__  # type: ignore[assignment]


class OptoutSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    start_keywords: list[str] = []

    def __post_init__(self) -> None:
        for kw in self.start_keywords:
            folded = fold(kw)
            if not folded or " " in folded:
                raise ValueError(f"start_keywords: {kw!r} must be one word of letters or digits")


class OptoutReplies(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    opted_out: str  # the confirmation the law expects after STOP
    opted_in: str | None = None


class OptoutFlow(Flow, frozen=True, kw_only=True, tag="optout"):
    optout: OptoutSpec = OptoutSpec()
    replies: OptoutReplies

    interrupts = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.starts or self.ends:
            raise ValueError("starts: STOP must work at all times; remove starts and ends")
        stop = {fold(k) for k in self.keywords}
        for kw in self.optout.start_keywords:
            if fold(kw) in stop:
                raise ValueError(f"optout.start_keywords: {kw} is also a STOP keyword; use another word")
        if self.optout.start_keywords and self.replies.opted_in is None:
            raise ValueError(
                'replies.opted_in: start_keywords need a reply, e.g. "Znowu możemy do Ciebie pisać."'
            )

    def all_keywords(self) -> list[str]:
        return [*self.keywords, *self.optout.start_keywords]

    def action(self, word: str | None) -> Literal["stop", "start"]:
        """START only when the word is (a typo of) a start keyword; anything doubtful stops."""
        starts = [fold(k) for k in self.optout.start_keywords]
        if word in starts:
            return "start"
        if word in {fold(k) for k in self.keywords}:
            return "stop"
        tolerant = self.typo_tolerance and word is not None
        if tolerant and any(len(k) >= 5 and within_one_edit(k, word or "") for k in starts):
            return "start"
        return "stop"

    def handle(self, ctx: Context) -> Outcome:
        phone, at = ctx.msg.sender, ctx.msg.sent_at
        if self.action(ctx.keyword) == "start":
            cleared = ctx.conn.execute(
                update(Contact)
                .where(Contact.phone == phone, Contact.opted_out_at.is_not(None))
                .values(opted_out_at=None)
            ).rowcount
            return Outcome(
                "opted_in" if cleared else "not_opted_out", reply="opted_in", variables=self._vars()
            )
        was_out = ctx.conn.scalar(select(Contact.opted_out_at).where(Contact.phone == phone))
        _mark_opted_out(ctx.conn, phone, at, ctx.now)
        lists = ctx.conn.scalars(
            update(Subscription)
            .where(Subscription.phone == phone, Subscription.status.in_(("pending", "active")))
            .values(status="left", left_at=at)
            .returning(Subscription.list_id)
        ).all()
        # A survey must not ask its next question after STOP.
        ctx.conn.execute(
            update(Conversation)
            .where(Conversation.sender == phone, Conversation.status == "active")
            .values(status="aborted", updated_at=ctx.now)
        )
        variables = {**self._vars(), "lists": ", ".join(sorted(lists)), "left_lists": len(lists)}
        return Outcome(
            "already_opted_out" if was_out else "opted_out", reply="opted_out", variables=variables
        )

    def _vars(self) -> dict[str, Any]:
        starts = self.optout.start_keywords
        return {"stop_keyword": self.keywords[0], "start_keyword": starts[0] if starts else ""}

    def sample(self) -> dict[str, Any]:
        return {**self._vars(), "lists": "news, sport", "left_lists": 2}


def _mark_opted_out(conn: Connection, phone: str, at: datetime, now: datetime) -> None:
    """Set the STOP mark (keeping the first one), creating the contact if it was never seen."""
    stmt = insert_for(conn.dialect.name, CONTACTS)
    stmt = stmt.on_conflict_do_update(
        index_elements=["phone"],
        set_={"opted_out_at": func.coalesce(CONTACTS.c.opted_out_at, stmt.excluded.opted_out_at)},
    )
    conn.execute(
        stmt, [{"phone": phone, "first_seen": now, "last_seen": now, "messages": 1, "opted_out_at": at}]
    )


def set_opted_out(conn: Connection, phone: str, opted_out: bool, now: datetime) -> bool:
    """An operator's STOP (or its lifting) for ``phone``; whether it changed anything.

    The same mark a STOP message sets: broadcasts and sends skip the phone until it is lifted
    here or by the phone's START. A phone never seen becomes a contact with no messages.
    """
    if opted_out:
        was = conn.scalar(select(Contact.opted_out_at).where(Contact.phone == phone))
        stmt = insert_for(conn.dialect.name, CONTACTS).on_conflict_do_update(
            index_elements=["phone"], set_={"opted_out_at": func.coalesce(CONTACTS.c.opted_out_at, now)}
        )
        conn.execute(
            stmt, [{"phone": phone, "first_seen": now, "last_seen": now, "messages": 0, "opted_out_at": now}]
        )
        return was is None
    cleared = conn.execute(
        update(Contact)
        .where(Contact.phone == phone, Contact.opted_out_at.is_not(None))
        .values(opted_out_at=None)
    ).rowcount
    return bool(cleared)
