"""Send-back actions: a signed JSON POST to an application's URL about an answer, retried until it lands.

A ``reply`` flow queues the action in the transaction that records the answer; the deliverer,
running beside the outbox dispatcher, posts it. Retries have the outbox's shape: a claim under a
lease (a deliverer that died mid-POST is replaced once ``SMSFLOWS_SEND_LEASE`` runs out), backoff
with jitter after each failure, and ``failed`` once the action is older than
``SMSFLOWS_SEND_MAX_AGE``. Any answer but 2xx counts as a failure.

Signature, as Standard Webhooks define it: ``webhook-signature: v1,<base64 HMAC-SHA256>`` over
``"<webhook-id>.<webhook-timestamp>." + raw body``, keyed with ``SMSFLOWS_ACTION_SECRET``. The id
is the action's: a POST whose answer was lost is sent again with it, so the receiver acts once per
id; it is signed with the rest, or a captured request replayed under another id would be taken
as new. The receiver refuses a timestamp more than a few minutes off its clock.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import logging
import random
import time
from datetime import datetime, timedelta
from typing import Any

import httpx
import msgspec
from sqlalchemy import ColumnElement, Connection, Table, and_, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app import __version__
from app.db.models import SendBackAction, utcnow
from app.db.outage import Outage, is_outage
from app.outbox.backoff import next_delay
from app.settings import Settings

log = logging.getLogger("smsflows.actions")

ACTIONS: Table = SendBackAction.__table__  # type: ignore[assignment]
ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER = "webhook-id", "webhook-timestamp", "webhook-signature"
BASE_DELAY, MAX_DELAY = 1.0, 600.0  # seconds: the first retry comes soon, later ones back off to 10 min
POLL, BATCH, TIMEOUT = 0.5, 50, 10.0


def signing_key(secret: str) -> bytes:
    """The HMAC key of ``secret``: a ``whsec_…`` secret is base64, as Standard Webhooks libraries read it."""
    if secret.startswith("whsec_"):
        with contextlib.suppress(binascii.Error, ValueError):
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    return secret.encode()


def sign(secret: str, action_id: str, timestamp: str, body: bytes) -> str:
    """The ``webhook-signature`` value of action ``action_id`` with ``body``, sent at ``timestamp``."""
    signed = f"{action_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def queue_action(
    conn: Connection, *, url: str, payload: str, outbox_id: int, inbound_id: int, flow_id: str, now: datetime
) -> int:
    """Queue one POST in the caller's transaction; the deliverer sends it once that commits."""
    row = {
        "outbox_id": outbox_id,
        "inbound_id": inbound_id,
        "flow_id": flow_id,
        "url": url,
        "payload": payload,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }
    return int(conn.execute(insert(ACTIONS).returning(ACTIONS.c.id), row).scalar_one())


class _Held(msgspec.Struct, frozen=True):
    id: int
    url: str
    payload: str
    attempts: int  # counting this one: with the id, it names the claim
    created_at: datetime


def _due(now: datetime) -> ColumnElement[bool]:
    c = ACTIONS.c
    return and_(
        c.status == "pending",
        or_(c.next_attempt_at.is_(None), c.next_attempt_at <= now),
        or_(c.claimed_until.is_(None), c.claimed_until < now),  # unclaimed, or its deliverer died
    )


async def claim(engine: AsyncEngine, now: datetime, lease: timedelta, limit: int = BATCH) -> list[_Held]:
    """Take up to ``limit`` due actions until ``now + lease`` (SKIP LOCKED on PostgreSQL)."""
    c = ACTIONS.c
    taken = {"claimed_until": now + lease, "attempts": c.attempts + 1}
    pick = select(c.id).where(_due(now)).order_by(c.id).limit(limit)
    returned = (c.id, c.url, c.payload, c.attempts, c.created_at)
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            ids = list((await conn.execute(pick.with_for_update(skip_locked=True))).scalars())
            if not ids:
                return []
            stmt = update(ACTIONS).where(c.id.in_(ids))
        else:  # one statement under SQLite's write lock; the outer check keeps it race-free
            stmt = update(ACTIONS).where(c.id.in_(pick.scalar_subquery()), _due(now))
        rows = (await conn.execute(stmt.values(taken).returning(*returned))).all()
    return sorted((_Held(*row) for row in rows), key=lambda h: h.id)


