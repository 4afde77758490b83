"""``fallback``: the answer for messages no flow matched on a number, rate-limited per phone so
that two auto-replying phones cannot keep each other (and our bill) going for ever."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import msgspec
from sqlalchemy import func, select

from app.db.models import OutboxMessage
from app.flows.kinds.base import Context, Flow, Outcome


class FallbackSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    min_interval_minutes: Annotated[int, msgspec.Meta(ge=0)] = 60


class FallbackReplies(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    reply: str


class FallbackFlow(Flow, frozen=True, kw_only=True, tag="fallback"):
    fallback: FallbackSpec = FallbackSpec()
    replies: FallbackReplies

    is_fallback = True

    def needs_keywords(self) -> bool:
        return False

    def __post_init__(self) -> None:
        if self.keywords:
            raise ValueError("keywords: a fallback answers unmatched messages and takes no keywords")
        super().__post_init__()

    def handle(self, ctx: Context) -> Outcome:
        since = ctx.now - timedelta(minutes=self.fallback.min_interval_minutes)
        # Judged by what we queued to this phone, which is written at once (events are
        # written at the end of the batch, so two messages in one batch would both pass).
        recent = ctx.conn.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(
                OutboxMessage.to_number == ctx.msg.sender,
                OutboxMessage.flow_id == self.id,
                OutboxMessage.created_at >= since,
            )
        )
        if recent:
            return Outcome("suppressed", variables={"reason": "replied to this phone recently"})
        return Outcome("replied", reply="reply")
