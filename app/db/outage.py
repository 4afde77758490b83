"""A database outage seen from a loop that keeps trying: logged once when it starts and once when it
ends, with growing pauses between the tries in between."""

from __future__ import annotations

import logging
import time

from sqlalchemy.exc import DBAPIError

from app.errors import DatabaseUnavailable


def is_outage(exc: BaseException) -> bool:
    """The database could not be reached (as opposed to a bug in the round that failed)."""
    return isinstance(exc, DBAPIError | OSError | DatabaseUnavailable | TimeoutError)


# PostgreSQL ends a transaction with these when it ran into others at once (a deadlock; a
# serialization failure under REPEATABLE READ or SERIALIZABLE): it is rolled back whole, and
# the same transaction run again usually goes through.
_RETRYABLE = frozenset({"40P01", "40001"})


# A transaction rolled back for a deadlock runs again up to this many times in all: two that met
# once usually meet again only when the same hot rows keep coming (a code redeemed by many phones
# at once in two processes).
DEADLOCK_TRIES = 3


def is_retryable(exc: BaseException) -> bool:
    """The database rolled the transaction back because of concurrent ones: run it again."""
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in _RETRYABLE


class Outage:
    """State of one loop's view of the database: up, or down since when and for how many tries."""

    def __init__(
        self, log: logging.Logger, what: str, first_pause: float = 0.5, max_pause: float = 30.0
    ) -> None:
        self._log, self._what = log, what
        self._first, self._max = first_pause, max_pause
        self.since: float | None = None
        self.failures = 0

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, exc: BaseException) -> float:
        """Note one failed try; returns how long to wait before the next one."""
        if self.since is None:
            self.since = time.monotonic()
            self._log.error(
                "%s: cannot reach the database (%s: %s); trying again with growing pauses, "
                "and saying so once it is back",
                self._what,
                exc.__class__.__name__,
                str(exc).splitlines()[0] if str(exc) else "no detail",
            )
        self.failures += 1
        pause: float = min(self._max, self._first * 2 ** (self.failures - 1))
        return pause

    def recovered(self) -> None:
        """Note a successful try; logs the end of the outage if there was one."""
        if self.since is None:
            return
        self._log.warning(
            "%s: the database is back after %.1f s and %d failed tries",
            self._what,
            time.monotonic() - self.since,
            self.failures,
        )
        self.since, self.failures = None, 0
