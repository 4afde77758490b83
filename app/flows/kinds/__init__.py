"""The registry of flow kinds: a kind is a ``Flow`` Struct subclass listed here."""

from __future__ import annotations

from app.flows.kinds.autoreply import AutoreplyFlow
from app.flows.kinds.base import Flow
from app.flows.kinds.fallback import FallbackFlow
from app.flows.kinds.vote import VoteFlow

KINDS: tuple[type[Flow], ...] = (
    AutoreplyFlow,
    VoteFlow,
    FallbackFlow,
)


def kind_names() -> list[str]:
    return sorted(str(k.__struct_config__.tag) for k in KINDS)
