"""Exponential backoff with jitter: how long to wait before trying a failed delivery again.

Shared by everything that retries against someone else's server (SMS through Mobitex, send-back
POSTs to applications), so it is a pure function: the caller passes the randomness.
"""

from __future__ import annotations

from typing import Protocol

_MAX_DOUBLINGS = 60  # 2**60 times any sane base is past any cap; stops the float overflowing


class Random(Protocol):
    """What ``next_delay`` needs of a random source: ``random.Random`` or a seeded one in tests."""

    def random(self) -> float: ...


def next_delay(attempt: int, base: float, cap: float, rng: Random) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1 is the first failure).

    The ceiling doubles with each attempt (base, 2·base, 4·base, ...) up to ``cap``, and the delay
    is drawn from its upper half ("equal jitter"): never under half the ceiling, so a failing server
    is not hammered, and spread, so messages that failed together do not all come back together.
    """
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, not {attempt}")
    if base <= 0 or cap < base:
        raise ValueError(f"need 0 < base <= cap, not base={base}, cap={cap}")
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, _MAX_DOUBLINGS))
    return ceiling / 2 + rng.random() * ceiling / 2
