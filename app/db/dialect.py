"""INSERT ... ON CONFLICT, which SQLite and PostgreSQL both speak but SQLAlchemy spells per dialect,
and the bulk inserts of the MO path."""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Collection
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Executable,
    Insert,
    Select,
    Table,
    any_,
    bindparam,
    column,
    func,
    insert,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import ReturningInsert

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


def insert_rows(
    conn: Connection, table: Table, rows: list[dict[str, Any]], *, or_nothing: bool = False
) -> int:
    """Insert many rows that all have the same keys; returns how many went in where the driver
    tells (SQLite), else -1. With ``or_nothing`` a row whose unique key is taken is skipped."""
    if conn.dialect.name != "sqlite":
        stmt = _insert_or_nothing(conn.dialect.name, table) if or_nothing else _insert(table)
        return int(conn.execute(stmt, rows).rowcount)
    return execute_rows(conn, _insert_or_nothing("sqlite", table) if or_nothing else _insert(table), rows)


def execute_rows(conn: Connection, stmt: Executable, rows: list[dict[str, Any]]) -> int:
    """Run one statement for many parameter rows that all have the same keys; returns the
    driver's row count (-1 where it does not tell).

    On SQLite the statement is compiled once (per statement object: pass one built once) and
    run with plain tuples, each value passed through its parameter's own bind processor:
    SQLAlchemy's general per-row parameter handling costs more than SQLite's own work on the
    MO path, where every message adds an inbound row, a vote, a reply, an event and a status.
    """
    if conn.dialect.name != "sqlite":
        return int(conn.execute(stmt, rows).rowcount)
    sql, values = _sqlite_compiled(stmt, tuple(rows[0]))
    params = [tuple([value(row) for value in values]) for row in rows]
    return int(conn.exec_driver_sql(sql, params).rowcount)


def insert_each_unless_taken(
    conn: Connection, table: Table, rows: list[dict[str, Any]], key: str
) -> set[Any]:
    """Insert many rows, each unless a unique key is already taken (by the database or by an
    earlier row of ``rows``); returns the ``key`` column's values of the rows inserted.

    ``key`` must be a unique column that no stored row can hold yet (the id of a message
    being decided): then the rows that hold one of ``rows``' keys afterwards are exactly the
    ones inserted. One statement for a whole batch, and a second only when some were taken.
    """
    if conn.dialect.name == "postgresql":
        # The rows as one array per column: one SQL text whatever the batch's size (a VALUES
        # list per size would be prepared anew for each), run once for the batch.
        columns = tuple(rows[0])
        arrays = as_arrays(rows, columns)
        return set(conn.scalars(_unnest_or_nothing_returning(table, columns, key), arrays))
    if conn.dialect.name != "sqlite":
        return set(conn.scalars(_insert_or_nothing_returning(conn.dialect.name, table, key), rows))
    keys = [row[key] for row in rows]
    if insert_rows(conn, table, rows, or_nothing=True) == len(rows):
        return set(keys)
    column = table.c[key]
    return set(conn.scalars(select(column).where(column.in_(keys))))


@functools.cache  # one statement per dialect and table: building it each time costs more than running it
def _insert_or_nothing(dialect: str, table: Table) -> Upsert:
    return insert_for(dialect, table).on_conflict_do_nothing()


@functools.cache
def _insert_or_nothing_returning(dialect: str, table: Table, key: str) -> ReturningInsert[Any]:
    return _insert_or_nothing(dialect, table).returning(table.c[key])


@functools.lru_cache(maxsize=64)
def _unnest_or_nothing_returning(table: Table, keys: tuple[str, ...], key: str) -> ReturningInsert[Any]:
    stmt = postgresql.insert(table).from_select(list(keys), unnested(table, keys))
    return stmt.on_conflict_do_nothing().returning(table.c[key])


@functools.cache
def _insert(table: Table) -> Insert:
    return insert(table)


@functools.lru_cache(maxsize=64)
def _sqlite_compiled(
    stmt: Executable, keys: tuple[str, ...]
) -> tuple[str, list[Callable[[dict[str, Any]], Any]]]:
    """The SQL text for rows with ``keys``, and per placeholder how to get its value from a row."""
    compiled = stmt.compile(dialect=_SQLITE, column_keys=list(keys))  # type: ignore[attr-defined]
    table = getattr(stmt, "table", None)
    values: list[Callable[[dict[str, Any]], Any]] = []
    for name in compiled.positiontup or ():
        if name in keys:
            values.append(_getter(name, compiled.binds[name].type.bind_processor(_SQLITE)))
            continue
        # Not in the rows: an inserted column with a Python-side default, which SQLAlchemy
        # would fill in.
        column = table.c[name] if table is not None and name in table.c else None
        default = column.default if column is not None else None
        if default is None or not default.is_scalar:
            raise ValueError(f"{name}: the rows must give it (it has no constant default)")
        values.append(_constant(default.arg))
    return str(compiled), values


_SQLITE = sqlite.dialect()


def _getter(name: str, process: Callable[[Any], Any] | None) -> Callable[[dict[str, Any]], Any]:
    if process is None:
        return operator.itemgetter(name)
    return lambda row: process(row[name])


def _constant(value: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda _row: value


def one_of(
    dialect: str, column: ColumnElement[Any], values: Collection[Any], name: str
) -> ColumnElement[bool]:
    """``column IN (values)``; on PostgreSQL ``column = ANY(:name)`` with the values as one array,
    so that the SQL is the same however many there are (an IN list of N parameters is a new
    statement, compiled and prepared anew, for every N a batch brings)."""
    if dialect == "postgresql":
        return column == any_(bindparam(name, list(values), type_=postgresql.ARRAY(column.type)))
    return column.in_(values)


def unnested(table: Table, keys: tuple[str, ...], prefix: str = "") -> Select[Any]:
    """PostgreSQL: the rows of :func:`as_arrays` back as rows, in their order, typed as ``table``'s
    columns: ``SELECT … FROM unnest($1::t1[], $2::t2[], …) WITH ORDINALITY ORDER BY ordinality``.

    An INSERT … SELECT from it writes a whole batch in one execution, where an ``executemany``
    has the server run the statement once per row.
    """
    types = [table.c[k].type for k in keys]
    arrays = [bindparam(f"{prefix}{k}", type_=postgresql.ARRAY(t)) for k, t in zip(keys, types, strict=True)]
    rows = (
        func.unnest(*arrays)
        .table_valued(*[column(k, t) for k, t in zip(keys, types, strict=True)], with_ordinality="n")
        .render_derived()
    )
    return select(*[rows.c[k] for k in keys]).order_by(rows.c.n)


def as_arrays(rows: list[dict[str, Any]], keys: tuple[str, ...], prefix: str = "") -> dict[str, list[Any]]:
    """The parameters of :func:`unnested`: one list per column."""
    return {f"{prefix}{k}": [row[k] for row in rows] for k in keys}
