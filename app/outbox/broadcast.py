"""``smsflows send`` and ``smsflows broadcast``: queue messages from the command line.

A broadcast goes to a subscription list's active members who have not sent STOP. Each chunk of
recipients commits on its own; with ``--idempotency-key`` every recipient's message has its own
key (``KEY:phone``), so a broadcast that was interrupted is finished by running it again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import Connection, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.campaign_models import Subscription
from app.db.migrate import open_database
from app.db.models import Contact, utcnow
from app.errors import SmsflowsError
from app.flows.kinds.base import WARSAW
from app.flows.kinds.subscription import subscribers
from app.mobitex.encoding import SmsEncoding, check_fits
from app.outbox.sending import InvalidSend, NewMessage, Queued, queue
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


def send_note(settings: Settings) -> str:
    """What happens to a queued message with these settings."""
    if not settings.sends_for_real:
        return "sending is in dry-run mode: it is recorded as dry-run, not sent (see SMSFLOWS_SEND_MODE)"
    if not settings.dispatcher:
        return "the service does not send (SMSFLOWS_DISPATCHER=false): run `smsflows worker`"
    return "the running service sends it"


def new_message(
    to: str, text: str, *, tag: str | None, data: str | None, expires_at: str | None, key: str | None
) -> NewMessage:
    """The command's options as the message ``POST /api/messages`` would take; a time without an
    offset is Warsaw time, as in flow files."""
    fields: dict[str, Any] = {"to": to, "text": text, "tag": tag, "idempotency_key": key}
    if data is not None:
        try:
            fields["data"] = msgspec.json.decode(data)
        except msgspec.DecodeError as exc:
            raise InvalidSend(f"--data: not JSON ({exc}); give an object, e.g. '{{\"visit\": 12}}'") from None
    if expires_at is not None:
        try:
            at = datetime.fromisoformat(expires_at)
        except ValueError:
            raise InvalidSend(f"--expires-at: {expires_at!r} is not a time; e.g. 2026-12-01T20:00") from None
        fields["expires_at"] = at if at.tzinfo else at.replace(tzinfo=WARSAW)
    if key is not None and len(key) > MAX_KEY:
        raise InvalidSend(f"--idempotency-key: at most {MAX_KEY} characters (the phone is added to it)")
    try:
        return msgspec.convert({k: v for k, v in fields.items() if v is not None}, NewMessage)
    except msgspec.ValidationError as exc:
        raise InvalidSend(str(exc)) from None


async def run_send(settings: Settings, message: NewMessage) -> Queued:
    """``smsflows send``: queue one message, as ``POST /api/messages`` does."""
    async with open_database(settings) as engine, engine.begin() as conn:
        return await conn.run_sync(queue, message, utcnow())


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

    Raises :class:`~app.mobitex.encoding.MessageTooLong`, or :class:`SmsflowsError` for a list
    nobody on it may get messages from.
    """
    measured = check_fits(text)
    phones, opted_out, lists = _audience(conn, list_id)
    if not phones:
        known = ", ".join(lists) or "none yet"
        raise SmsflowsError(
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
