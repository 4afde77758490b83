"""Rate limits for sending: a global messages-per-second budget and one per destination number.

Both are token buckets in this process's memory. Several dispatcher processes (``smsflows
worker`` next to the service, or ``serve --workers N``) each have their own buckets, so together
they send up to N times ``SMSFLOWS_SEND_RATE``: give each 1/N of the rate you want in total.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]
"""Seconds on a monotonic scale: ``time.monotonic``, or a hand-moved clock in tests."""

_PRUNE_AT = 10_000  # idle per-number buckets are dropped once this many are kept


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up (one second's worth by default)."""

    def __init__(self, rate: float, burst: float | None = None, clock: Clock = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, not {rate}")
        self.rate = rate
        self.capacity = max(1.0, burst if burst is not None else rate)
        self._clock = clock
        self._tokens = self.capacity
        self._updated = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def available(self) -> int:
        """Whole tokens that can be taken now."""
        self._refill()
        return int(self._tokens)

    def take(self, count: int = 1) -> bool:
        """Take ``count`` tokens if there are that many; otherwise take none."""
        self._refill()
        if self._tokens < count:
            return False
        self._tokens -= count
        return True

    def wait(self, count: int = 1) -> float:
        """Seconds until ``count`` tokens are there (0 when they are now)."""
        self._refill()
        return max(0.0, (count - self._tokens) / self.rate)

    @property
    def full(self) -> bool:
        self._refill()
        return self._tokens >= self.capacity


class SendLimits:
    """The global bucket and one bucket per destination number, as configured."""

    def __init__(self, rate: float, rate_per_number: float, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._per_number_rate = rate_per_number
        self.overall = TokenBucket(rate, clock=clock)
        self._numbers: dict[str, TokenBucket] = {}

    def budget(self, most: int) -> int:
        """How many messages the global limit allows now, at most ``most``."""
        return min(most, self.overall.available())

    def admit(self, number: str) -> float:
        """Take a token from both buckets and return 0, or take none and return the seconds to wait."""
        bucket = self._numbers.get(number)
        if bucket is None:
            if len(self._numbers) >= _PRUNE_AT:
                self._prune()
            bucket = self._numbers[number] = TokenBucket(self._per_number_rate, clock=self._clock)
        wait = max(bucket.wait(), self.overall.wait())
        if wait > 0:
            return wait
        bucket.take()
        self.overall.take()
        return 0.0

    def _prune(self) -> None:
        # A full bucket remembers nothing a fresh one would not: dropping it changes no decision.
        for number in [n for n, b in self._numbers.items() if b.full]:
            del self._numbers[number]
