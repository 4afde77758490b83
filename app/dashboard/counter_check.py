"""The process's live counters against a full recount from the database, right now.

Each counter (see app/dashboard/counting.py) is compared up to the highest id it has seen, so
rows committed while the check runs make no difference; all the recounts run in one read. This is
what ``GET /api/counters/check`` answers and ``smsflows counters check`` prints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import Connection

from app.dashboard.counting import EventCounter, Held, MinuteCounter, RowCounter, VoteCounter
from app.dashboard.live import TallyHub
from app.db.models import utcnow


class CounterCheck(msgspec.Struct, frozen=True):
    """One counter: what the process holds and what the table says, by key (option, outcome...)."""

    counter: str
    """What it counts: ``votes final``, ``events final``, ``today inbound``, ``minutes inbound``."""
    through_id: int
    """The highest id the counter has seen; the recount stops there."""
    live: dict[str, int]
    recounted: dict[str, int]
    agree: bool

    @property
    def live_total(self) -> int:
        return sum(self.live.values())

    @property
    def recounted_total(self) -> int:
        return sum(self.recounted.values())

    def differences(self) -> list[tuple[str, int, int]]:
        """The keys whose counts differ: key, live, recounted."""
        keys = sorted(set(self.live) | set(self.recounted))
        return [
            (k, self.live.get(k, 0), self.recounted.get(k, 0))
            for k in keys
            if self.live.get(k, 0) != self.recounted.get(k, 0)
        ]


class CountersCheck(msgspec.Struct, frozen=True):
    """Every counter this process holds, compared; ``agree`` when all of them do."""

    checked_at: datetime
    agree: bool
    counters: list[CounterCheck]


_Entry = tuple[str, "VoteCounter | EventCounter | RowCounter | MinuteCounter", Callable[[Any], str]]


def _entries(hub: TallyHub) -> Iterator[_Entry]:
    """The hub's counters, each with its name and how its keys are written."""
    ids = [flow_id for flow_id, _hash in hub.counters]
    for (flow_id, flow_hash), votes in hub.counters.items():
        # A flow whose file changed has a counter per version: the hash tells them apart.
        name = f"votes {flow_id}" if ids.count(flow_id) == 1 else f"votes {flow_id} @{flow_hash[:8]}"
        yield name, votes, str
    for flow_id, events in hub.events.items():
        yield f"events {flow_id}", events, lambda key: f"{key[0]} {key[1] or '-'}"
    for name, rows in hub.totals.items():
        yield f"today {name}", rows, str
    for name, minutes in hub.minutes.items():
        yield f"minutes {name}", minutes, lambda at: at.strftime("%Y-%m-%dT%H:%MZ")


def _written(counts: dict[Any, int], key: Callable[[Any], str]) -> dict[str, int]:
    # A key counted zero is the same as a key not counted: neither is a difference.
    return {key(k): n for k, n in sorted(counts.items()) if n}


async def check_counters(hub: TallyHub) -> CountersCheck:
    """Compare every counter the hub holds with a full recount of the same rows."""
    held: list[tuple[str, Held[Any], Callable[[Any], str]]] = []
    for name, counter, key in _entries(hub):
        async with counter.lock:  # between two looks, so counts and the id they reach go together
            now = counter.held()
        if now is not None:
            held.append((name, now, key))

    def recount(conn: Connection) -> list[dict[Any, int]]:
        return [h.recount(conn) for _, h, _ in held]

    async with hub.engine.connect() as conn:
        if conn.dialect.name == "postgresql":  # one snapshot for every recount
            await conn.execution_options(isolation_level="REPEATABLE READ")
        recounted = await conn.run_sync(recount) if held else []
    checks = []
    for (name, h, key), full in zip(held, recounted, strict=True):
        live, table = _written(h.counts, key), _written(full, key)
        checks.append(CounterCheck(name, h.through, live, table, agree=live == table))
    return CountersCheck(utcnow(), all(c.agree for c in checks), checks)