async def _finish(engine: AsyncEngine, held: _Held, **values: Any) -> bool:
    """Record how the attempt went, unless the lease ran out and another deliverer took over."""
    c = ACTIONS.c
    stmt = (
        update(ACTIONS)
        .where(c.id == held.id, c.status == "pending", c.attempts == held.attempts)
        .values(claimed_until=None, **values)
    )
    async with engine.begin() as conn:
        return (await conn.execute(stmt)).rowcount == 1


class ActionDeliverer:
    """Posts due send-back actions; start() it in the service's lifespan (or a worker), stop() at the end."""

    def __init__(
        self, engine: AsyncEngine, settings: Settings, http: httpx.AsyncClient | None = None
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._http = http or httpx.AsyncClient(
            timeout=TIMEOUT, follow_redirects=False, headers={"User-Agent": f"smsflows/{__version__}"}
        )
        self._rng = random.Random()
        self._task: asyncio.Task[None] | None = None
        self._warned = False
        self.outage = Outage(log, "send-back actions")

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="smsflows-action-deliverer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._http.aclose()

    async def _run(self) -> None:
        while True:
            try:
                done = await self.deliver_due()
                self.outage.recovered()
            except Exception as exc:  # the database may be away a moment; never let the loop die
                if is_outage(exc):
                    await asyncio.sleep(self.outage.failed(exc))  # logged once, not every round
                    continue
                log.exception("send-back actions: delivery round failed")
                done = 0
            if done < BATCH:
                await asyncio.sleep(POLL)

    async def deliver_due(self) -> int:
        """One round: claim what is due and post it; returns how many were claimed."""
        held = await claim(self._engine, utcnow(), timedelta(seconds=self._settings.send_lease))
        await asyncio.gather(*(self._deliver(h) for h in held))
        return len(held)

    async def _deliver(self, held: _Held) -> None:
        error = await self._post(held)
        now = utcnow()
        if error is None:
            await _finish(self._engine, held, status="delivered", delivered_at=now, last_error=None)
            return
        delay = next_delay(held.attempts, BASE_DELAY, MAX_DELAY, self._rng)
        due = now + timedelta(seconds=delay)
        max_age = self._settings.send_max_age
        if due > held.created_at + timedelta(seconds=max_age):  # the next try would be too late
            age = int((now - held.created_at).total_seconds())
            error = (
                f"gave up after {held.attempts} attempt(s) in {age} s "
                f"(SMSFLOWS_SEND_MAX_AGE={max_age}): {error}"
            )
            log.error("send-back action %d to %s failed: %s", held.id, held.url, error)
            await _finish(self._engine, held, status="failed", last_error=error)
            return
        log.info("send-back action %d: %s; next try in %.1f s", held.id, error, delay)
        await _finish(self._engine, held, last_error=error, next_attempt_at=due)

    async def _post(self, held: _Held) -> str | None:
        """POST the action; None when the receiver took it (2xx), else why not."""
        secret = self._settings.action_secret
        if secret is None:
            if not self._warned:
                log.warning("SMSFLOWS_ACTION_SECRET is not set: send-back actions are held until it is")
                self._warned = True
            return "SMSFLOWS_ACTION_SECRET is not set: set it so that receivers can check the signature"
        body, timestamp, action_id = held.payload.encode(), str(int(time.time())), str(held.id)
        headers = {
            "Content-Type": "application/json",
            ID_HEADER: action_id,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(secret, action_id, timestamp, body),
        }
        try:
            response = await self._http.post(held.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return f"{exc.__class__.__name__}: {exc}"[:500] if str(exc) else exc.__class__.__name__
        if response.is_success:
            return None
        return f"HTTP {response.status_code}: {response.text[:200]}".rstrip(": ")
