"""The outbox dispatcher: claims due messages and delivers them through Mobitex, or records a dry run.

One round (:meth:`Dispatcher.tick`): ask the global rate limit how many may go, claim that many
(``claims.py``), hold back those whose number is over its own limit, send the rest concurrently, and
record each answer the moment it arrives. The service runs one in its lifespan; ``smsflows worker``
runs more, as separate processes.

Exactly once, with one window left: a worker that dies after Mobitex accepted a message but before
the answer was recorded leaves it ``sending``; after the lease it is claimed and sent again. The
window is one database write long (the answer is recorded at once, with retries). A timeout is the
other face of it: Mobitex may have taken a message whose answer never came, and the retry resends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.models import utcnow
from app.errors import PermanentGatewayError, SettingsError, TransientGatewayError
from app.mobitex.client import MobitexClient
from app.mobitex.encoding import MessageTooLong, check_fits
from app.outbox.backoff import Random, next_delay
from app.outbox.claims import Claim, Finisher, claim, next_due, worker_name
from app.outbox.limits import SendLimits
from app.settings import Settings

log = logging.getLogger("smsflows.outbox")

BACKOFF_BASE, BACKOFF_CAP = 5.0, 300.0  # seconds: 2.5-5 s after the first failure, at most 5 min
POLL_INTERVAL = 0.5  # seconds between looks at an idle outbox (a commit of new rows wakes it sooner)
GATEWAY_TIMEOUT = 10.0  # seconds for one sms.php request; capped at half the lease
_RECORD_PAUSES = (0.1, 0.5, 2.0)  # retrying the write of a result: a lost one means a resend


@dataclass
class Tick:
    """What one round (or several, added up) did with the messages it claimed."""

    claimed: int = 0
    sent: int = 0
    dry_run: int = 0
    failed: int = 0
    retried: int = 0
    deferred: int = 0
    """Held back by the per-number limit: queued again for when the number may get one."""
    lost: int = 0
    """Lease ran out before the result was written: the next claimer owns it."""

    def __iadd__(self, other: Tick) -> Tick:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def summary(self) -> str:
        return ", ".join(f"{getattr(self, f.name)} {f.name.replace('_', '-')}" for f in fields(self))


class Dispatcher:
    """Delivers the outbox of ``engine`` with ``settings``; ``start()``/``stop()`` or ``drain()``.

    ``clock`` (UTC now) and ``limits`` (with its own monotonic clock) let tests move time by hand.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        *,
        concurrency: int = 8,
        clock: Callable[[], datetime] = utcnow,
        limits: SendLimits | None = None,
        rng: Random | None = None,
        gateway_timeout: float = GATEWAY_TIMEOUT,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        self.worker = worker_name()
        self.dry_run = not settings.sends_for_real
        if not self.dry_run and not (settings.mobitex_user and settings.mobitex_password):
            raise SettingsError(
                "SMSFLOWS_SEND_MODE=mobitex needs SMSFLOWS_MOBITEX_USER and SMSFLOWS_MOBITEX_PASSWORD; "
                "set them, or use SMSFLOWS_SEND_MODE=dry-run"
            )
        self._engine, self._settings, self._clock = engine, settings, clock
        self._batch = concurrency
        self._lease = timedelta(seconds=settings.send_lease)
        self._max_age = timedelta(seconds=settings.send_max_age)
        self._limits = limits or SendLimits(settings.send_rate, settings.send_rate_per_number)
        self._rng = rng or random.Random()
        # A request must end well inside the lease, or a second worker could claim the message
        # while the first is still waiting for Mobitex's answer.
        self._timeout = min(gateway_timeout, settings.send_lease / 2)
        self._poll = poll_interval
        self._http = httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency))
        self._clients: dict[str | None, MobitexClient] = {}
        self._finisher = Finisher(engine, self.worker)
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """New messages are committed: look now instead of at the next poll."""
        self._wake.set()

    async def start(self) -> None:
        log.info("outbox dispatcher %s started (%s)", self.worker, "dry run" if self.dry_run else "Mobitex")
        self._task = asyncio.create_task(self.run(), name="smsflows-outbox")

    async def stop(self) -> None:
        """Finish the round in progress (its answers get recorded), then close."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self._http.aclose()

    async def run(self) -> None:
        """Deliver until ``stop()``; a database outage pauses it without ending it."""
        while not self._stopping:
            try:
                done = await self.tick()
            except Exception as exc:  # neither an outage nor a bug in one round may stop all sending
                if isinstance(exc, DBAPIError | OSError):
                    log.error("outbox: cannot reach the database (%s); trying again shortly", exc)
                else:
                    log.exception("outbox: a sending round failed; trying again shortly")
                await self._pause(self._poll * 10)
                continue
            if done.claimed >= self._batch:
                continue  # more may be due
            if done.claimed and not self.dry_run and not self._limits.overall.available():
                await self._pause(self._limits.overall.wait())  # held back by the rate: the next token
            else:
                await self._pause(self._poll)

    async def drain(self) -> Tick:
        """Send what is due (waiting out the rate limits), then return; for ``smsflows worker --once``.

        Messages waiting for a retry are left to a later run.
        """
        total = Tick()
        horizon = timedelta(seconds=1 / self._settings.send_rate_per_number + self._poll)
        while not self._stopping:
            done = await self.tick()
            total += done
            if done.claimed:
                continue
            due = await next_due(self._engine)
            if due is None or due > self._clock() + horizon:
                break
            await self._pause(min(self._poll, self._limits.overall.wait() or self._poll))
        return total

    async def tick(self) -> Tick:
        """One round: claim what the global limit allows, send it, record every answer."""
        done = Tick()
        most = self._batch if self.dry_run else self._limits.budget(self._batch)
        claims = await claim(self._engine, self.worker, self._clock(), self._lease, most)
        done.claimed = len(claims)
        by_number: dict[str, list[Claim]] = {}
        held_back = []
        for held in claims:
            wait = 0.0 if self.dry_run else self._limits.admit(held.to_number)
            if wait:
                # Spacing messages to one phone must not hold the others: this one waits in the queue.
                held_back.append(self._finisher.release(held, self._clock() + timedelta(seconds=wait)))
            else:
                by_number.setdefault(held.to_number, []).append(held)
        released, sent = await asyncio.gather(
            asyncio.gather(*held_back), asyncio.gather(*map(self._deliver_in_order, by_number.values()))
        )
        done.deferred, done.lost = released.count(True), released.count(False)
        for outcome in (outcome for outcomes in sent for outcome in outcomes):
            setattr(done, outcome, getattr(done, outcome) + 1)
        return done

    async def _deliver_in_order(self, claims: list[Claim]) -> list[str]:
        """One phone's messages one after the other, so they arrive in the order they were queued."""
        return [await self._deliver(held) for held in claims]

    async def _deliver(self, held: Claim) -> str:
        """Send one claimed message and record the outcome; returns the Tick field to count it in."""
        if self._clock() >= held.claimed_until:
            return "lost"  # the claim took longer than the lease: leave it to the next claimer
        try:
            measured = check_fits(held.text)
        except MessageTooLong as exc:
            return await self._failed(held, str(exc))
        if self.dry_run:
            log.info("outbox %d: dry run, not sent to %s", held.id, held.to_number)
            return await self._record(held, "dry_run", status="dry-run", mobitex_type=measured.mobitex_type)
        try:
            answer = await self._client(held.from_number).send(
                held.to_number, held.text, ext_id=held.ext_id, type=measured.mobitex_type
            )
        except PermanentGatewayError as exc:
            return await self._failed(held, str(exc))
        except TransientGatewayError as exc:
            return await self._retry(held, str(exc))
        except Exception as exc:  # a bug must not strand the message: it is retried until max age
            log.exception("outbox %d: unexpected error while sending", held.id)
            return await self._retry(held, f"unexpected error: {type(exc).__name__}: {exc}")
        return await self._record(
            held,
            "sent",
            status="sent",
            mobitex_id=answer.message_id,
            mobitex_type=measured.mobitex_type,
            sent_at=self._clock(),
            next_attempt_at=None,
            last_error=None,  # an earlier attempt's error no longer describes the message
        )

    async def _failed(self, held: Claim, error: str) -> str:
        log.warning("outbox %d to %s failed: %s", held.id, held.to_number, error)
        return await self._record(held, "failed", status="failed", last_error=error, next_attempt_at=None)

    async def _retry(self, held: Claim, error: str) -> str:
        now = self._clock()
        due = now + timedelta(seconds=next_delay(held.attempts, BACKOFF_BASE, BACKOFF_CAP, self._rng))
        deadline = held.created_at + self._max_age
        if due > deadline:
            return await self._failed(
                held, f"gave up after {held.attempts} attempt(s) in {_age(now - held.created_at)} "
                f"(SMSFLOWS_SEND_MAX_AGE={self._settings.send_max_age}); last error: {error}",
            )  # fmt: skip
        log.warning(
            "outbox %d to %s, attempt %d: %s; next attempt in %.0f s",
            held.id, held.to_number, held.attempts, error, (due - now).total_seconds(),
        )  # fmt: skip
        return await self._record(held, "retried", status="queued", last_error=error, next_attempt_at=due)

    async def _record(self, held: Claim, outcome: str, **values: Any) -> str:
        """Write the outcome at once; a database hiccup is retried, since a lost 'sent' means a resend."""
        for pause in (*_RECORD_PAUSES, None):
            try:
                if await self._finisher.finish(held, **values):
                    return outcome
                log.warning("outbox %d: lease ran out before its outcome (%s) was recorded", held.id, outcome)
                return "lost"
            except (DBAPIError, OSError) as exc:
                if pause is None:
                    log.error(
                        "outbox %d: outcome %s not recorded (%s); it will be retried after the lease",
                        held.id, outcome, exc,
                    )  # fmt: skip
                    return "lost"
                await asyncio.sleep(pause)
        raise AssertionError("unreachable")

    def _client(self, from_number: str | None) -> MobitexClient:
        # The account's sender when set; otherwise the number the message came in on.
        sender = self._settings.mobitex_from or from_number
        client = self._clients.get(sender)
        if client is None:
            s = self._settings
            assert s.mobitex_user and s.mobitex_password  # checked in __init__
            client = MobitexClient(
                s.mobitex_url, s.mobitex_user, s.mobitex_password, sender, self._http, self._timeout
            )
            self._clients[sender] = client
        return client

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()


def _age(delta: timedelta) -> str:
    minutes, seconds = divmod(int(delta.total_seconds()), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


async def run_worker(settings: Settings, engine: AsyncEngine, concurrency: int, once: bool) -> Tick | None:
    """``smsflows worker``: deliver until SIGINT/SIGTERM (finishing the round), or once with ``once``."""
    dispatcher = Dispatcher(engine, settings, concurrency=concurrency)
    if once:
        try:
            return await dispatcher.drain()
        finally:
            await dispatcher.stop()
    from app.outbox.actions import ActionDeliverer  # the worker delivers send-back actions too

    actions = ActionDeliverer(engine, settings)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await dispatcher.start()
    await actions.start()
    await stop.wait()
    log.info("outbox dispatcher %s stopping", dispatcher.worker)
    await actions.stop()
    await dispatcher.stop()
    return None
