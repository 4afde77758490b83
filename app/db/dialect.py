"""INSERT ... ON CONFLICT, which SQLite and PostgreSQL both speak but SQLAlchemy spells per dialect."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite

Upsert = postgresql.Insert | sqlite.Insert


def insert_for(dialect: str, table: Any) -> Upsert:
    """An INSERT for ``table`` that has ``on_conflict_do_*`` on the given dialect."""
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


def insert_unless_taken(conn: Connection, table: Table, row: dict[str, Any]) -> bool:
    """Insert one row unless a unique key is already taken; True when it was inserted.

    The unique key is the arbiter (one vote per seq, one redemption per code), and no
    exception means no SAVEPOINT is needed around it.
    """
    result = conn.execute(_insert_or_nothing(conn.dialect.name, table), row)
    return result.rowcount == 1


@functools.cache  # one statement per dialect and table: building it each time costs more than running it
def _insert_or_nothing(dialect: str, table: Table) -> Upsert:
    return insert_for(dialect, table).on_conflict_do_nothing()
