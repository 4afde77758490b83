"""What every flow kind shares: the common fields of a flow file, the context a kind acts in, and
the outcome it returns. A kind is a Struct subclass of ``Flow`` with a ``handle`` method;
registering it in ``app/flows/kinds/__init__.py`` is all it takes to plug a new kind in.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar

import msgspec
from sqlalchemy import Connection

from app.db.models import WARSAW, FlowId
from app.flows.conversations import OpenConversation
from app.flows.messages import Answered, Inbound

__all__ = ["WARSAW", "Context", "Flow", "FlowId", "Inbound", "Outcome"]


@dataclass(slots=True)
class Context:
    """One message meeting one flow, inside the transaction that stores the message."""

    conn: Connection
    msg: Inbound
    flow_hash: str
    words: list[str]  # folded words of the text; words[0] is the keyword when one matched
    keyword: str | None
    now: datetime
    conversation: OpenConversation | None = None  # the phone's open conversation with this flow
    # The flow whose keyword words[0] is; inside a conversation it may be the owner's own keyword
    # or another flow's that the owner kept (see Flow.yields_to_keyword).
    keyword_flow: str | None = None
    answered: Answered | None = None  # the sent message this one answers (by its ext_id)
    # What Flow.prepare decided for this message, when it ran: whether the batch's insert took its
    # row (one-vote-per-phone votes). None: not prepared, ``handle`` decides alone.
    prepared_insert: bool | None = None

    @property
    def args(self) -> list[str]:
        """The folded words after the keyword."""
        return self.words[1:] if self.keyword is not None else self.words


class Outcome(msgspec.Struct, frozen=True):
    """A flow's decision: recorded in the event log, and ``reply`` names the template to send."""

    name: str
    reply: str | None = None
    variables: dict[str, Any] = {}
    status: str = "processed"
    follow_ups: tuple[str, ...] = ()  # more templates to send after ``reply``, in this order


class Flow(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="kind"):
    """Fields common to every flow file (see docs/flows.md)."""

    id: FlowId
    name: str = ""
    numbers: list[str] = []
    keywords: list[str] = []
    starts: datetime | None = None
    ends: datetime | None = None
    typo_tolerance: bool = False
    transliterate: bool = False
    max_parts: Annotated[int, msgspec.Meta(ge=1, le=3)] = 2
    enabled: bool = True
    quiet_minutes: Annotated[int, msgspec.Meta(ge=0, le=1440)] = 5
    answer_every_message: bool = False

    # Kinds that hold a multi-message conversation set this; the engine then routes a phone's
    # next message to its open conversation before keyword matching.
    conversational: ClassVar[bool] = False
    # Kinds whose keywords win even inside a conversation (STOP must always work).
    interrupts: ClassVar[bool] = False
    # Kinds that answer unmatched messages instead of matching keywords.
    is_fallback: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if self.starts and self.ends and self.window()[0] >= self.window()[1]:
            raise ValueError("ends: must be later than starts")
        if not self.keywords and not self.is_fallback and self.needs_keywords():
            raise ValueError('keywords: at least one keyword is needed, e.g. keywords = ["GLOS"]')

    def needs_keywords(self) -> bool:
        return True

    def answer_tag(self) -> str | None:
        """The ``tag`` of sent messages whose answers this flow takes before keyword matching."""
        return None

    def all_keywords(self) -> list[str]:
        """Every word that routes a message here: ``keywords`` and any a kind adds (leave, confirm...)."""
        return self.keywords

    def files(self) -> dict[str, str]:
        """Files the flow reads, as field path → path relative to the flow file; the loader checks
        that each exists, so a missing file is a flow file error, not a surprise at run time."""
        return {}

    def window(self) -> tuple[datetime, datetime]:
        """The time window in UTC; a time without an offset is Warsaw time."""
        return _window(self.starts, self.ends)

    def is_open(self, at: datetime) -> bool:
        lo, hi = self.window()
        return lo <= at < hi

    def reply_templates(self) -> dict[str, str | None]:
        """Reply name → template source, from the kind's ``[replies]`` table."""
        section = getattr(self, "replies", None)
        if section is None:
            return {}
        return {f: getattr(section, f) for f in section.__struct_fields__}

    def sample(self) -> dict[str, Any]:
        """Template variables with sample values, for ``flows check``; kinds add their own."""
        return {}

    def handle(self, ctx: Context) -> Outcome:
        raise NotImplementedError

    def prepare(self, contexts: list[Context]) -> None:
        """Decide at once what can be decided for many messages of a batch; ``handle`` then
        finds it in the context (``prepared_insert``). Optional: ``handle`` must work without it.

        The engine calls it with the batch's messages this flow will handle while open, in order,
        leaving out those of phones in a conversation (their route is known only as they come).
        """

    def closed(self, ctx: Context) -> Outcome:
        """A keyword of this flow outside its window."""
        lo, hi = self.window()
        return Outcome(
            "closed",
            reply="closed",
            variables={"opens": _show(lo), "closes": _show(hi), "not_yet": ctx.msg.sent_at < lo},
        )

    def yields_to_keyword(self, conn: Connection, conversation: OpenConversation, now: datetime) -> bool:
        """Inside this flow's conversation, a keyword of another flow arrived: let it through?"""
        return True


@functools.lru_cache(maxsize=1024)  # asked for several times per message, and flows rarely change
def _window(starts: datetime | None, ends: datetime | None) -> tuple[datetime, datetime]:
    lo = _aware(starts) if starts else datetime.min.replace(tzinfo=UTC)
    hi = _aware(ends) if ends else datetime.max.replace(tzinfo=UTC)
    return lo, hi


def _aware(value: datetime) -> datetime:
    return (value if value.tzinfo else value.replace(tzinfo=WARSAW)).astimezone(UTC)


def _show(value: datetime) -> str:
    if value.year in (1, 9999):
        return ""
    return value.astimezone(WARSAW).strftime("%Y-%m-%d %H:%M")
