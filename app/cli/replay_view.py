"""``smsflows replay`` on the terminal: what the messages became, and those still failing."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from app.cli.terminal import plain
from app.flows.replay import ReplaySummary

_LABELS = {"skipped": "skipped (another flow's message)"}
_SHOWN_FAILURES = 20


def print_summary(summary: ReplaySummary, console: Console) -> None:
    which = " or ".join(summary.statuses)
    scope = f" for flow {summary.flow}" if summary.flow else ""
    acted = summary.messages - summary.outcomes.get("skipped", 0)
    if not acted:
        console.print(f"No {which} messages to replay{scope}.", highlight=False)
        return
    verb = "Would replay" if summary.dry_run else "Replayed"
    console.print(f"{verb} {acted} {which} message(s){scope}.", highlight=False)
    table = Table(title="new status", title_justify="left")
    table.add_column("status")
    table.add_column("messages", justify="right")
    for status, count in summary.outcomes.items():
        table.add_row(_LABELS.get(status, status), str(count))
    console.print(table)
    if summary.failures:
        failed = Table(title="still failing: fix the flow, then replay again", title_justify="left")
        failed.add_column("sms_id")
        failed.add_column("error")
        for sms_id, error in list(summary.failures.items())[:_SHOWN_FAILURES]:
            failed.add_row(plain(sms_id), plain(error))
        console.print(failed)
        if len(summary.failures) > _SHOWN_FAILURES:
            console.print(f"... and {len(summary.failures) - _SHOWN_FAILURES} more failed messages.")
    if summary.dry_run:
        console.print("Dry run: nothing was saved.", style="bold")
