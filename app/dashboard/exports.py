"""CSV exports: streamed a page of rows at a time, so a million rows never sit in memory, and
safe to open in a spreadsheet: every cell goes through the one CSV cell rule of every export
(``app.reads.csv_cells``), which neutralises what would start a formula. Phone numbers in them
read as on the pages, masked for viewers (``app.dashboard.phones``)."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
from typing import Any

from litestar.response import Stream
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from app.dashboard.auth import SignedIn
from app.dashboard.phones import sees_whole_numbers, shown_phone
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
) -> Stream:
    """The rows as a CSV download for ``reader``; the ``phones`` columns hold phone numbers,
    shown to the reader as the pages show them."""
    masked = [] if sees_whole_numbers(reader) else [i for i, c in enumerate(columns) if c in phones]

    async def body() -> AsyncIterator[bytes]:
        yield b"\xef\xbb\xbf" + _line(columns)  # the BOM tells spreadsheets it is UTF-8
        async for row in rows:
            if masked:
                row = [shown_phone(reader, v) if i in masked else v for i, v in enumerate(row)]
            yield _line(row)

    return Stream(
        body(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )


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
