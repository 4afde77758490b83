"""The registry of flow kinds: a kind is a ``Flow`` Struct subclass listed here."""

from __future__ import annotations

from app.flows.kinds.autoreply import AutoreplyFlow
from app.flows.kinds.base import Flow
from app.flows.kinds.code import CodeFlow
from app.flows.kinds.fallback import FallbackFlow
from app.flows.kinds.optout import OptoutFlow
from app.flows.kinds.reply import ReplyFlow
from app.flows.kinds.subscription import SubscriptionFlow
from app.flows.kinds.survey import SurveyFlow
from app.flows.kinds.vote import VoteFlow

KINDS: tuple[type[Flow], ...] = (
    AutoreplyFlow,
    VoteFlow,
    CodeFlow,
    FallbackFlow,
    SurveyFlow,
    SubscriptionFlow,
    OptoutFlow,
    ReplyFlow,
)


def kind_names() -> list[str]:
    return sorted(str(k.__struct_config__.tag) for k in KINDS)
