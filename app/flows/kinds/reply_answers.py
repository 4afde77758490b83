"""Answers: tie an MO that carries an ``ext_id`` to the sent message it answers, and the JSON a
``reply`` flow posts about an answer.

The inbound spec only says ``ext_id`` identifies "a message sent earlier to that sender", not
whether it is Mobitex's 32-hex ``Id`` or the ``ext_id`` we passed when sending, so both are
looked up. The link (``inbound_messages.reply_to_id``, ``correlation = 'matched'``) is recorded
whether or not a flow then acts on the answer. An ``ext_id`` that finds nothing, or finds a
message sent to another phone, is kept as ``unmatched`` and an event says why.

It runs in the flow engine's batch, in the transaction that stores the messages: one query
finds the sent messages of every ``ext_id`` in the batch.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

import msgspec
from sqlalchemy import Connection, bindparam, insert, or_, select, update

from app.db.dialect import one_of
from app.db.models import FlowEvent, InboundMessage, OutboxMessage
from app.flows.messages import Answered, Inbound

MATCHED, UNMATCHED = "matched", "unmatched"
_OUTBOX = OutboxMessage.__table__


_COLUMNS = (
    OutboxMessage.id,
    OutboxMessage.ext_id,
    OutboxMessage.to_number,
    OutboxMessage.text,
    OutboxMessage.tag,
    OutboxMessage.data,
    OutboxMessage.flow_id,
    OutboxMessage.expires_at,
    OutboxMessage.sent_at,
    OutboxMessage.created_at,
    OutboxMessage.answer,
)

_LINK = (
    update(InboundMessage)
    .where(InboundMessage.id == bindparam("b_id"))
    .values(reply_to_id=bindparam("b_reply_to"), correlation=bindparam("b_correlation"))
)


def correlate(
    conn: Connection, msgs: Sequence[Inbound], first_time: Collection[int], now: datetime
) -> dict[int, Answered]:
    """Link each message with an ``ext_id`` to the message it answers; returns inbound id → it.

    ``first_time`` are the ids of messages seen for the first time: a replay links again (the
    sent message may have got its Mobitex Id since) but does not log the same reason twice.
    """
    keyed = [(m, m.ext_id.strip()) for m in msgs if m.ext_id and m.ext_id.strip()]
    if not keyed:
        return {}
    keys = sorted({v for _, k in keyed for v in (k, k.lower(), k.upper())})
    rows = conn.execute(
        select(*_COLUMNS, OutboxMessage.mobitex_id).where(
            or_(
                one_of(conn.dialect.name, _OUTBOX.c.ext_id, keys, "ext_ids"),
                one_of(conn.dialect.name, _OUTBOX.c.mobitex_id, keys, "mobitex_ids"),
            )
        )
    ).all()
    by_ext: dict[str, Answered] = {}
    by_mobitex: dict[str, Answered] = {}
    for *columns, mobitex_id in rows:
        found = Answered(*columns)
        by_ext[found.ext_id] = found
        if mobitex_id:
            by_mobitex[mobitex_id.lower()] = found
    links, events, answered = [], [], {}
    for msg, key in keyed:
        sent = by_ext.get(key) or by_ext.get(key.lower()) or by_mobitex.get(key.lower())
        reason = _mismatch(msg, key, sent)
        if reason is None and sent is not None:
            answered[msg.id] = sent
            links.append({"b_id": msg.id, "b_reply_to": sent.id, "b_correlation": MATCHED})
            continue
        links.append({"b_id": msg.id, "b_reply_to": None, "b_correlation": UNMATCHED})
        if msg.id in first_time:
            detail = {"ext_id": key, "reason": reason, "outbox_id": sent.id if sent else None}
            events.append(
                {
                    "inbound_id": msg.id,
                    "sender": msg.sender,
                    "outcome": "reply_unmatched",
                    "detail": msgspec.json.encode(detail).decode(),
                    "created_at": now,
                }
            )
    conn.execute(_LINK, links)
    if events:
        conn.execute(insert(FlowEvent), events)
    return answered


def answer_payload(sent: Answered, answer: str, msg: Inbound) -> str:
    """The JSON posted about an answer: the message sent (with the application's data) and the answer."""
    message = {
        "id": sent.id,
        "ext_id": sent.ext_id,
        "to": sent.to_number,
        "text": sent.text,
        "tag": sent.tag,
        "data": sent.data_dict() if sent.data else None,
        "sent_at": sent.sent_at,
    }
    reply = {"class": answer, "text": msg.text, "received_at": msg.sent_at, "sms_id": msg.sms_id}
    return msgspec.json.encode({"message": message, "answer": reply}).decode()


def _mismatch(msg: Inbound, key: str, sent: Answered | None) -> str | None:
    """Why the answer cannot be tied to ``sent``, or None when it can."""
    if sent is None:
        return f"no sent message has ext_id or Mobitex Id {key!r}"
    if sent.to_number != msg.sender:
        return f"message {sent.id} was sent to {sent.to_number}, but this answer comes from {msg.sender}"
    return None
