"""The outbox dispatcher: claims due messages and delivers them through Mobitex, or records a dry run.

It keeps up to ``concurrency`` requests in flight and claims more as they land (``claims.py``),
each claim as many as the global rate limit allows; messages that share a text and a sender go
as one request of up to 500 numbers (``grouping.py``), and each number's own status line is
recorded on its own message, a group's results in one statement. The service runs one in its
lifespan; ``smsflows worker`` runs more, as separate processes.

Exactly once, with two windows left. A worker that dies after Mobitex took a request but before
the answer was recorded leaves its messages ``sending``; after the lease they are claimed and
sent again (the window is one database write long). And a request Mobitex never answered may
have been taken: each message's timeout policy says whether it is sent again (``retry``: at least
once) or held as ``unknown`` for an operator (``hold``: at most once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.models import utcnow
from app.db.outage import Outage, is_outage
from app.errors import GatewayNoAnswer, PermanentGatewayError, SettingsError, TransientGatewayError
from app.mobitex.client import MobitexClient, SendResult, refused
from app.mobitex.encoding import MessageTooLong, check_fits
from app.mobitex.transport import KeepAliveTransport, proxied
from app.outbox.backoff import Random, next_delay
from app.outbox.claims import UNDO_ATTEMPT, Claim, claim, next_due, worker_name
from app.outbox.finisher import Finisher
from app.outbox.grouping import Request, SendQueue
from app.outbox.limits import SendLimits
from app.settings import Settings

log = logging.getLogger("smsflows.outbox")

BACKOFF_BASE, BACKOFF_CAP = 5.0, 300.0  # seconds: 2.5-5 s after the first failure, at most 5 min
POLL_INTERVAL = 0.5  # seconds between looks at an idle outbox (a commit of new rows wakes it sooner)
CLAIM_MOST = 1000  # messages one claim takes at most: two full groups
CLAIM_PER_SLOT = 4  # personalised texts: a claim takes a few per slot, leaving the rest to other workers
_RECORD_PAUSES = (0.1, 0.5, 2.0)  # retrying the write of a result: a lost one means a resend
RECORD_LINGER = 0.02  # seconds a result waits for others to share its commit: ms next to the lease


@dataclass
class Tick:
    """What one round (or several, added up) did with the messages it claimed."""

    claimed: int = 0
    sent: int = 0
    dry_run: int = 0
    failed: int = 0
    retried: int = 0
    deferred: int = 0
    """Handed back unsent: the per-number limit, or too little of the lease left to send it."""
    lost: int = 0
    """Lease ran out before the result was written: the next claimer owns it."""
    unknown: int = 0
    """No answer came and the message's policy is ``hold``: an operator decides (never resent alone)."""
    requests: int = 0
    """sms.php requests made (a group of numbers is one)."""

    def __iadd__(self, other: Tick) -> Tick:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def count(self, outcome: str, n: int = 1) -> None:
        setattr(self, outcome, getattr(self, outcome) + n)

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
        gateway_timeout: float | None = None,
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
        self._slots = concurrency
        self._claim_least = CLAIM_PER_SLOT * concurrency
        self._claim_most = max(self._claim_least, min(CLAIM_MOST, 2 * settings.send_group_size))
        self._claim_size = self._claim_least
        """Grows while claims bring texts that travel in groups, falls back when they do not."""
        self._lease = timedelta(seconds=settings.send_lease)
        self._max_age = timedelta(seconds=settings.send_max_age)
        self._limits = limits or SendLimits(settings.send_rate, settings.send_rate_per_number)
        self._rng = rng or random.Random()
        # A request must end well inside the lease, or a second worker could claim the message
        # while the first is still waiting for Mobitex's answer.
        self._timeout = min(gateway_timeout or settings.send_timeout, settings.send_lease / 2)
        self._poll = poll_interval
        self._http = httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency))
        # Straight to a lean transport, unless a proxy from the environment must be used.
        self._transport = None if proxied(settings.mobitex_url) else KeepAliveTransport(concurrency)
        self._clients: dict[str | None, MobitexClient] = {}
        self._finisher = Finisher(engine, self.worker, linger=RECORD_LINGER, batch=concurrency)
        self._queue = SendQueue(settings.send_group_size)
        self._flying: set[asyncio.Task[None]] = set()
        self._writes: set[asyncio.Task[Any]] = set()
        self._tally = Tick()
        self._claim_after = 0.0  # monotonic: an empty claim is not repeated before the next poll
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        # Sending picks up within ten polls of the database coming back, as it always did.
        self.outage = Outage(log, "outbox", first_pause=poll_interval, max_pause=poll_interval * 10)

    def wake(self) -> None:
        """New messages are committed: look now instead of at the next poll."""
        self._claim_after = 0.0
        self._wake.set()

    async def start(self) -> None:
        log.info("outbox dispatcher %s started (%s)", self.worker, "dry run" if self.dry_run else "Mobitex")
        self._task = asyncio.create_task(self.run(), name="smsflows-outbox")

    async def stop(self) -> None:
        """Let the requests in flight land (their answers get recorded), hand back the rest, close."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self._settle()
        await self._http.aclose()
        if self._transport is not None:
            await self._transport.aclose()

    async def run(self) -> None:
        """Deliver until ``stop()``; a database outage pauses it without ending it."""
        while not self._stopping:
            try:
                await self._pump(until_idle=False, tally=Tick())
            except Exception as exc:  # neither an outage nor a bug in one round may stop all sending
                if is_outage(exc):
                    # Logged when it starts and when it ends, not once per try in between.
                    await self._pause(self.outage.failed(exc))
                else:
                    log.exception("outbox: a sending round failed; trying again shortly")
                    await self._pause(self._poll * 10)

    async def drain(self) -> Tick:
        """Send what is due (waiting out the rate limits), then return; for ``smsflows worker --once``.

        Messages waiting for a retry are left to a later run.
        """
        total = Tick()
        await self._pump(until_idle=True, tally=total)
        await self._settle()
        return total

    async def tick(self) -> Tick:
        """One round: claim what the global limit allows, send it all, record every answer."""
        done = Tick()
        self._tally = done
        await self._claim_more(force=True)
        while self._queue or self._flying:
            self._launch()
            await asyncio.wait(self._flying, return_when=asyncio.FIRST_COMPLETED)
        await self._settle()
        return done

    async def _pump(self, *, until_idle: bool, tally: Tick) -> None:
        """Keep ``concurrency`` requests in flight, claiming as slots free, until stopped (or idle)."""
        self._tally, self._claim_after = tally, 0.0
        horizon = timedelta(seconds=1 / self._settings.send_rate_per_number + self._poll)
        while not self._stopping:
            claimed = await self._claim_more()
            self._launch()
            if self._flying:
                await self._pause(self._poll)  # a landing request wakes it
                continue
            if until_idle and not claimed and not self._queue:
                await self._settle()
                due = await next_due(self._engine)
                if due is None or due > self._clock() + horizon:
                    return
                self._claim_after = 0.0
            limited = not self.dry_run and not self._limits.overall.available()
            await self._pause(self._limits.overall.wait() if limited else self._poll)

    async def _claim_more(self, force: bool = False) -> int:
        """Claim when slots are free and few messages are left to send; how many were claimed."""
        room = self._claim_size - len(self._queue)
        if room < self._claim_size // 2 or len(self._flying) >= self._slots:
            return 0
        if not force and time.monotonic() < self._claim_after:
            return 0
        most = room if self.dry_run else self._limits.budget(room)
        claims = await claim(self._engine, self.worker, self._clock(), self._lease, most)
        self.outage.recovered()
        if len(claims) < most:
            self._claim_after = time.monotonic() + self._poll  # the outbox is empty for now
        self._tally.claimed += len(claims)
        grouped = 0
        for held in claims:
            try:
                check_fits(held.text)
            except MessageTooLong as exc:
                self._write(self._failed([held], str(exc)))
                continue
            wait = 0.0 if self.dry_run else self._limits.admit(held.to_number)
            if wait:
                # Spacing messages to one phone must not hold the others: this one waits in the queue.
                self._write(self._release([held], self._clock() + timedelta(seconds=wait)))
            else:
                grouped += self._queue.add(held, self._sender(held.from_number))
        if claims:
            many = grouped * 2 >= len(claims)  # most joined a group: a bigger claim makes bigger groups
            self._claim_size = min(self._claim_most, self._claim_size * 2) if many else self._claim_least
        return len(claims)

    def _launch(self) -> None:
        while len(self._flying) < self._slots and (request := self._queue.next()) is not None:
            task = asyncio.create_task(self._deliver(request))
            self._flying.add(task)
            task.add_done_callback(self._landed)

    def _landed(self, task: asyncio.Task[None]) -> None:
        self._flying.discard(task)
        self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("outbox: a request failed unexpectedly", exc_info=task.exception())

    def _write(self, outcome: Any) -> None:
        task = asyncio.ensure_future(outcome)
        self._writes.add(task)
        task.add_done_callback(self._written)

    def _written(self, task: asyncio.Task[Any]) -> None:
        self._writes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("outbox: recording an outcome failed unexpectedly", exc_info=task.exception())

    async def _settle(self) -> None:
        """Hand back what was claimed and not started, and wait for every request and write."""
        if self._stopping and self._queue:
            self._write(self._release(self._queue.take_all(), None))
        while self._flying or self._writes:
            await asyncio.gather(*self._flying, *self._writes, return_exceptions=True)

    async def _deliver(self, request: Request) -> None:
        """Send one request and record each of its messages' outcome."""
        try:
            now = self._clock()
            # Too little lease left: another worker could claim it while we wait for the answer.
            margin = timedelta(seconds=self._timeout + 1)
            late = [h for h in request.claims if h.claimed_until - now < margin]
            claims = [h for h in request.claims if h.claimed_until - now >= margin]
            if late:
                await self._release(late, None)
            if claims:
                await self._send(request.sender, request.text, claims)
        finally:
            self._queue.done(request)

    async def _send(self, sender: str | None, text: str, claims: list[Claim]) -> None:
        kind = check_fits(text).mobitex_type
        if self.dry_run:
            log.info("outbox: dry run, %d message(s) not sent: %s", len(claims), [h.id for h in claims])
            await self._record(claims, "dry_run", status="dry-run", mobitex_type=kind)
            return
        self._tally.requests += 1
        ext_id = claims[0].ext_id if len(claims) == 1 else None  # Mobitex takes one ext_id a request
        try:
            answers = await self._client(sender).send_each(
                [h.to_number for h in claims], text, ext_id=ext_id, type=kind
            )
        except GatewayNoAnswer as exc:
            await self._no_answer(claims, str(exc))
            return
        except PermanentGatewayError as exc:
            await self._failed(claims, str(exc))
            return
        except TransientGatewayError as exc:
            await self._retry(claims, str(exc))
            return
        except Exception as exc:  # a bug must not strand the messages: they are retried until max age
            log.exception("outbox %s: unexpected error while sending", [h.id for h in claims])
            await self._retry(claims, f"unexpected error: {type(exc).__name__}: {exc}")
            return
        # The answer is in: the slot takes the next request while this one's results are written
        # (with others', in one commit). Until then the rows stay ``sending`` under this lease.
        self._write(self._answered(claims, answers, kind))

    async def _answered(self, claims: list[Claim], answers: Sequence[SendResult | None], kind: str) -> None:
        """Record each number's own line: taken, refused (for good or for now), or missing."""
        sent: list[tuple[Claim, str]] = []
        refusals: dict[str, list[Claim]] = {}
        missing: list[Claim] = []
        for held, answer in zip(claims, answers, strict=True):
            if answer is None:
                missing.append(held)
            elif answer.ok:
                sent.append((held, answer.message_id))
            else:
                refusals.setdefault(answer.status, []).append(held)
        jobs = []
        if sent:
            jobs.append(
                self._record(
                    [h for h, _ in sent],
                    "sent",
                    mobitex_ids=[m for _, m in sent],
                    sent_at=self._clock(),
                    status="sent",
                    mobitex_type=kind,
                    next_attempt_at=None,
                    last_error=None,  # an earlier attempt's error no longer describes the message
                )
            )
        for status, group in refusals.items():
            # A number refused among good ones fails (or waits for a retry) alone.
            error = refused(SendResult(status, "", group[0].to_number if len(group) == 1 else ""))
            transient = isinstance(error, TransientGatewayError)
            jobs.append(self._retry(group, str(error)) if transient else self._failed(group, str(error)))
        if missing:
            jobs.append(self._no_answer(missing, "Mobitex's answer had no status line for the number"))
        if len(jobs) == 1:  # the usual answer: every number taken
            await jobs[0]
        else:
            await asyncio.gather(*jobs)

    async def _failed(self, claims: list[Claim], error: str) -> None:
        for held in claims:
            log.warning("outbox %d to %s failed: %s", held.id, held.to_number, error)
        await self._record(claims, "failed", status="failed", last_error=error, next_attempt_at=None)

    async def _retry(self, claims: list[Claim], error: str) -> None:
        now = self._clock()
        # One due time for the group, so that it travels together again.
        delay = next_delay(max(h.attempts for h in claims), BACKOFF_BASE, BACKOFF_CAP, self._rng)
        due = now + timedelta(seconds=delay)
        expired = [h for h in claims if due > h.created_at + self._max_age]
        again = [h for h in claims if due <= h.created_at + self._max_age]
        jobs = []
        for held in expired:
            jobs.append(self._failed(
                [held], f"gave up after {held.attempts} attempt(s) in {_age(now - held.created_at)} "
                f"(SMSFLOWS_SEND_MAX_AGE={self._settings.send_max_age}); last error: {error}",
            ))  # fmt: skip
        if again:
            for held in again:
                log.warning(
                    "outbox %d to %s, attempt %d: %s; next attempt in %.0f s",
                    held.id, held.to_number, held.attempts, error, delay,
                )  # fmt: skip
            values: dict[str, Any] = {"status": "queued", "last_error": error, "next_attempt_at": due}
            jobs.append(self._record(again, "retried", **values))
        await asyncio.gather(*jobs)

    async def _no_answer(self, claims: list[Claim], error: str) -> None:
        """Mobitex may have taken them: each message's policy decides between a resend and an operator."""
        held = [h for h in claims if self._policy(h) == "hold"]
        retried = [h for h in claims if self._policy(h) != "hold"]
        jobs = []
        if retried:
            jobs.append(self._retry(retried, error))
        if held:
            for h in held:
                log.warning("outbox %d to %s held as unknown: %s", h.id, h.to_number, error)
            note = f"{error}; held (on_timeout=hold): resend it or mark it failed"
            values: dict[str, Any] = {"status": "unknown", "last_error": note, "next_attempt_at": None}
            jobs.append(self._record(held, "unknown", **values))
        await asyncio.gather(*jobs)

    def _policy(self, held: Claim) -> str:
        if held.on_timeout:
            return held.on_timeout
        s = self._settings
        return s.reply_on_timeout if held.inbound_id is not None else s.send_on_timeout

    async def _release(self, claims: list[Claim], until: datetime | None) -> None:
        """Hand messages back unsent; they count as deferred (or lost, had the lease run out)."""
        await self._record(claims, "deferred", status="queued", attempts=UNDO_ATTEMPT, next_attempt_at=until)

    async def _record(
        self,
        claims: list[Claim],
        outcome: str,
        *,
        mobitex_ids: Sequence[str] | None = None,
        sent_at: datetime | None = None,
        **values: Any,
    ) -> None:
        """Write the outcome at once; a database hiccup is retried, since a lost 'sent' means a resend."""
        for pause in (*_RECORD_PAUSES, None):
            try:
                found = await self._finisher.finish_many(claims, mobitex_ids, sent_at, **values)
                break
            except (DBAPIError, OSError) as exc:
                if pause is None:
                    log.error(
                        "outbox %s: outcome %s not recorded (%s); retried after the lease",
                        [h.id for h in claims], outcome, exc,
                    )  # fmt: skip
                    self._tally.count("lost", len(claims))
                    return
                await asyncio.sleep(pause)
        kept = sum(found)
        self._tally.count(outcome, kept)
        if kept < len(claims):
            lost = [h.id for h, ok in zip(claims, found, strict=True) if not ok]
            log.warning("outbox %s: lease ran out before the outcome (%s) was recorded", lost, outcome)
            self._tally.count("lost", len(lost))

    def _sender(self, from_number: str | None) -> str | None:
        # The account's sender when set; otherwise the number the message came in on.
        return self._settings.mobitex_from or from_number

    def _client(self, sender: str | None) -> MobitexClient:
        client = self._clients.get(sender)
        if client is None:
            s = self._settings
            assert s.mobitex_user and s.mobitex_password  # checked in __init__
            client = MobitexClient(
                s.mobitex_url, s.mobitex_user, s.mobitex_password, sender, self._http, self._timeout,
                transport=self._transport,
            )  # fmt: skip
            self._clients[sender] = client
        return client

    async def _pause(self, seconds: float) -> None:
        if not self._wake.is_set():
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
