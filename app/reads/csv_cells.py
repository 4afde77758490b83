"""CSV as every export writes it: cells a spreadsheet would run as a formula are made plain text.

A cell starting with ``= + - @`` (or a tab, carriage return or line feed, which some spreadsheets
skip before looking) is opened by Excel and LibreOffice as a formula, so an SMS answer like
``=HYPERLINK(...)`` would become a live link. Such cells get a leading apostrophe, the mark
spreadsheets themselves use for "text, not a formula"; the value stays readable. Plain numbers
(``-5``, ``+48600123456``) are not formulas and are written as they are.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TextIO

import msgspec

_FORMULA_START = re.compile(r"\s*[=+\-@\t\r\n\uff1d\uff0b\uff0d\uff20]")
_PLAIN_NUMBER = re.compile(r"[+-]?\d+(?:[.,]\d+)?")


def spreadsheet_safe(text: str) -> str:
    """``text`` as a spreadsheet shows it and never runs it."""
    if _FORMULA_START.match(text) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def cell(value: Any) -> str | int | float:
    """One value as a CSV cell: UTC times in ISO 8601, JSON for nested data, empty for missing."""
    if value is None:
        return ""
    if isinstance(value, int | float):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict | list):
        value = msgspec.json.encode(value).decode()
    return spreadsheet_safe(str(value))


def write_csv(
    out: TextIO,
    columns: Sequence[str] | None,
    rows: Sequence[Sequence[Any]],
    *,
    shown: Callable[[str], str] | None = None,
) -> None:
    """A header row (none for ``columns=None``: more rows of a file begun), then one row each;
    ``shown`` rewrites text cells once more (for a terminal)."""
    writer = csv.writer(out)
    for values in rows if columns is None else (columns, *rows):
        cells = [cell(v) for v in values]
        writer.writerow([shown(c) if shown and isinstance(c, str) else c for c in cells])
