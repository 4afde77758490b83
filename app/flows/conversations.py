"""Open conversations (surveys): which flow a phone is talking to on a number right now.

A conversation's deadline is judged by the messages' own ``time`` (like flow windows), so a late
redelivery or a replay of a failed message sees the conversation as the phone did. State changes
are guarded by the row's current status and step, and by the unique keys of the tables: the
partial unique index keeps one active conversation per phone and number, and (conversation, step)
keeps one answer per step, so a message processed twice cannot move a conversation twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from app.db.dialect import one_of
from app.db.flow_models import Conversation, SurveyAnswer


@dataclass(slots=True, frozen=True)
class OpenConversation:
    """An active conversation as a flow sees it when the phone's next message comes."""

    id: int
    flow_id: str
    flow_hash: str
    sender: str
    number: str
    step: str
    status: str
    retries: int
    started_at: datetime
    updated_at: datetime
    expires_at: datetime | None


def active_conversation(
    conn: Connection, sender: str, number: str, *, at: datetime, now: datetime
) -> OpenConversation | None:
    """The phone's active conversation on this number; one whose deadline is not after ``at``
    (the message's time) is closed as expired and the message is matched as if it did not exist."""
    row = conn.execute(
        select(*Conversation.__table__.columns).where(
            Conversation.sender == sender, Conversation.number == number, Conversation.status == "active"
        )
    ).first()
    if row is None:
        return None
    if row.expires_at is not None and row.expires_at <= at:
        close_conversation(conn, row.id, "expired", now)
        return None
    return OpenConversation(**row._mapping)


def phones_in_conversation(conn: Connection, senders: set[str]) -> set[tuple[str, str]]:
    """(phone, number) of every active conversation of these phones, in one query for a batch."""
    rows = conn.execute(
        select(Conversation.sender, Conversation.number).where(
            Conversation.status == "active",
            one_of(conn.dialect.name, Conversation.__table__.c.sender, senders, "senders"),
        )
    ).all()
    return {(r.sender, r.number) for r in rows}


def start_conversation(
    conn: Connection,
    *,
    flow_id: str,
    flow_hash: str,
    sender: str,
    number: str,
    step: str,
    now: datetime,
    expires_at: datetime,
) -> int:
    """Open a conversation at ``step``; returns its id.

    Routing has already given an active conversation the chance to keep the message, so one still
    active here is the phone's own unfinished run of this flow (restarted) or belongs to a flow no
    longer loaded: either way it ends as aborted, and the unique index would refuse a second.
    """
    conn.execute(
        update(Conversation)
        .where(Conversation.sender == sender, Conversation.number == number, Conversation.status == "active")
        .values(status="aborted", updated_at=now)
    )
    result = conn.execute(
        insert(Conversation).returning(Conversation.id),
        {
            "flow_id": flow_id,
            "flow_hash": flow_hash,
            "sender": sender,
            "number": number,
            "step": step,
            "status": "active",
            "retries": 0,
            "started_at": now,
            "updated_at": now,
            "expires_at": expires_at,
        },
    )
    return int(result.scalar_one())


def close_conversation(conn: Connection, conversation_id: int, status: str, now: datetime) -> bool:
    """End an active conversation as completed, aborted or expired; False when it had already ended."""
    result = conn.execute(
        update(Conversation)
        .where(Conversation.id == conversation_id, Conversation.status == "active")
        .values(status=status, updated_at=now)
    )
    return result.rowcount == 1


def move_conversation(
    conn: Connection,
    conversation: OpenConversation,
    *,
    step: str,
    retries: int,
    now: datetime,
    expires_at: datetime,
) -> bool:
    """Set the step and retry count of an active conversation that is still where ``conversation``
    saw it; False when something else moved it first (the caller then leaves it alone)."""
    result = conn.execute(
        update(Conversation)
        .where(
            Conversation.id == conversation.id,
            Conversation.status == "active",
            Conversation.step == conversation.step,
            Conversation.retries == conversation.retries,
        )
        .values(step=step, retries=retries, updated_at=now, expires_at=expires_at)
    )
    return result.rowcount == 1


def store_answer(
    conn: Connection, conversation: OpenConversation, *, step: str, value: str, inbound_id: int, now: datetime
) -> bool:
    """Keep the answer to one step; False when this step of this conversation is already answered."""
    try:
        with conn.begin_nested():
            conn.execute(
                insert(SurveyAnswer),
                {
                    "conversation_id": conversation.id,
                    "flow_id": conversation.flow_id,
                    "sender": conversation.sender,
                    "step": step,
                    "value": value,
                    "inbound_id": inbound_id,
                    "created_at": now,
                },
            )
    except IntegrityError:
        return False
    return True


def answers_of(conn: Connection, conversation_id: int) -> dict[str, str]:
    """Step id → answer, for the conversation's templates."""
    rows = conn.execute(
        select(SurveyAnswer.step, SurveyAnswer.value).where(SurveyAnswer.conversation_id == conversation_id)
    ).all()
    return {step: value for step, value in rows}
