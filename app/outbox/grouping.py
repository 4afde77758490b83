"""Which claimed messages travel together: one text from one sender to many numbers in one request.

Mobitex's ``sms.php`` takes one text for up to 500 comma-separated numbers and answers one status
line per number, so the vote replies, broadcasts and reminders that share a text and a sender go
out as one request. A message travels alone when its text is its own (personalised), and when an
application waits for its answer (a ``tag``): only a request with one number carries our
``ext_id``, which Mobitex may echo back in the answer instead of its own Id.

Messages to one phone leave in the order they were queued: while one is on its way (or waiting
to go), a later one to the same phone waits behind it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from app.outbox.claims import Claim

GroupKey = tuple[str | None, str, int]
"""The sender, the text, and 0 for a groupable message (its own id for one that travels alone)."""


@dataclass(slots=True)
class Request:
    """Messages that go to Mobitex in one ``sms.php`` request: one text, distinct numbers."""

    sender: str | None
    text: str
    claims: list[Claim] = field(default_factory=list)

    @property
    def alone(self) -> bool:
        return len(self.claims) == 1


class SendQueue:
    """Claimed messages not yet sent, ready in groups (oldest group first) or waiting for their phone."""

    def __init__(self, group_size: int) -> None:
        self._size = group_size
        self._ready: dict[GroupKey, Request] = {}
        self._behind: dict[str, deque[tuple[Claim, str | None]]] = {}
        """Per phone: messages queued after the one of it in flight or ready."""
        self._busy: set[str] = set()
        self._count = 0

    def __len__(self) -> int:
        """Messages held, ready or waiting."""
        return self._count

    def add(self, held: Claim, sender: str | None) -> bool:
        """Queue a claimed message; True if it joined a group of others ready to go."""
        self._count += 1
        if held.to_number in self._busy:
            self._behind.setdefault(held.to_number, deque()).append((held, sender))
            return False
        self._busy.add(held.to_number)
        return self._ready_up(held, sender)

    def _ready_up(self, held: Claim, sender: str | None) -> bool:
        key = (sender, held.text, held.id if held.tag else 0)
        request = self._ready.get(key)
        if request is None:
            self._ready[key] = Request(sender, held.text, [held])
            return False
        request.claims.append(held)
        return True

    def next(self) -> Request | None:
        """The oldest ready group, at most ``group_size`` of it (the rest stays first in line)."""
        for key, request in self._ready.items():
            if len(request.claims) <= self._size:
                del self._ready[key]
                taken = request
            else:
                taken = Request(request.sender, request.text, request.claims[: self._size])
                del request.claims[: self._size]
            self._count -= len(taken.claims)
            return taken
        return None

    def done(self, request: Request) -> None:
        """The request's messages are answered: the next message to each of its phones may go."""
        for held in request.claims:
            waiting = self._behind.get(held.to_number)
            if waiting:
                self._ready_up(*waiting.popleft())  # behind the others that are ready
                if not waiting:
                    del self._behind[held.to_number]
            else:
                self._busy.discard(held.to_number)

    def take_all(self) -> list[Claim]:
        """Empty the queue: every message held and not started (to hand back at shutdown)."""
        taken = [held for request in self._ready.values() for held in request.claims]
        taken += [held for waiting in self._behind.values() for held, _ in waiting]
        self._ready.clear()
        self._behind.clear()
        self._busy.clear()
        self._count = 0
        return taken
