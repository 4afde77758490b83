"""A flow's results, read from the database: for the API, ``smsflows results`` and ``smsflows export``.

Each kind computes its own results (``Flow.results``); here they are paired with the event log's
count of decisions by outcome, shown as tables, and a kind's entries are exported as CSV rows.
"""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import msgspec
from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text
from sqlalchemy import Connection, Table, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.campaign_models import Redemption, Subscription, SurveyAnswer, Vote
from app.db.engine import create_engine
from app.db.migrate import is_current
from app.db.models import Base, FlowEvent
from app.errors import DatabaseUnavailable, FlowFileError, MigrationsPending
from app.flows.loader import LoadedFlow, flow_files, parse_flow
from app.settings import Settings


class FlowResults(msgspec.Struct, frozen=True):
    flow: str
    kind: str
    name: str
    hash: str
    results: dict[str, Any]
    outcomes: dict[str, int]
    """Decisions in the event log by outcome (accepted, invalid, closed, ...)."""
    events: int


def gather(conn: Connection, flow: LoadedFlow) -> FlowResults:
    """The kind's results and the event counts; pass to ``run_sync`` from async code."""
    rows = conn.execute(
        select(FlowEvent.outcome, func.count())
        .where(FlowEvent.flow_id == flow.id)
        .group_by(FlowEvent.outcome)
        .order_by(FlowEvent.outcome)
    ).all()
    outcomes = {outcome: int(count) for outcome, count in rows}
    return FlowResults(
        flow=flow.id,
        kind=flow.kind,
        name=flow.definition.name or flow.id,
        hash=flow.hash,
        results=flow.definition.results(conn),
        outcomes=outcomes,
        events=sum(outcomes.values()),
    )


def _table(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


# The table holding each kind's entries; other kinds export their events.
_ENTRIES = {
    "vote": _table(Vote),
    "code": _table(Redemption),
    "subscription": _table(Subscription),
    "survey": _table(SurveyAnswer),
}


def entries(conn: Connection, flow: LoadedFlow) -> tuple[list[str], list[Sequence[Any]]]:
    """The flow's entries (votes, redemptions, ...) as column names and rows, oldest first."""
    table = _ENTRIES.get(flow.kind, _table(FlowEvent))
    mine = table.c.flow_id == flow.id
    if flow.kind == "subscription":  # a list may be fed by several flows: export it whole, as results do
        mine = table.c.list_id == getattr(flow.definition, "list_id", flow.id)
    rows = conn.execute(select(table).where(mine).order_by(*table.primary_key.columns)).all()
    return [c.name for c in table.columns], [tuple(r) for r in rows]


def write_csv(out: TextIO, columns: list[str], rows: list[Sequence[Any]]) -> None:
    """UTC times in ISO 8601, empty cells for missing values."""
    writer = csv.writer(out)
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else v.isoformat() if isinstance(v, datetime) else v for v in row])


def find_flow(directory: Path, flow_id: str) -> LoadedFlow:
    """The flow with this id among the folder's files; other files' errors do not stand in the way."""
    broken, ids = [], []
    for path in flow_files(directory):
        try:
            flow = parse_flow(path, path.read_bytes())
        except (FlowFileError, OSError):
            broken.append(path.name)
            continue
        if flow.id == flow_id:
            return flow
        ids.append(flow.id)
    known = f"flows there: {', '.join(sorted(ids))}" if ids else "no flows there"
    hint = f"; {', '.join(broken)} did not load (run `smsflows flows check`)" if broken else ""
    raise FlowFileError(f"no flow {flow_id!r} in {directory} ({known}){hint}; check SMSFLOWS_FLOWS_DIR")


@asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """The database at SMSFLOWS_DATABASE_URL, once it is reachable and migrated."""
    engine = create_engine(settings)
    try:
        try:
            current = await is_current(engine)
        except OSError as exc:
            raise DatabaseUnavailable(
                f"cannot reach the database ({exc}); check SMSFLOWS_DATABASE_URL"
            ) from None
        if not current:
            raise MigrationsPending("the database schema is not up to date: run `smsflows db upgrade` first")
        yield engine
    finally:
        await engine.dispose()


