"""Who can win: a flow's accepted entries under the rule a draw states.

A vote's votes, a contest's code redemptions, a survey's completions or a list's members, sent
inside the rule's time range (by the message's own time), without the phones that sent STOP and
the phones on the exclude list (staff); one chance per phone or one per entry.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
from sqlalchemy import Connection, func, select

from app.db.flow_models import Conversation, Redemption, Subscription, Vote
from app.db.models import Contact, InboundMessage
from app.draws.canonical import canonical, list_sha256, pseudonym
from app.errors import SmsflowsError
from app.flows.loader import LoadedFlow
from app.mobitex.mo_form import normalise_number

Per = Literal["phone", "entry"]

# What an entry is, per kind, and the letter its per-entry ids start with.
_ENTRIES = {
    "vote": ("accepted votes", "V"),
    "code": ("code redemptions", "C"),
    "survey": ("completed surveys", "S"),
    "subscription": ("active list members", "M"),
}


class DrawError(SmsflowsError):
    """A draw cannot be made as asked; the message says what to change."""

    status_code = 422


class DrawRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The rule stated in a draw's record: enough to gather the same entries again."""

    entries: str
    """What counts as an entry, e.g. ``accepted votes``."""
    per: Per
    since: datetime | None
    """Entries sent at or after this time (UTC); none means from the start."""
    until: datetime | None
    """Entries sent before this time (UTC); none means up to the draw."""
    opted_out: str
    """Phones under the global STOP never win: ``excluded``."""
    excluded_numbers: int
    """How many numbers the exclude list (staff) had."""
    excluded_sha256: str | None
    """SHA-256 of the exclude list's pseudonyms in canonical order; none without a list."""


class Entry(msgspec.Struct, frozen=True):
    id: str
    phone: str


def read_exclude_file(lines: Iterable[str]) -> list[str]:
    """Phone numbers one per line (any common spelling); blank lines and ``#`` comments skipped."""
    phones = []
    for lineno, raw in enumerate(lines, start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        phone = normalise_number(line)
        if not phone.isdigit():
            raise DrawError(f"exclude list, line {lineno}: {raw.strip()!r} is not a phone number")
        phones.append(phone)
    return phones


def make_rule(
    flow: LoadedFlow,
    per: Per,
    since: datetime | None,
    until: datetime | None,
    exclude: Sequence[str],
    key: str | None,
) -> DrawRule:
    if flow.kind not in _ENTRIES:
        kinds = ", ".join(_ENTRIES)
        raise DrawError(f"flow {flow.id!r} is a {flow.kind} flow: winners are drawn from {kinds} flows")
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise DrawError(f"{name}: give a timezone, e.g. 2026-12-01T20:00:00+01:00")
    if since is not None and until is not None and since >= until:
        raise DrawError("since: the time range is empty; since must come before until")
    excluded = sorted({normalise_number(p) for p in exclude})
    return DrawRule(
        entries=_ENTRIES[flow.kind][0],
        per=per,
        since=since.astimezone(UTC) if since else None,
        until=until.astimezone(UTC) if until else None,
        opted_out="excluded",
        excluded_numbers=len(excluded),
        excluded_sha256=list_sha256(canonical(pseudonym(key, p) for p in excluded)) if excluded else None,
    )


def eligible(
    conn: Connection, flow: LoadedFlow, rule: DrawRule, exclude: Sequence[str], key: str | None
) -> list[Entry]:
    """The entries that can win, in canonical order (by id)."""
    barred = {normalise_number(p) for p in exclude}
    barred |= set(conn.scalars(select(Contact.phone).where(Contact.opted_out_at.is_not(None))))
    letter = _ENTRIES[flow.kind][1]
    chosen: dict[str, Entry] = {}
    for row_id, phone, sent in _rows(conn, flow):
        if phone in barred or not _inside(rule, sent):
            continue
        if rule.per == "entry" and flow.kind != "subscription":
            entry_id = f"{letter}{row_id}"
        else:
            entry_id = pseudonym(key, phone)
        chosen.setdefault(entry_id, Entry(id=entry_id, phone=phone))
    return [chosen[i] for i in canonical(chosen)]


def _inside(rule: DrawRule, sent: datetime) -> bool:
    return (rule.since is None or sent >= rule.since) and (rule.until is None or sent < rule.until)


def _rows(conn: Connection, flow: LoadedFlow) -> list[tuple[Any, str, datetime]]:
    """(row id, phone, when it was sent) of each of the flow's entries."""
    if flow.kind == "vote":
        votes = conn.execute(
            select(Vote.id, Vote.sender, Vote.message_time).where(Vote.flow_id == flow.id)
        ).all()
        return [(i, s, datetime.fromtimestamp(t, UTC)) for i, s, t in votes]
    if flow.kind == "code":
        codes = conn.execute(
            select(Redemption.id, Redemption.sender, InboundMessage.time)
            .join(InboundMessage, InboundMessage.id == Redemption.inbound_id)
            .where(Redemption.flow_id == flow.id)
        ).all()
        return [(i, s, datetime.fromtimestamp(t, UTC)) for i, s, t in codes]
    if flow.kind == "survey":
        done = conn.execute(
            select(Conversation.id, Conversation.sender, Conversation.updated_at).where(
                Conversation.flow_id == flow.id, Conversation.status == "completed"
            )
        ).all()
        return [(i, s, t) for i, s, t in done]
    list_id = getattr(getattr(flow.definition, "subscription", None), "list_id", None) or flow.id
    members = conn.execute(
        select(
            Subscription.phone,
            Subscription.phone,
            func.coalesce(Subscription.confirmed_at, Subscription.requested_at),
        ).where(Subscription.list_id == list_id, Subscription.status == "active")
    ).all()
    return [(i, s, t if t.tzinfo else t.replace(tzinfo=UTC)) for i, s, t in members]
