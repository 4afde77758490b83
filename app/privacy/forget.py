"""Erasing one phone's data: its number becomes its pseudonym everywhere, its texts and the raw
requests that carried them are emptied, and every entry, decision and count stays.

Votes, redemptions, list memberships, survey answers, decisions and draw picks keep their rows
with the pseudonym in place of the number, so tallies, audits and draw records stay exact (a
draw's entry id per phone is that same pseudonym). The erasure itself is recorded by pseudonym.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
from sqlalchemy import Column, Connection, Table, delete, func, select, update
from sqlalchemy.exc import IntegrityError

from app.db.audit import record_in
from app.db.draw_models import DrawPick
from app.db.flow_models import Conversation, Redemption, Subscription, SurveyAnswer, Vote
from app.db.models import (
    Contact,
    FlowEvent,
    InboundMessage,
    OutboxMessage,
    QuarantinedRequest,
    ReplyAllowance,
    SendBackAction,
)
from app.errors import SmsflowsError
from app.privacy.pseudonyms import pseudonym

ERASED_PAYLOAD = '{"erased": true}'
_TEXT_KEYS = ("args", "text", "value", "answers")  # decision details that quote what the phone wrote


class ForgetError(SmsflowsError):
    """The phone's data could not be erased as asked."""

    status_code = 422


class Forgotten(msgspec.Struct, frozen=True):
    pseudonym: str
    rows: dict[str, int]
    """Rows changed, by table."""


def _table(model: Any) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


def _swap(conn: Connection, model: Any, column: str, phone: str, alias: str, **values: Any) -> int:
    col: Column[Any] = _table(model).c[column]
    return int(conn.execute(update(model).where(col == phone).values({column: alias, **values})).rowcount)


def _replace(column: Any, phone: str, alias: str) -> Any:
    return func.replace(column, phone, alias)


def forget(conn: Connection, phone: str, key: str | None, actor: str) -> Forgotten:
    """Erase ``phone`` in the caller's transaction; run it again and it finds nothing more."""
    if not phone.isdigit():
        raise ForgetError(f"{phone!r} is not a phone number; give it in international form, e.g. 48600123456")
    alias = pseudonym(key, phone)
    rows: dict[str, int] = {}
    inbound_ids = list(conn.scalars(select(InboundMessage.id).where(InboundMessage.sender == phone)))
    outbox_ids = list(conn.scalars(select(OutboxMessage.id).where(OutboxMessage.to_number == phone)))
    try:
        with conn.begin_nested():
            rows["inbound_messages"] = _swap(
                conn,
                InboundMessage,
                "sender",
                phone,
                alias,
                text="",
                raw_body=b"",
                error=_replace(InboundMessage.error, phone, alias),
            )
            rows["outbox"] = _swap(
                conn,
                OutboxMessage,
                "to_number",
                phone,
                alias,
                text="",
                data=None,
                idempotency_key=_replace(OutboxMessage.idempotency_key, phone, alias),
                last_error=_replace(OutboxMessage.last_error, phone, alias),
            )
            rows["flow_events"] = _events(conn, phone, alias)
            rows["send_back_actions"] = _actions(conn, inbound_ids, outbox_ids)
            for model, column in (
                (Vote, "sender"),
                (Redemption, "sender"),
                (Subscription, "phone"),
                (Conversation, "sender"),
                (SurveyAnswer, "sender"),
                (DrawPick, "phone"),
            ):
                rows[model.__tablename__] = _swap(conn, model, column, phone, alias)
            rows["contacts"] = _contact(conn, phone, alias)
            rows["quarantine"] = _quarantine(conn, phone)
            # The reply limits' rows only hold replies back for minutes or a day and nothing is
            # counted from them, so they go rather than move to the pseudonym.
            rows["reply_allowances"] = int(
                conn.execute(delete(ReplyAllowance).where(ReplyAllowance.phone == phone)).rowcount
            )
    except IntegrityError:
        raise ForgetError(
            f"{phone} was erased before and has new entries that clash with the old ones under its "
            "pseudonym; the data was left as it was, so nothing was half erased"
        ) from None
    changed = {t: n for t, n in rows.items() if n}
    record_in(conn, actor=actor, action="contacts.forget", target=alias, detail={"rows": changed})
    return Forgotten(pseudonym=alias, rows=changed)


def _events(conn: Connection, phone: str, alias: str) -> int:
    """Decisions keep their outcome and what it counted (an option, a code); quoted text goes."""
    found = conn.execute(select(FlowEvent.id, FlowEvent.detail).where(FlowEvent.sender == phone)).all()
    for event_id, detail in found:
        kept = None
        if detail:
            values = msgspec.json.decode(detail)
            if isinstance(values, dict):
                values = {k: v for k, v in values.items() if k not in _TEXT_KEYS}
            kept = msgspec.json.encode(values).decode().replace(phone, alias)
        conn.execute(update(FlowEvent).where(FlowEvent.id == event_id).values(sender=alias, detail=kept))
    return len(found)


def _actions(conn: Connection, inbound_ids: Iterable[int], outbox_ids: Iterable[int]) -> int:
    """Send-back payloads carry the number and the answer's text: they are emptied."""
    mine = SendBackAction.inbound_id.in_(list(inbound_ids)) | SendBackAction.outbox_id.in_(list(outbox_ids))
    return int(
        conn.execute(
            update(SendBackAction).where(mine).values(payload=ERASED_PAYLOAD, last_error=None)
        ).rowcount
    )


def _contact(conn: Connection, phone: str, alias: str) -> int:
    """The contact becomes its pseudonym's; a number erased before and heard from again merges."""
    row = conn.execute(select(Contact).where(Contact.phone == phone)).first()
    if row is None:
        return 0
    earlier = conn.execute(select(Contact).where(Contact.phone == alias)).first()
    if earlier is None:
        conn.execute(update(Contact).where(Contact.phone == phone).values(phone=alias))
        return 1
    conn.execute(
        update(Contact)
        .where(Contact.phone == alias)
        .values(
            first_seen=min(earlier.first_seen, row.first_seen),
            last_seen=max(earlier.last_seen, row.last_seen),
            messages=earlier.messages + row.messages,
            opted_out_at=row.opted_out_at or earlier.opted_out_at,
        )
    )
    conn.execute(delete(Contact).where(Contact.phone == phone))
    return 1


def _quarantine(conn: Connection, phone: str) -> int:
    """Quarantined requests that mention the number (in any spelling that ends in its last nine
    digits) lose their raw body and are discarded: they cannot be re-ingested any more."""
    national = phone[-9:].encode()
    found = [
        qid
        for qid, body, reason in conn.execute(
            select(QuarantinedRequest.id, QuarantinedRequest.raw_body, QuarantinedRequest.reason)
        )
        if national in body or phone[-9:] in (reason or "")
    ]
    if found:
        conn.execute(
            update(QuarantinedRequest)
            .where(QuarantinedRequest.id.in_(found))
            .values(raw_body=b"", reason="erased", status="discarded")
        )
    return len(found)
