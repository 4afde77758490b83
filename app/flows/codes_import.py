"""Contest codes from a file into the ``codes`` table: a million in seconds, and idempotent.

A plain file holds one code per line. A CSV file (name ending in ``.csv``; comma, semicolon or
tab separated) starts with a header row and holds the code in the column named by the flow's
``code.column``, else in the first column. Codes are normalised as in messages (``abc-123`` →
``ABC123``). Blank lines are skipped; a line that is not a code is reported with its number and
skipped while the rest is imported. Each chunk commits on its own and a code already there is
left alone, so an interrupted import is finished by running it again.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import ARRAY, String, Table, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.db.flow_models import Code
from app.db.migrate import open_database
from app.errors import CodeImportError
from app.flows.kinds.code import MAX_CODE_LENGTH, CodeFlow, is_well_formed, normalise_code
from app.flows.loader import find_flow
from app.settings import Settings

CHUNK = 50_000  # codes per transaction: big enough to be fast, short enough not to hold up messages
SHOWN_BAD_LINES = 20
CODES: Table = Code.__table__  # type: ignore[assignment]

Progressed = Callable[[int, int], None]  # (bytes read, codes read)


@dataclass(slots=True, frozen=True)
class BadLine:
    line: int
    text: str
    reason: str


@dataclass
class ImportReport:
    flow: str
    file: Path
    read: int = 0
    new: int = 0
    bad_lines: int = 0
    bad: list[BadLine] = field(default_factory=list)  # the first SHOWN_BAD_LINES of them
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"{self.flow}: {self.read:,} code(s) read from {self.file} in {self.seconds:.1f} s: "
            f"{self.new:,} new, {self.read - self.new:,} already imported or repeated in the file"
        )

    def problems(self) -> list[str]:
        if not self.bad_lines:
            return []
        lines = [f"{self.bad_lines:,} line(s) skipped, not codes:"]
        lines += [f"  line {b.line}: {b.text!r}: {b.reason}" for b in self.bad]
        if self.bad_lines > len(self.bad):
            lines.append(f"  ... and {self.bad_lines - len(self.bad):,} more")
        return lines


class CodeReader:
    """Reads a codes file as normalised codes, noting bad lines and how far it has got."""

    def __init__(self, path: Path, column: str | None, report: ImportReport) -> None:
        self.path, self.column, self.report = path, column, report
        self.bytes_read = 0

    def chunks(self, size: int = CHUNK) -> Iterator[list[str]]:
        chunk: list[str] = []
        for code in self._codes():
            chunk.append(code)
            if len(chunk) >= size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def _codes(self) -> Iterator[str]:
        try:
            with self.path.open("rb") as f:
                lines = self._lines(f)
                is_csv = self.path.suffix.lower() == ".csv"
                for lineno, raw, shown in self._csv_cells(lines) if is_csv else self._plain(lines):
                    code = raw.upper()  # most lines are clean codes already: skip the regexes
                    if not is_well_formed(code):
                        code = normalise_code(raw)
                    if is_well_formed(code):
                        self.report.read += 1
                        yield code
                    else:
                        self._bad(lineno, shown, code)
        except OSError as exc:
            raise CodeImportError(f"{self.path}: cannot read the codes file: {exc.strerror}") from None

    def _lines(self, f: BinaryIO, block_size: int = 1 << 20) -> Iterator[str]:
        """Lines without their ends, decoded a block at a time (a line per call is much slower)."""
        rest = b""
        while block := f.read(block_size):
            complete, newline, rest = (rest + block).rpartition(b"\n")
            text = self._decode(complete + newline)
            yield from text.split("\n")[:-1]
        if rest:
            yield self._decode(rest)

    def _decode(self, data: bytes) -> str:
        first = self.bytes_read == 0
        self.bytes_read += len(data)
        # A wrong byte becomes U+FFFD, which no code contains: its line is reported, not lost.
        text = data.decode("utf-8", errors="replace")
        return text.removeprefix("\ufeff") if first else text

    def _plain(self, lines: Iterator[str]) -> Iterator[tuple[int, str, str]]:
        for lineno, line in enumerate(lines, start=1):
            text = line.strip()
            if text:
                yield lineno, text, text

    def _csv_cells(self, lines: Iterator[str]) -> Iterator[tuple[int, str, str]]:
        header_line = next(lines, "")
        delimiter = max(",;\t", key=header_line.count)
        header = [h.strip() for h in next(csv.reader([header_line], delimiter=delimiter), [])]
        index = self._column_index(header)
        reader = csv.reader(lines, delimiter=delimiter)
        for row in reader:
            if any(cell.strip() for cell in row):
                yield reader.line_num + 1, row[index] if index < len(row) else "", delimiter.join(row)

    def _column_index(self, header: list[str]) -> int:
        if self.column is None:
            return 0
        wanted = self.column.strip().casefold()
        for i, name in enumerate(header):
            if name.casefold() == wanted:
                return i
        raise CodeImportError(
            f"{self.path}: the header row has no column {self.column!r} "
            f"(columns: {', '.join(header) or 'none'}); set code.column in the flow file to one of "
            "them, or leave it out to use the first"
        )

    def _bad(self, lineno: int, shown: str, code: str) -> None:
        self.report.bad_lines += 1
        if len(self.report.bad) < SHOWN_BAD_LINES:
            if not code:
                reason = "no code in it"
            elif len(code) > MAX_CODE_LENGTH:
                reason = f"longer than {MAX_CODE_LENGTH} characters"
            else:
                reason = "a code has only letters A-Z and digits"
            self.report.bad.append(BadLine(lineno, shown.strip()[:80], reason))


# PostgreSQL: each chunk is one statement with the codes as one array; measured as fast as COPY
# into a temporary table (the index inserts dominate), and it tells how many rows were new.
_PG_INSERT = (
    postgresql.insert(CODES)
    .from_select(
        ["flow_id", "code"],
        select(bindparam("flow_id", type_=String), func.unnest(bindparam("codes", type_=ARRAY(String)))),
    )
    .on_conflict_do_nothing()
)
# SQLite: the statement compiled once and run with plain tuples, which saves a third of the
# time that building a parameter dict per code costs.
_SQLITE_INSERT = str(sqlite.insert(CODES).on_conflict_do_nothing().compile(dialect=sqlite.dialect()))
_SQLITE_CACHE = "PRAGMA cache_size = -65536"  # 64 MiB: a million-code index stays in memory


async def _write(conn: AsyncConnection, flow_id: str, codes: list[str]) -> int:
    codes.sort()  # neighbours in the index: each chunk touches fewer pages
    if conn.dialect.name == "postgresql":
        result = await conn.execute(_PG_INSERT, {"flow_id": flow_id, "codes": codes})
    else:
        await conn.exec_driver_sql(_SQLITE_CACHE)
        result = await conn.exec_driver_sql(_SQLITE_INSERT, [(flow_id, c) for c in codes])
    await conn.commit()
    return max(result.rowcount, 0)


async def import_codes(
    engine: AsyncEngine,
    flow: CodeFlow,
    path: Path,
    on_progress: Progressed | None = None,
    chunk_size: int = CHUNK,
) -> ImportReport:
    """Import the codes in ``path`` for ``flow``; the report says how many were new."""
    report = ImportReport(flow.id, path)
    reader = CodeReader(path, flow.code.column, report)
    started = time.perf_counter()
    async with engine.connect() as conn:
        for chunk in reader.chunks(chunk_size):
            report.new += await _write(conn, flow.id, chunk)
            if on_progress is not None:
                on_progress(reader.bytes_read, report.read)
    report.seconds = time.perf_counter() - started
    return report


def list_flow(directory: Path, flow_id: str) -> tuple[CodeFlow, Path]:
    """The ``code`` flow with this id and its codes file; only a list of codes can be imported."""
    loaded = find_flow(directory, flow_id)
    flow = loaded.definition
    if not isinstance(flow, CodeFlow):
        raise CodeImportError(f"flow {flow_id!r} is a {loaded.kind} flow; codes are imported for code flows")
    codes_file = flow.codes_file(loaded.path)
    if codes_file is None:
        raise CodeImportError(
            f'flow {flow_id!r} checks codes by its pattern; to use a list set source = "list" and file '
            f"in the [code] section of {loaded.path}"
        )
    return flow, codes_file


def import_target(directory: Path, flow_id: str, file: Path | None) -> tuple[CodeFlow, Path]:
    """The code flow and the file ``smsflows codes import`` reads: ``file``, else the flow's own."""
    flow, codes_file = list_flow(directory, flow_id)
    path = file or codes_file
    if not path.is_file():
        raise CodeImportError(f"{path}: no such file; give the path of the codes file")
    return flow, path


async def run_import(
    settings: Settings, flow: CodeFlow, path: Path, on_progress: Progressed | None = None
) -> ImportReport:
    """``smsflows codes import``: the codes of ``path`` into the database of the settings."""
    async with open_database(settings) as engine:
        return await import_codes(engine, flow, path, on_progress)
