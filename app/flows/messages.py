"""The two messages flows act on: the inbound one as stored, and the sent one it answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec


@dataclass(slots=True, frozen=True)
class Inbound:
    """The stored MO message a flow acts on."""

    id: int
    sms_id: str
    number: str
    sender: str
    text: str
    time: int
    ext_id: str | None
    # When Mobitex received it: the moment time windows are judged by (asked for several times).
    sent_at: datetime = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sent_at", datetime.fromtimestamp(self.time, UTC))


@dataclass(frozen=True, slots=True)
class Answered:
    """The sent message an MO answers, as flows (the ``reply`` kind) need it."""

    id: int
    ext_id: str
    to_number: str
    text: str
    tag: str | None
    data: str | None  # the application's JSON, as stored
    flow_id: str | None
    expires_at: datetime | None
    sent_at: datetime | None
    created_at: datetime
    answer: str | None

    def data_dict(self) -> dict[str, Any]:
        decoded = msgspec.json.decode(self.data) if self.data else {}
        return decoded if isinstance(decoded, dict) else {}
