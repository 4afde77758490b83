"""Every set of template variables known when the flows are checked, not only the first.

A reply that names an option's label is as long as the longest label, not the first one: a reply
is measured with each of these and judged by the longest result.
"""

from __future__ import annotations

from typing import Any

from app.flows.kinds.base import Flow
from app.flows.kinds.reply import ReplyFlow
from app.flows.kinds.vote import VoteFlow
from app.flows.sms_templates import Reply
from app.mobitex.encoding import measure

_MAX_VARIANTS = 400  # options × options × vote counts stays far below this in any real vote


def sample_variants(definition: Flow, base: dict[str, Any]) -> list[dict[str, Any]]:
    """``base`` first, then one variant for each value a variable can take that is known now."""
    variants = [base]
    if isinstance(definition, VoteFlow):
        vote = definition.vote
        for option in vote.options:
            for previous in vote.options:
                for votes in sorted({1, vote.per_sender}):
                    variants.append(
                        {
                            **base,
                            "option": option,
                            "label": vote.labels.get(option, option),
                            "previous": previous,
                            "votes": votes,
                            "votes_left": max(vote.per_sender - votes, 0),
                        }
                    )
    elif isinstance(definition, ReplyFlow):
        variants += [{**base, "answer": a, "first_answer": a} for a in definition.reply.answers]
    return variants[:_MAX_VARIANTS]


def longest(reply: Reply, variants: list[dict[str, Any]]) -> tuple[dict[str, Any], str]:
    """The variables that make ``reply`` longest (most SMS parts, then most characters), and its text."""
    worst: tuple[tuple[int, int], dict[str, Any], str] | None = None
    for variables in variants:
        text = reply.render(variables)
        size = (measure(text).parts, len(text))
        if worst is None or size > worst[0]:
            worst = (size, variables, text)
    assert worst is not None  # variants always holds the base sample
    return worst[1], worst[2]
