"""Messages applications send (S1): checked, measured and queued in the outbox, once per key.

An application may retry a request it never saw answered; with an ``idempotency_key`` the retry
finds the message the first request queued instead of queueing a second one. The unique key on
``outbox.idempotency_key`` is the arbiter, so two retries racing each other still make one message.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal, Protocol

import msgspec
from sqlalchemy import Connection, insert, select

from app.db.dialect import insert_for
from app.db.models import WARSAW, Contact, FlowId, Tag
from app.errors import IdempotencyConflict, InvalidSend
from app.mobitex.encoding import SmsEncoding, check_fits
from app.outbox.recipients import mobile_number
from app.outbox.table import OUTBOX, FlowRef, outbox_row

MAX_DATA = 16_384  # bytes of JSON: data travels back in every send-back action


class NewMessage(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A message an application asks us to send; answers to it are tied back by our ``ext_id``."""

    to: str
    text: str
    tag: Tag | None = None
    """Answers to the message go to the ``reply`` flow with this tag."""
    data: dict[str, Any] | None = None
    """The application's own JSON, stored with the message and sent back with its answer."""
    flow: FlowId | None = None
    """The flow the message belongs to; a ``reply`` flow's tag is the default ``tag``."""
    expires_at: datetime | None = None
    """Answers after this time get the reply flow's ``expired`` reply."""
    idempotency_key: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None
    on_timeout: Literal["retry", "hold"] | None = None
    """When Mobitex does not answer: send again, or hold for an operator; default SMSFLOWS_SEND_ON_TIMEOUT."""


class SendingFlow(FlowRef, Protocol):
    """A running flow a message may belong to (a loaded flow is one)."""

    @property
    def answer_tag(self) -> str | None:
        """The tag of messages whose answers the flow takes, or None."""
        ...


class Queued(msgspec.Struct, frozen=True):
    id: int
    ext_id: str
    created: bool
    """False when the idempotency key found the message an earlier request queued."""


def check_message(msg: NewMessage, now: datetime) -> tuple[str, SmsEncoding]:
    """The normalised number and the text's measurement; :class:`InvalidSend` or
    :class:`~app.mobitex.encoding.MessageTooLong` when Mobitex would refuse it."""
    to = mobile_number(msg.to)
    if not msg.text.strip():
        raise InvalidSend("text: the message is empty")
    measured = check_fits(msg.text)
    if msg.expires_at is not None:
        if msg.expires_at.tzinfo is None:
            raise InvalidSend("expires_at: give a timezone, e.g. 2026-12-01T20:00:00+01:00 or ...Z")
        if msg.expires_at <= now:
            raise InvalidSend("expires_at: the time is already past; give a later one or leave it out")
    if msg.data is not None and len(msgspec.json.encode(msg.data)) > MAX_DATA:
        raise InvalidSend(f"data: over {MAX_DATA} bytes of JSON; keep an id here and the rest at home")
    return to, measured


def queue(
    conn: Connection, msg: NewMessage, now: datetime, flows: Mapping[str, SendingFlow] | None = None
) -> Queued:
    """Queue ``msg`` in the outbox (status ``queued``) in the caller's transaction; ``flows`` are
    the running flows by id, which ``msg.flow`` may name.

    Raises :class:`InvalidSend` (bad number, empty text, past expiry, unknown flow, opted-out
    phone), :class:`~app.mobitex.encoding.MessageTooLong` and :class:`IdempotencyConflict`.
    """
    to, _ = check_message(msg, now)
    flow, tag = None, msg.tag
    if msg.flow is not None:
        flow = flows.get(msg.flow) if flows is not None else None
        if flow is None:
            known = ", ".join(sorted(flows)) if flows is not None else ""
            raise InvalidSend(f"flow: no flow {msg.flow!r} is running (flows: {known or 'none'})")
        flow_tag = flow.answer_tag
        if tag is None:
            tag = flow_tag
        elif flow_tag is not None and flow_tag != tag:
            raise InvalidSend(f"tag: flow {flow.id!r} takes answers tagged {flow_tag!r}, not {tag!r}")
    row = outbox_row(to=to, text=msg.text, from_number=None, flow=flow, inbound_id=None, now=now)
    row |= {
        "tag": tag,
        "data": _encode_data(msg.data),
        "expires_at": msg.expires_at,
        "idempotency_key": msg.idempotency_key,
        "on_timeout": msg.on_timeout,
    }
    # Write first, then read: on SQLite a transaction that read before writing cannot wait for the
    # write lock. The savepoint takes the row back if the phone turns out to have sent STOP.
    with conn.begin_nested():
        queued = _insert(conn, row)
        stopped = conn.scalar(select(Contact.opted_out_at).where(Contact.phone == to))
        if stopped is not None and queued.created:
            # The STOP confirmation promised no more messages; START lifts it.
            day = stopped.astimezone(WARSAW).date()
            raise InvalidSend(f"to: {to} sent STOP on {day}; it gets no messages until it sends START")
    return queued


def _insert(conn: Connection, row: dict[str, Any]) -> Queued:
    if row["idempotency_key"] is None:
        new_id = conn.execute(insert(OUTBOX).returning(OUTBOX.c.id), row).scalar_one()
        return Queued(id=int(new_id), ext_id=row["ext_id"], created=True)
    stmt = insert_for(conn.dialect.name, OUTBOX).on_conflict_do_nothing(index_elements=["idempotency_key"])
    new_id = conn.execute(stmt.returning(OUTBOX.c.id), row).scalar()
    if new_id is not None:
        return Queued(id=int(new_id), ext_id=row["ext_id"], created=True)
    return _earlier(conn, row)


def _earlier(conn: Connection, row: dict[str, Any]) -> Queued:
    """The message queued under the same key, if it is the same message."""
    c = OUTBOX.c
    found = conn.execute(
        select(c.id, c.ext_id, c.to_number, c.text, c.tag, c.data, c.flow_id, c.expires_at).where(
            c.idempotency_key == row["idempotency_key"]
        )
    ).one()
    differs = [
        name
        for name, theirs, ours in (
            ("to", found.to_number, row["to_number"]),
            ("text", found.text, row["text"]),
            ("tag", found.tag, row["tag"]),
            ("data", _decode_data(found.data), _decode_data(row["data"])),
            ("flow", found.flow_id, row["flow_id"]),
            ("expires_at", found.expires_at, row["expires_at"]),
        )
        if theirs != ours
    ]
    if differs:
        raise IdempotencyConflict(
            f"idempotency_key {row['idempotency_key']!r} was used for message {found.id}, whose "
            f"{', '.join(differs)} differ; use a new key for a new message"
        )
    return Queued(id=found.id, ext_id=found.ext_id, created=False)


def _encode_data(data: dict[str, Any] | None) -> str | None:
    return None if data is None else msgspec.json.encode(data, order="sorted").decode()


def _decode_data(raw: str | None) -> Any:
    return None if raw is None else msgspec.json.decode(raw)
