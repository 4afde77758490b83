"""``survey``: the keyword opens a conversation that asks its steps one by one.

Each answer is checked against its step's type; an invalid one is asked again (``retry``) up to
``max_retries`` times per step, after which the survey ends as aborted (``aborted``). Answers are
kept one row per (conversation, step), and the last one is followed by ``done``. A message that
is only the survey's own keyword starts it again from the first question. A conversation waits
``timeout_minutes`` for each answer, judged by the messages' own time; after that the phone's
next message is matched as usual. Another flow's keyword mid-survey ends the survey and goes to
that flow (``on_keyword = "abort"``) or is answered with ``busy`` (``"refuse"``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from typing import Annotated, Any, Literal

import msgspec
from sqlalchemy import Connection

from app.errors import FlowFileError
from app.flows.conversations import (
    OpenConversation,
    answers_of,
    close_conversation,
    move_conversation,
    start_conversation,
    store_answer,
)
from app.flows.kinds.base import Context, Flow, Outcome
from app.flows.kinds.survey_steps import AnyStep, ChoiceStep, folded
from app.flows.sms_templates import COMMON_SAMPLE, Reply

STATUSES = ("active", "completed", "aborted", "expired")


class SurveySpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    steps: list[AnyStep]
    timeout_minutes: Annotated[int, msgspec.Meta(ge=1, le=10080)] = 30
    on_keyword: Literal["abort", "refuse"] = "abort"
    max_retries: Annotated[int, msgspec.Meta(ge=0, le=10)] = 2

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError('steps: add at least one [[survey.steps]] with id, ask and type = "text"')
        seen: set[str] = set()
        for i, step in enumerate(self.steps):
            if step.id in seen:
                raise ValueError(f"steps[{i}].id: {step.id!r} is used by an earlier step; ids must differ")
            seen.add(step.id)


class SurveyReplies(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    done: str
    retry: str | None = None  # without it, an invalid answer gets the question again
    aborted: str | None = None  # after max_retries invalid answers; without it the survey ends silently
    busy: str | None = None  # another flow's keyword while on_keyword = "refuse"
    closed: str | None = None


class SurveyFlow(Flow, frozen=True, kw_only=True, tag="survey"):
    survey: SurveySpec
    replies: SurveyReplies

    conversational = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.survey.on_keyword == "refuse" and self.replies.busy is None:
            raise ValueError('replies.busy: on_keyword = "refuse" needs a busy reply, e.g. "Najpierw ..."')
        own = {folded(k) for k in self.keywords}
        for i, step in enumerate(self.survey.steps):
            clash = sorted(own & set(step.aliases())) if isinstance(step, ChoiceStep) else []
            if clash:
                raise ValueError(
                    f"survey.steps[{i}].choices: {clash[0]} is also a keyword of this survey, which "
                    "starts it again; use another alias"
                )

    def reply_templates(self) -> dict[str, str | None]:
        """The ``[replies]`` plus each step's question as ``ask.<step>`` (and ``retry.<step>``)."""
        templates = super().reply_templates()
        for step in self.survey.steps:
            templates[f"ask.{step.id}"] = step.ask
            if step.retry is not None:
                templates[f"retry.{step.id}"] = step.retry
        return templates

    def handle(self, ctx: Context) -> Outcome:
        conversation = ctx.conversation
        if conversation is None:
            return self._start(ctx, "started")
        if ctx.keyword_flow == self.id and len(ctx.words) == 1:
            return self._start(ctx, "restarted") if self.is_open(ctx.msg.sent_at) else self.closed(ctx)
        index = next((i for i, s in enumerate(self.survey.steps) if s.id == conversation.step), None)
        if index is None:  # the flow file was changed and this step is gone
            close_conversation(ctx.conn, conversation.id, "aborted", ctx.now)
            return Outcome("aborted", reply="aborted", variables=self._vars(ctx, 0, {}, 0))
        step = self.survey.steps[index]
        answers = answers_of(ctx.conn, conversation.id)
        value = step.parse(ctx.msg.text)
        if value is None and ctx.keyword_flow not in (None, self.id):  # refused in yields_to_keyword
            return Outcome(
                "busy", reply="busy", variables=self._vars(ctx, index, answers, conversation.retries)
            )
        if value is None:
            return self._invalid(ctx, conversation, index, answers)
        if not store_answer(
            ctx.conn, conversation, step=step.id, value=value, inbound_id=ctx.msg.id, now=ctx.now
        ):
            return Outcome("duplicate", variables={"step": step.id}, status="ignored")
        answers[step.id] = value
        if index + 1 == len(self.survey.steps):
            close_conversation(ctx.conn, conversation.id, "completed", ctx.now)
            return Outcome("completed", reply="done", variables=self._vars(ctx, index, answers, 0))
        following = self.survey.steps[index + 1]
        if not self._move(ctx, conversation, following.id, 0):
            return Outcome("superseded", variables={"step": step.id}, status="ignored")
        return Outcome(
            "answered", reply=f"ask.{following.id}", variables=self._vars(ctx, index + 1, answers, 0)
        )

    def step_type(self, step_id: str) -> str | None:
        """The answer type of a step (``phone``, ``text``...), or None when the file has no such step."""
        found = next((s for s in self.survey.steps if s.id == step_id), None)
        return str(type(found).__struct_config__.tag) if found is not None else None

    def yields_to_keyword(self, conn: Connection, conversation: OpenConversation, now: datetime) -> bool:
        if self.survey.on_keyword == "refuse":
            return False
        close_conversation(conn, conversation.id, "aborted", now)
        return True

    def _start(self, ctx: Context, outcome: str) -> Outcome:
        first = self.survey.steps[0]
        start_conversation(
            ctx.conn,
            flow_id=self.id,
            flow_hash=ctx.flow_hash,
            sender=ctx.msg.sender,
            number=ctx.msg.number,
            step=first.id,
            now=ctx.now,
            expires_at=self._deadline(ctx),
        )
        variables = self._vars(ctx, 0, {}, 0)
        return Outcome(outcome, reply=f"ask.{first.id}", variables=variables)

    def _invalid(
        self, ctx: Context, conversation: OpenConversation, index: int, answers: dict[str, str]
    ) -> Outcome:
        step = self.survey.steps[index]
        if conversation.retries >= self.survey.max_retries:
            close_conversation(ctx.conn, conversation.id, "aborted", ctx.now)
            variables = self._vars(ctx, index, answers, conversation.retries)
            return Outcome("aborted", reply="aborted", variables=variables)
        retries = conversation.retries + 1
        if not self._move(ctx, conversation, step.id, retries):
            return Outcome("superseded", variables={"step": step.id}, status="ignored")
        name = (
            f"retry.{step.id}"
            if step.retry is not None
            else "retry"
            if self.replies.retry is not None
            else f"ask.{step.id}"
        )
        return Outcome("invalid", reply=name, variables=self._vars(ctx, index, answers, retries))

    def _move(self, ctx: Context, conversation: OpenConversation, step: str, retries: int) -> bool:
        return move_conversation(
            ctx.conn,
            conversation,
            step=step,
            retries=retries,
            now=ctx.now,
            expires_at=self._deadline(ctx),
        )

    def _deadline(self, ctx: Context) -> datetime:
        return ctx.msg.sent_at + timedelta(minutes=self.survey.timeout_minutes)

    def _vars(self, ctx: Context, index: int, answers: dict[str, str], retries: int) -> dict[str, Any]:
        """What every survey reply can use; ``question`` is the current step's question as sent."""
        common = {
            "sender": ctx.msg.sender,
            "number": ctx.msg.number,
            "text": ctx.msg.text,
            "keyword": ctx.keyword or "",
            "flow": self.id,
            "flow_name": self.name or self.id,
        }
        variables = self._step_vars(index, answers, retries)
        question = _question(self.survey.steps[index].ask).render({**common, **variables, "question": ""})
        return {**variables, "question": question}

    def _step_vars(self, index: int, answers: dict[str, str], retries: int) -> dict[str, Any]:
        return {
            "step": self.survey.steps[index].id,
            "step_number": index + 1,
            "steps": len(self.survey.steps),
            "answers": {s.id: answers.get(s.id, "") for s in self.survey.steps},
            "retries_left": self.survey.max_retries - retries,
        }

    def sample(self) -> dict[str, Any]:
        answers = {s.id: s.sample_answer() for s in self.survey.steps}
        variables = {
            **self._step_vars(0, answers, 0),
            "flow": self.id,
            "flow_name": self.name or self.id,
        }
        questions = []
        for step in self.survey.steps:
            try:
                questions.append(_question(step.ask).render({**COMMON_SAMPLE, **variables, "question": ""}))
            except FlowFileError:  # reported with the file's path when ask.<step> itself is checked
                questions.append(step.ask)
        return {**variables, "question": max(questions, key=len)}


@lru_cache(maxsize=512)
def _question(source: str) -> Reply:
    """A step's question compiled once, to put it inside ``retry``, ``busy`` and ``aborted``."""
    return Reply(source, "survey.steps.ask", transliterate_text=False)
