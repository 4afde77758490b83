"""A phone's exchange with one of our numbers, oldest first: what the simulator's phone shows
(the contact's thread, narrowed to that number)."""

from __future__ import annotations

import msgspec
from sqlalchemy import Connection

from app.reads.contacts import ThreadEntry, thread


class Chat(msgspec.Struct, frozen=True):
    phone: str
    number: str
    lines: list[ThreadEntry]
    """The latest ``limit`` messages, oldest first."""


def chat(conn: Connection, phone: str, number: str, *, limit: int = 40) -> Chat:
    """Messages from ``phone`` to ``number``, and those we queued to ``phone`` from it."""
    return Chat(phone=phone, number=number, lines=thread(conn, phone, number=number, limit=limit)[::-1])
