"""``audit`` and ``check-export``: results that can be checked."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from app.cli.root import cli_settings, main

if TYPE_CHECKING:
    from rich.console import Console

    from app.evidence import AuditReport


@main.command("audit")
@click.argument("flow_id", metavar="FLOW")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def audit_command(flow_id: str, as_json: bool) -> None:
    """Rebuild FLOW's results from the event log and the stored messages, and compare them
    with the live tables; exit 1 on any difference.

    Every decision names the flow version (hash) that made it: the report shows the decisions
    and entries of each version. A difference means the tables were changed by something other
    than the flows (a row removed by hand, a restore from an older backup).

    \b
    Example:
      smsflows audit final
    """
    import msgspec
    from rich.console import Console

    from app.db.migrate import open_database
    from app.evidence import audit
    from app.flows.loader import find_flow

    settings = cli_settings()
    flow = find_flow(Path(settings.flows_dir), flow_id)

    async def go() -> AuditReport:
        async with open_database(settings) as engine, engine.connect() as conn:
            return await conn.run_sync(audit, flow)

    report = asyncio.run(go())
    if as_json:
        click.echo(msgspec.json.format(msgspec.json.encode(report)).decode())
    else:
        _print_report(report, Console())
    if not report.ok:
        sys.exit(1)


def _print_report(report: AuditReport, console: Console) -> None:
    from rich.table import Table

    console.print(
        f"[bold]audit of {report.kind} flow {report.flow}[/]: {report.events} decision(s) in the event log"
    )
    figures = Table(title="results")
    for column in ("", "from the event log", "in the live tables"):
        figures.add_column(column, justify="right" if column else "left")
    for key in dict.fromkeys([*report.rebuilt, *report.live]):
        ours, theirs = report.rebuilt.get(key, 0), report.live.get(key, 0)
        style = "" if ours == theirs else "red"
        figures.add_row(key, str(ours), str(theirs), style=style)
    console.print(figures)
    versions = Table(title="by flow version")
    for column in ("version", "decisions", "entries"):
        versions.add_column(column)
    for v in report.versions:
        outcomes = ", ".join(f"{k} {n}" for k, n in v.outcomes.items())
        versions.add_row(f"{v.hash or '(none)'}{' (current)' if v.current else ''}", outcomes, str(v.entries))
    console.print(versions)
    if report.ok:
        console.print("[green]the live tables match the event log[/]")
        return
    for line in report.listed:
        console.print(f"[red]  {line}[/]")
    more = report.differences - len(report.listed)
    console.print(
        f"[red]{report.differences} difference(s)" + (f", {more} not listed" if more else "") + "[/]"
    )


@main.command("check-export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def check_export(file: Path) -> None:
    """Check that an exported FILE is unchanged, against the manifest written beside it.

    \b
    Example:
      smsflows check-export final-votes.csv
    """
    from app.evidence import check_manifest

    manifest = check_manifest(file)
    click.echo(
        f"{file} is unchanged: {manifest.rows} row(s) of flow {manifest.flow} "
        f"(version {manifest.flow_hash}), "
        f"exported {manifest.exported_at:%Y-%m-%d %H:%M:%S} UTC, SHA-256 {manifest.sha256}"
    )
