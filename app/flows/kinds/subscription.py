"""``subscription``: phones join and leave a list by keyword, optionally confirming by a second SMS.

The primary key (list, phone) makes a join delivered twice, or by two processes at once, still
one subscription. Times on a row are the message times (when the phone asked), so the
confirmation window is judged the way the flow window is: by the message's own ``time``.
A phone under the global STOP (``contacts.opted_out_at``) cannot join until it sends START.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

import msgspec
from sqlalchemy import Connection, Select, insert, select, update
from sqlalchemy.exc import IntegrityError

from app.db.flow_models import Subscription
from app.db.models import Contact
from app.flows.kinds.base import Context, Flow, FlowId, Outcome
from app.flows.matching import fold, within_one_edit

STATUSES = ("pending", "active", "left")
Action = Literal["join", "leave", "confirm"]


class SubscriptionSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    leave_keywords: list[str]
    list_id: FlowId | None = msgspec.field(default=None, name="list")  # default: the flow id
    confirm: bool = False
    confirm_keyword: str | None = None
    confirm_within_minutes: Annotated[int, msgspec.Meta(ge=1)] = 60

    def __post_init__(self) -> None:
        if not self.leave_keywords:
            raise ValueError('leave_keywords: a list must say how to leave it, e.g. ["STOPNEWS"]')
        for kw in self.leave_keywords:
            _one_word("leave_keywords", kw)
        if self.confirm_keyword is not None:
            _one_word("confirm_keyword", self.confirm_keyword)
        if self.confirm and self.confirm_keyword is None:
            raise ValueError('confirm_keyword: double opt-in needs the confirming word, e.g. "TAK"')
        if not self.confirm and self.confirm_keyword is not None:
            raise ValueError("confirm_keyword: set confirm = true to ask for confirmation, or remove it")


class SubscriptionReplies(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    joined: str
    left: str
    already_member: str | None = None
    confirm_request: str | None = None
    confirmed: str | None = None  # when unset, a confirmed join gets the ``joined`` reply
    confirm_expired: str | None = None
    not_member: str | None = None
    closed: str | None = None
    opted_out: str | None = None


class SubscriptionFlow(Flow, frozen=True, kw_only=True, tag="subscription"):
    subscription: SubscriptionSpec
    replies: SubscriptionReplies

    def __post_init__(self) -> None:
        super().__post_init__()
        seen = {fold(k): "keywords" for k in self.keywords}
        for field, kw in self._extra_keywords():
            if fold(kw) in seen:
                raise ValueError(f"subscription.{field}: {kw} is also in {seen[fold(kw)]}; use another word")
            seen[fold(kw)] = f"subscription.{field}"
        if self.subscription.confirm and self.replies.confirm_request is None:
            raise ValueError(
                "replies.confirm_request: confirm = true needs the message that asks for confirmation, "
                'e.g. "Odpowiedz {{ confirm_keyword }} w ciągu {{ confirm_within_minutes }} min."'
            )

    @property
    def list_id(self) -> str:
        return self.subscription.list_id or self.id

    def all_keywords(self) -> list[str]:
        return [*self.keywords, *(kw for _, kw in self._extra_keywords())]

    def _extra_keywords(self) -> list[tuple[str, str]]:
        extra = [("leave_keywords", kw) for kw in self.subscription.leave_keywords]
        if self.subscription.confirm_keyword is not None:
            extra.append(("confirm_keyword", self.subscription.confirm_keyword))
        return extra

    def action(self, word: str | None) -> Action:
        """Which of the flow's keywords the (folded, maybe mistyped) first word stands for."""
        groups: list[tuple[Action, list[str]]] = [
            ("leave", [fold(k) for k in self.subscription.leave_keywords]),
            ("confirm", [fold(self.subscription.confirm_keyword or "")]),
            ("join", [fold(k) for k in self.keywords]),
        ]
        for action, kws in groups:
            if word in kws:
                return action
        # The index lets a typo of a keyword of five letters or more through; find which one.
        for action, kws in groups:
            if word and any(len(k) >= 5 and within_one_edit(k, word) for k in kws):
                return action
        return "join"

    def handle(self, ctx: Context) -> Outcome:
        action = self.action(ctx.keyword)
        if action == "leave":
            return self._leave(ctx)
        if action == "confirm":
            return self._confirm(ctx)
        return self._join(ctx)

    def closed(self, ctx: Context) -> Outcome:
        """Outside the window only joining is closed: leaving, and confirming in time, still work."""
        if self.action(ctx.keyword) != "join":
            return self.handle(ctx)
        shut = super().closed(ctx)
        return Outcome(shut.name, reply=shut.reply, variables={**self._vars(), **shut.variables})

    def _join(self, ctx: Context, *, retry: bool = True) -> Outcome:
        opted_out = ctx.conn.scalar(select(Contact.opted_out_at).where(Contact.phone == ctx.msg.sender))
        if opted_out is not None:
            return self._outcome("opted_out")
        row = self._current(ctx)
        if row is not None and row.status == "active":
            return self._outcome("already_member")
        confirm = self.subscription.confirm
        at = ctx.msg.sent_at
        values = {
            "status": "pending" if confirm else "active",
            "flow_id": self.id,
            "flow_hash": ctx.flow_hash,
            "requested_at": at,
            "confirmed_at": None if confirm else at,
            "left_at": None,
        }
        if row is None:
            try:
                with ctx.conn.begin_nested():
                    ctx.conn.execute(
                        insert(Subscription), [{"list_id": self.list_id, "phone": ctx.msg.sender, **values}]
                    )
            except IntegrityError:  # another process stored this phone's join a moment ago
                if retry:
                    return self._join(ctx, retry=False)
                raise
        else:  # left, or pending: a new request starts a new confirmation window
            ctx.conn.execute(self._update(ctx).values(**values))
        return self._outcome("confirm_request" if confirm else "joined")

    def _confirm(self, ctx: Context) -> Outcome:
        row = self._current(ctx)
        if row is None or row.status == "left":
            return Outcome("nothing_to_confirm", reply="not_member", variables=self._vars())
        if row.status == "active":
            return self._outcome("already_member")
        if ctx.msg.sent_at - row.requested_at > timedelta(minutes=self.subscription.confirm_within_minutes):
            return self._outcome("confirm_expired")
        ctx.conn.execute(
            self._update(ctx).values(status="active", confirmed_at=ctx.msg.sent_at, flow_hash=ctx.flow_hash)
        )
        reply = "confirmed" if self.replies.confirmed is not None else "joined"
        return Outcome("confirmed", reply=reply, variables=self._vars())

    def _leave(self, ctx: Context) -> Outcome:
        row = self._current(ctx)
        if row is None or row.status == "left":
            return self._outcome("not_member")
        ctx.conn.execute(
            self._update(ctx).values(status="left", left_at=ctx.msg.sent_at, flow_hash=ctx.flow_hash)
        )
        return self._outcome("left")

    def _current(self, ctx: Context) -> Any:
        """The phone's row, locked until commit so that two deliveries decide one after the other."""
        return ctx.conn.execute(
            select(Subscription.status, Subscription.requested_at)
            .where(Subscription.list_id == self.list_id, Subscription.phone == ctx.msg.sender)
            .with_for_update()
        ).first()

    def _update(self, ctx: Context) -> Any:
        return update(Subscription).where(
            Subscription.list_id == self.list_id, Subscription.phone == ctx.msg.sender
        )

    def _outcome(self, name: str) -> Outcome:
        return Outcome(name, reply=name, variables=self._vars())

    def _vars(self) -> dict[str, Any]:
        s = self.subscription
        return {
            "list": self.list_id,
            "join_keyword": self.keywords[0],
            "leave_keyword": s.leave_keywords[0],
            "confirm_keyword": s.confirm_keyword or "",
            "confirm_within_minutes": s.confirm_within_minutes,
        }

    def sample(self) -> dict[str, Any]:
        return {**self._vars(), "opens": "2025-12-01 20:00", "closes": "2025-12-31 23:59", "not_yet": False}


def subscribers(conn: Connection, list_id: str) -> list[str]:
    """The phones a broadcast to the list may reach: active, and not under the global STOP."""
    return list(conn.scalars(reachable(list_id).order_by(Subscription.phone)))


def reachable(list_id: str) -> Select[str]:
    """The list's active members who have not sent STOP."""
    return (
        select(Subscription.phone)
        .outerjoin(Contact, Contact.phone == Subscription.phone)
        .where(
            Subscription.list_id == list_id,
            Subscription.status == "active",
            Contact.opted_out_at.is_(None),
        )
    )


def _one_word(field: str, keyword: str) -> None:
    folded = fold(keyword)
    if not folded or " " in folded:
        raise ValueError(f"{field}: {keyword!r} must be one word of letters or digits")
