"""The JSON shapes of the API: msgspec Structs at the edge, most of them the shared read model's
(``app.reads``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from app.flows.check import flow_status, window_text
from app.flows.loader import LoadedFlow
from app.reads.messages import (
    ActionOut,
    AnswerOut,
    InboundOut,
    InboundPage,
    MessageOut,
    OutboxOut,
    OutboxPage,
    QuarantineOut,
    QuarantinePage,
)
from app.reads.results import FlowResults

__all__ = [
    "ActionOut",
    "AnswerOut",
    "FlowOut",
    "FlowResultsOut",
    "FlowsOut",
    "InboundOut",
    "InboundPage",
    "MessageOut",
    "OutboxOut",
    "OutboxPage",
    "QuarantineOut",
    "QuarantinePage",
    "ReloadOut",
    "Repair",
]


class Repair(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Corrected MO fields; each given field replaces the one decoded from the raw body."""

    fields: dict[str, str] = {}


class FlowOut(msgspec.Struct, frozen=True):
    id: str
    kind: str
    name: str
    numbers: list[str]
    keywords: list[str]
    starts: datetime | None  # UTC; the file may give Warsaw time
    ends: datetime | None
    window: str  # the same window in Europe/Warsaw, for people
    enabled: bool
    status: str  # enabled (no window), disabled, upcoming, open or closed
    open_now: bool
    hash: str  # the version recorded with every vote, reply and event
    file: str

    @classmethod
    def of(cls, f: LoadedFlow, now: datetime) -> FlowOut:
        d = f.definition
        lo, hi = d.window()
        return cls(
            id=f.id,
            kind=f.kind,
            name=d.name,
            numbers=list(f.numbers),
            keywords=list(f.keywords),
            starts=lo if d.starts is not None else None,
            ends=hi if d.ends is not None else None,
            window=window_text(d),
            enabled=d.enabled,
            status=flow_status(d, now),
            open_now=d.enabled and d.is_open(now),
            hash=f.hash,
            file=str(f.path),
        )


class FlowsOut(msgspec.Struct, frozen=True):
    flows: list[FlowOut]
    directory: str
    loaded_at: datetime
    last_error: str | None  # why the last reload was refused; the flows above kept running


class ReloadOut(msgspec.Struct, frozen=True):
    flows: list[str]
    loaded_at: datetime


class FlowResultsOut(msgspec.Struct, frozen=True):
    """:class:`~app.reads.results.FlowResults` for JSON: the kinds' results Structs carry no tag,
    so the API's schema describes ``results`` as an object whose shape ``kind`` decides."""

    flow: str
    kind: str
    name: str
    hash: str
    results: dict[str, Any]
    outcomes: dict[str, int]
    events: int

    @classmethod
    def of(cls, res: FlowResults) -> FlowResultsOut:
        fields = msgspec.structs.asdict(res)
        return cls(**fields | {"results": msgspec.to_builtins(res.results, builtin_types=(datetime,))})
