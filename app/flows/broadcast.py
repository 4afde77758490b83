"""Broadcast: one message to every active member of a subscription list who has not sent STOP.

Each chunk of
recipients commits on its own; with ``--idempotency-key`` every recipient's message has its own
key (``KEY:phone``), so a broadcast that was interrupted is finished by running it again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
from sqlalchemy import Connection, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.flow_models import Subscription
from app.db.migrate import open_database
from app.db.models import Contact, utcnow
from app.errors import InvalidRequest, InvalidSend
from app.flows.kinds.subscription import subscribers
from app.mobitex.encoding import SmsEncoding, check_fits
from app.outbox.sending import NewMessage, queue
from app.settings import Settings

MAX_KEY = 100  # a broadcast adds ":<phone>" to it; the column holds 128
CHUNK = 500  # recipients per transaction: a broadcast must not hold up the MO writer for long
ENCODINGS = {"gsm7": "GSM-7", "ucs2": "UCS-2"}


@dataclass
class BroadcastReport:
    list_id: str
    recipients: int
    opted_out: int  # active members under the global STOP: never sent to
    measured: SmsEncoding
    queued: int = 0
    already: int = 0  # queued by an earlier run with the same idempotency key
    skipped: list[str] = field(default_factory=list)  # why a recipient got nothing

    @property
    def parts(self) -> int:
        return self.recipients * self.measured.parts

    def preview(self) -> str:
        m = self.measured
        return (
            f"{self.recipients:,} recipient(s) on list {self.list_id} ({self.opted_out:,} opted out, "
            f"skipped); each message is {m.length} {ENCODINGS[m.encoding]} characters in "
            f"{m.parts} part(s): {self.parts:,} SMS part(s) in all"
        )

    def summary(self) -> str:
        done = f"{self.queued:,} message(s) queued"
        if self.already:
            done += f", {self.already:,} already queued by an earlier run with this key"
        if self.skipped:
            done += f", {len(self.skipped):,} skipped"
        return done


async def run_broadcast(
    settings: Settings,
    list_id: str,
    message: NewMessage,
    *,
    dry_run: bool,
    on_progress: Callable[[int, int], None] | None = None,
) -> BroadcastReport:
    """``smsflows broadcast``: queue ``message`` (its ``to`` is ignored) to every member of the list;
    ``on_progress(done, recipients)`` after each chunk."""
    async with open_database(settings) as engine:
        async with engine.connect() as conn:
            report, phones = await conn.run_sync(plan, list_id, message.text)
        if dry_run:
            return report
        for start in range(0, len(phones), CHUNK):
            if on_progress is not None:
                on_progress(start, len(phones))
            chunk = phones[start : start + CHUNK]
            async with engine.begin() as conn:
                await conn.run_sync(_queue_chunk, chunk, message, report)
        if on_progress is not None:
            on_progress(len(phones), len(phones))
    return report


def plan(conn: Connection, list_id: str, text: str) -> tuple[BroadcastReport, list[str]]:
    """What a broadcast of ``text`` to the list would do (nothing queued yet), and its recipients.

    Raises :class:`~app.mobitex.encoding.MessageTooLong`, or :class:`~app.errors.InvalidRequest` for a list
    nobody on it may get messages from.
    """
    measured = check_fits(text)
    phones, opted_out, lists = _audience(conn, list_id)
    if not phones:
        known = ", ".join(lists) or "none yet"
        raise InvalidRequest(
            f"list {list_id!r} has no active member who may get messages (lists: {known}); "
            "check the name: it is the list of a subscription flow"
        )
    return BroadcastReport(list_id, len(phones), opted_out, measured), phones


async def broadcast(engine: AsyncEngine, list_id: str, message: NewMessage) -> BroadcastReport:
    """Queue ``message`` to every reachable member of the list on ``engine``, a chunk per transaction."""
    async with engine.connect() as conn:
        report, phones = await conn.run_sync(plan, list_id, message.text)
    for start in range(0, len(phones), CHUNK):
        async with engine.begin() as conn:
            await conn.run_sync(_queue_chunk, phones[start : start + CHUNK], message, report)
    return report


def list_names(conn: Connection) -> list[str]:
    """Every subscription list that has had a member."""
    return list(conn.scalars(select(Subscription.list_id).distinct().order_by(Subscription.list_id)))


def _audience(conn: Connection, list_id: str) -> tuple[list[str], int, list[str]]:
    """The list's reachable phones, how many active members opted out, and every list's name."""
    phones = subscribers(conn, list_id)
    active = conn.scalar(
        select(func.count())
        .select_from(Subscription)
        .join(Contact, Contact.phone == Subscription.phone)
        .where(
            Subscription.list_id == list_id,
            Subscription.status == "active",
            Contact.opted_out_at.is_not(None),
        )
    )
    return phones, int(active or 0), list_names(conn)


def _queue_chunk(conn: Connection, phones: list[str], message: NewMessage, report: BroadcastReport) -> None:
    now = utcnow()
    key = message.idempotency_key
    for phone in phones:
        one = msgspec.structs.replace(message, to=phone, idempotency_key=f"{key}:{phone}" if key else None)
        try:
            queued = queue(conn, one, now)
        except InvalidSend as exc:  # e.g. STOP arrived since the list was read
            report.skipped.append(f"{phone}: {exc}")
            continue
        if queued.created:
            report.queued += 1
        else:
            report.already += 1