async def read_results(settings: Settings, flow: LoadedFlow) -> FlowResults:
    async with open_database(settings) as engine, engine.connect() as conn:
        return await conn.run_sync(gather, flow)


async def read_entries(settings: Settings, flow: LoadedFlow) -> tuple[list[str], list[Sequence[Any]]]:
    async with open_database(settings) as engine, engine.connect() as conn:
        return await conn.run_sync(entries, flow)


def print_results(res: FlowResults, console: Console) -> None:
    """Any kind's results as tables: the scalars of a mapping together, each nested list or
    mapping in a table of its own, and a share bar wherever counts add up to a whole."""
    console.print(Text(f"{res.name} — {res.kind} flow {res.flow} (version {res.hash})", style="bold"))
    for table in _tables("results", res.results, top=True):
        console.print(table)
    console.print(_mapping_table("events by outcome", res.outcomes or {"(none yet)": 0}))


# Columns that count parts of a whole (a tally, a distribution): they get a share bar.
_SHARE_NAMES = ("votes", "count", "redemptions", "messages")
_LABEL_NAMES = ("id", "option", "value", "name", "step")


def _tables(title: str, value: Any, *, top: bool = False) -> list[RichTable]:
    def child(key: str) -> str:
        return key if top else f"{title} › {key}"

    if isinstance(value, dict):
        scalars = {k: v for k, v in value.items() if not isinstance(v, dict | list)}
        # A mapping of counts alone (statuses, outcomes) is a whole split in parts; mixed
        # figures (a total next to the number of voters) are not.
        whole = not top and len(scalars) == len(value)
        tables = [_mapping_table(title, scalars, bars=whole)] if scalars else []
        for key, v in value.items():
            if isinstance(v, dict | list):
                tables += _tables(child(str(key)), v)
        return tables
    if isinstance(value, list) and value and all(isinstance(i, dict) for i in value):
        tables = [_list_table(title, value)]
        for n, item in enumerate(value, start=1):
            label = next((str(item[k]) for k in _LABEL_NAMES if k in item), str(n))
            for key, v in item.items():
                if isinstance(v, dict | list) and v:
                    tables += _tables(f"{title} › {label} › {key}", v)
        return tables
    table = _table_titled(title)
    table.add_column("value")
    for item in value if isinstance(value, list) else [value]:
        table.add_row(_cell(item))
    return [table]


def _list_table(title: str, items: list[dict[str, Any]]) -> RichTable:
    table = _table_titled(title)
    columns = [
        c
        for c in dict.fromkeys(k for item in items for k in item)
        if not any(isinstance(i.get(c), dict | list) for i in items)
    ]
    counted = [c for c in columns if all(_is_count(i.get(c)) for i in items)]
    for c in columns:
        table.add_column(c, justify="right" if c in counted else "left")
    share = next((c for c in _SHARE_NAMES if c in counted), None) if len(items) > 1 else None
    if share is not None:
        table.add_column("share")
    total = sum(i[share] for i in items) if share is not None else 0
    for item in items:
        cells = [_cell(item.get(c)) for c in columns]
        table.add_row(*cells, *([_bar(item[share], total)] if share is not None else []))
    return table


def _mapping_table(title: str, mapping: dict[str, Any], *, bars: bool = True) -> RichTable:
    table = _table_titled(title)
    table.add_column("")
    table.add_column("value", justify="right")
    bars = bars and len(mapping) > 1 and all(_is_count(v) for v in mapping.values())
    if bars:
        table.add_column("share")
    total = sum(mapping.values()) if bars else 0
    for key, value in mapping.items():
        table.add_row(Text(str(key)), _cell(value), *([_bar(value, total)] if bars else []))
    return table


def _table_titled(title: str) -> RichTable:
    return RichTable(title=title, title_justify="left", min_width=len(title) + 2)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _cell(value: Any) -> Text:
    if isinstance(value, dict | list):
        return Text(msgspec.json.encode(value).decode())
    if isinstance(value, datetime):
        return Text(value.isoformat())
    return Text("" if value is None else str(value))


def _bar(value: int, total: int, width: int = 20) -> Text:
    share = value / total if total else 0.0
    filled = round(share * width)
    return Text("█" * filled + "░" * (width - filled) + f" {share:6.1%}", style="green")
