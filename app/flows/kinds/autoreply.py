"""``autoreply``: a keyword gets a templated answer."""

from __future__ import annotations

import msgspec

from app.flows.kinds.base import Context, Flow, Outcome


class AutoreplyReplies(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    reply: str
    closed: str | None = None


class AutoreplyFlow(Flow, frozen=True, kw_only=True, tag="autoreply"):
    replies: AutoreplyReplies

    def handle(self, ctx: Context) -> Outcome:
        return Outcome("replied", reply="reply", variables={"args": " ".join(ctx.args)})

    def sample(self) -> dict[str, object]:
        return {"args": "A"}
