"""``smsflows flows check`` on the terminal: the flows and their replies as tables, errors one a line."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from app.cli.terminal import plain, printable
from app.flows.check import CheckReport

_STATUS_STYLE = {
    "open": "green",
    "enabled": "green",
    "upcoming": "cyan",
    "closed": "yellow",
    "disabled": "dim",
}


def print_report(report: CheckReport, out: Console, err: Console) -> None:
    """The flows and their replies as tables on ``out``; every error, one a line, on ``err``."""
    if report.flows:
        flows = Table(title=f"Flows in {report.directory}", title_justify="left")
        for column in ("id", "kind", "numbers", "keywords", "window (Europe/Warsaw)", "status", "repeats"):
            flows.add_column(column)
        for f in report.flows:
            flows.add_row(
                f.id,
                f.kind,
                ", ".join(f.numbers),
                plain(", ".join(f.keywords) or "—"),
                f.window,
                f"[{_STATUS_STYLE.get(f.status, '')}]{f.status}[/]",
                f.repeats,
            )
        out.print(flows)
        cap = f"at most {report.replies_per_day} a day" if report.replies_per_day else "no daily cap"
        out.print(
            f"Replies to one phone, all flows together: {cap} (SMSFLOWS_REPLIES_PER_DAY); "
            "accepted votes and codes are always answered.",
            highlight=False,
        )
        replies = Table(title="Replies rendered with sample data", title_justify="left")
        for column in ("flow", "reply", "encoding", "length", "parts", "sample"):
            replies.add_column(column, justify="right" if column in ("length", "parts") else "left")
        for f in report.flows:
            for r in f.replies:
                parts = f"{r.parts}/{r.max_parts}" if r.ok else f"[red]{r.parts}/{r.max_parts}[/]"
                replies.add_row(f.id, r.name, r.encoding, str(r.length), parts, plain(r.sample))
        out.print(replies)
    elif not report.errors:
        out.print(f"No flow files (*.toml) in {report.directory}.")
    if report.errors:
        err.print(f"{len(report.errors)} error(s):", style="bold red", highlight=False)
        for line in report.errors:
            err.print(printable(line), soft_wrap=True, markup=False, highlight=False)
    else:
        out.print(f"{len(report.flows)} flow(s), no errors.", highlight=False)
