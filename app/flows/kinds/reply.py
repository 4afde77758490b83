"""``reply``: answers to messages an application sent with a ``tag`` (TAK/NIE to "confirm your visit").

The engine routes an MO here when its ``ext_id`` ties it to a sent message with this flow's tag
(after STOP, before keywords). The answer is classified by aliases, folded like keywords; the
first understood answer is recorded on the sent message by a conditional UPDATE, so of two
answers racing each other exactly one wins, and it queues the send-back actions: a signed POST
to ``webhook`` and/or the ``follow_up`` SMS.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec
from sqlalchemy import select, update

from app.db.models import OutboxMessage, Tag
from app.flows.kinds.base import WARSAW, Context, Flow, Outcome
from app.flows.kinds.reply_answers import answer_payload
from app.flows.matching import alias_table, check_aliases
from app.flows.messages import Answered
from app.outbox.actions import queue_action

AnswerClass = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
OUTCOMES = ("unknown", "expired", "already")  # besides the answer classes, and closed
_URL = re.compile(r"^https?://[^/\s?#]+(?:[/?#]\S*)?$")


class ReplySpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    tag: Tag
    answers: dict[AnswerClass, list[str]]
    webhook: str | None = None
    follow_up: str | None = None

    def __post_init__(self) -> None:
        if not self.answers:
            raise ValueError(
                'answers: give at least one class, e.g. { confirmed = ["TAK"], declined = ["NO"] }'
            )
        for name in self.answers:
            if name in (*OUTCOMES, "closed"):
                raise ValueError(f"answers.{name}: {name} is the name of a reply for other cases; rename it")
        check_aliases(self.answers, "answers")
        if self.webhook is not None and not _URL.match(self.webhook):
            raise ValueError(
                f"webhook: {self.webhook!r} is not an http(s) URL, e.g. https://example.com/answers"
            )


class _SampleData(dict[str, Any]):
    """Sample ``data`` for ``flows check``: every ``data.<key>`` has a value."""

    def __missing__(self, key: str) -> str:
        return f"<{key}>"


class ReplyFlow(Flow, frozen=True, kw_only=True, tag="reply"):
    reply: ReplySpec
    replies: dict[str, str] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.keywords:
            raise ValueError("keywords: a reply flow takes answers by reply.tag, not keywords; remove them")
        super().__post_init__()
        allowed = [*self.reply.answers, *OUTCOMES, "closed"]
        for name in self.replies:
            if name not in allowed:
                raise ValueError(f"replies.{name}: not a reply of this flow; use one of {', '.join(allowed)}")

    def needs_keywords(self) -> bool:
        return False

    def answer_tag(self) -> str | None:
        return self.reply.tag

    def reply_templates(self) -> dict[str, str | None]:
        return {**self.replies, "follow_up": self.reply.follow_up}

    def handle(self, ctx: Context) -> Outcome:
        sent = ctx.answered
        if sent is None:  # routed here only with the sent message; a replay may lack it
            return Outcome("not_an_answer", status="ignored")
        answer = alias_table(self.reply.answers).get(ctx.words[0]) if ctx.words else None
        variables = self._vars(sent, answer, sent.answer)
        if sent.expires_at is not None and ctx.msg.sent_at > sent.expires_at:
            return Outcome("expired", reply="expired", variables=variables)
        if sent.answer is not None:
            return Outcome("already", reply="already", variables=variables)
        if answer is None:
            return Outcome("unknown", reply="unknown", variables=variables)
        taken = ctx.conn.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == sent.id, OutboxMessage.answer.is_(None))
            .values(answer=answer, answered_at=ctx.msg.sent_at)
        ).rowcount
        if taken != 1:  # another answer was recorded since the batch read the message
            first = ctx.conn.scalar(select(OutboxMessage.answer).where(OutboxMessage.id == sent.id))
            return Outcome("already", reply="already", variables=self._vars(sent, answer, first))
        if self.reply.webhook is not None:
            payload = answer_payload(sent, answer, ctx.msg)
            queue_action(
                ctx.conn, url=self.reply.webhook, payload=payload, outbox_id=sent.id, inbound_id=ctx.msg.id,
                flow_id=self.id, now=ctx.now,
            )  # fmt: skip
        follow_ups = ("follow_up",) if self.reply.follow_up is not None else ()
        variables["first_answer"] = answer
        return Outcome(answer, reply=answer, variables=variables, follow_ups=follow_ups)

    def closed(self, ctx: Context) -> Outcome:
        """Outside the flow's window: the ``closed`` reply, which may also use the answer's variables."""
        shut = super().closed(ctx)
        sent = ctx.answered
        answered = self._vars(sent, None, sent.answer) if sent is not None else {}
        return Outcome(shut.name, reply=shut.reply, variables={**answered, **shut.variables})

    def _vars(self, sent: Answered, answer: str | None, first: str | None) -> dict[str, Any]:
        expires = sent.expires_at.astimezone(WARSAW).strftime("%Y-%m-%d %H:%M") if sent.expires_at else ""
        return {
            "answer": answer or "",
            "first_answer": first or "",
            "original": sent.text,
            "tag": sent.tag or "",
            "data": sent.data_dict(),
            "expires_at": expires,
            "message_id": sent.id,
        }

    def sample(self) -> dict[str, Any]:
        first = next(iter(self.reply.answers))
        return {
            "answer": first,
            "first_answer": first,
            "original": "Wizyta jutro o 10:00. Potwierdzasz? Odpisz TAK lub NIE.",
            "tag": self.reply.tag,
            "data": _SampleData(),
            "expires_at": "2026-12-01 20:00",
            "message_id": 1,
        }
