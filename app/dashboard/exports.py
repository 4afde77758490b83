"""CSV exports: streamed a page of rows at a time, so a million rows never sit in memory, and
safe to open in a spreadsheet: every cell goes through the one CSV cell rule of every export
(``app.reads.csv_cells``), which neutralises what would start a formula. Phone numbers in them
read as on the pages, masked for viewers (``app.dashboard.phones``): the columns that hold one,
the sentences and JSON that quote one, and a survey's phone-step answers."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
from typing import Any

import msgspec
from litestar.response import Stream
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from app.dashboard.auth import SignedIn
from app.dashboard.phones import sees_whole_numbers, shown_answer, shown_json, shown_phone, shown_text
from app.reads.csv_cells import cell


def _line(values: Iterable[Any]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerow([cell(v) for v in values])
    return out.getvalue().encode("utf-8")


def csv_stream(
    filename: str,
    columns: Sequence[str],
    rows: AsyncIterator[Sequence[Any]],
    *,
    reader: SignedIn | None,
    phones: Collection[str] = (),
    texts: Collection[str] = (),
    json: Collection[str] = (),
    step_type: Callable[[str], str | None] | None = None,
) -> Stream:
    """The rows as a CSV download for ``reader``, numbers shown as the pages show them: the
    ``phones`` columns hold phone numbers, the ``texts`` columns sentences the service wrote about
    one (errors), the ``json`` columns JSON text (a decision's detail). With ``step_type`` the rows
    are survey answers, whose ``value`` is read by the type of its ``step``."""
    shown = None if sees_whole_numbers(reader) else _shown(reader, columns, phones, texts, json, step_type)

    async def body() -> AsyncIterator[bytes]:
        yield b"\xef\xbb\xbf" + _line(columns)  # the BOM tells spreadsheets it is UTF-8
        async for row in rows:
            yield _line(shown(row) if shown else row)

    return Stream(
        body(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )


def _shown(
    reader: SignedIn | None,
    columns: Sequence[str],
    phones: Collection[str],
    texts: Collection[str],
    json: Collection[str],
    step_type: Callable[[str], str | None] | None,
) -> Callable[[Sequence[Any]], list[Any]] | None:
    """How a row reads for ``reader`` (a viewer), or None when nothing in it needs masking."""
    readers: dict[int, Callable[[Any], Any]] = {}
    for i, name in enumerate(columns):
        if name in phones:
            readers[i] = lambda v: shown_phone(reader, v)
        elif name in texts:
            readers[i] = lambda v: shown_text(reader, v)
        elif name in json:
            readers[i] = lambda v: _json_text(reader, v)
    answer = columns.index("value") if step_type and "value" in columns else None
    step = columns.index("step") if "step" in columns else None
    if not readers and answer is None:
        return None

    def one(row: Sequence[Any]) -> list[Any]:
        out = [readers[i](v) if i in readers and v is not None else v for i, v in enumerate(row)]
        if answer is not None and step is not None and step_type is not None:
            out[answer] = shown_answer(reader, step_type(str(row[step])), row[answer])
        return out

    return one


def _json_text(reader: SignedIn | None, value: str) -> str:
    """JSON text with its numbers masked; text that is not JSON is read as a sentence."""
    try:
        decoded = msgspec.json.decode(value)
    except msgspec.DecodeError:
        return shown_text(reader, value)
    return msgspec.json.encode(shown_json(reader, decoded)).decode()


async def pages_of(
    engine: AsyncEngine,
    fetch: Callable[[Connection, Any], Any],
    columns: Sequence[str],
    cursor: Callable[[str], Any] = int,
) -> AsyncIterator[Sequence[Any]]:
    """Every row of a keyset-paged read (``fetch(conn, before)`` returns a page with ``items``
    and ``next_cursor``), page after page, each on a short connection of its own; ``cursor``
    reads a ``next_cursor`` back (an id by default)."""
    before: Any = None
    while True:
        async with engine.connect() as conn:
            page = await conn.run_sync(fetch, before)
        for item in page.items:
            yield [getattr(item, name) for name in columns]
        if page.next_cursor is None:
            return
        before = cursor(page.next_cursor)
