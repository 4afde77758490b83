"""While the database is known to be down, MO requests are answered 503 at once.

Without this, each request waits for its own failed connection attempt, and Mobitex's retries pile
up behind them. One probe in the background decides when the database is back; the outage is
logged once when it starts and once when it ends, with the count of requests refused meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger("smsflows.ingest")

PROBE_TIMEOUT = 5.0  # seconds one probe may take before it counts as failed
MAX_PROBE_PAUSE = 5.0  # seconds between probes at most: a few seconds of 503s more is harmless


class DatabaseGate:
    """Whether the database is known to be down, and the one probe that finds it back."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self.down_since: float | None = None
        self.refused = 0
        self._probe: asyncio.Task[None] | None = None

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def refuse(self) -> None:
        """Count one request answered 503 during the outage."""
        self.refused += 1

    def failed(self, reason: object) -> None:
        """A write found the database unavailable: close the gate and start the probe."""
        self.refuse()
        if self.down_since is not None:
            return
        self.down_since = time.monotonic()
        log.error(
            "database unavailable (%s): MO requests are answered 503 at once until it is back; "
            "Mobitex retries them",
            reason,
        )
        self._probe = asyncio.create_task(self._wait_until_back(), name="smsflows-database-probe")

    async def _wait_until_back(self) -> None:
        pause = 0.25
        while True:
            await asyncio.sleep(pause)
            try:
                async with asyncio.timeout(PROBE_TIMEOUT), self._engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
            except Exception:  # any failure means "still down"; the next probe waits longer
                pause = min(pause * 2, MAX_PROBE_PAUSE)
                continue
            break
        assert self.down_since is not None
        log.warning(
            "database back after %.1f s: %d MO request(s) were answered 503 meanwhile",
            time.monotonic() - self.down_since,
            self.refused,
        )
        self.down_since, self.refused, self._probe = None, 0, None

    async def stop(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
            self._probe = None
