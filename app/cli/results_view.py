"""``smsflows results`` on the terminal: any kind's results as tables, with share bars."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from app.cli.terminal import plain
from app.reads.results import FlowResults


def print_results(res: FlowResults, console: Console) -> None:
    """Any kind's results as tables: the scalars of a mapping together, each nested list or
    mapping in a table of its own, and a share bar wherever counts add up to a whole."""
    console.print(plain(f"{res.name} — {res.kind} flow {res.flow} (version {res.hash})", style="bold"))
    # The kind's Struct as plain mappings and lists (times stay times): one renderer for every kind.
    results = msgspec.to_builtins(res.results, builtin_types=(datetime,))
    for table in _tables("results", results, top=True):
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
        table.add_column(plain(c), justify="right" if c in counted else "left")
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
        table.add_row(plain(str(key)), _cell(value), *([_bar(value, total)] if bars else []))
    return table


def _table_titled(title: str) -> RichTable:
    return RichTable(title=plain(title), title_justify="left", min_width=len(title) + 2)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _cell(value: Any) -> Text:
    if isinstance(value, dict | list):
        return plain(msgspec.json.encode(value).decode())
    if isinstance(value, datetime):
        return Text(value.isoformat())
    return plain("" if value is None else str(value))


def _bar(value: int, total: int, width: int = 20) -> Text:
    share = value / total if total else 0.0
    filled = round(share * width)
    return Text("█" * filled + "░" * (width - filled) + f" {share:6.1%}", style="green")
