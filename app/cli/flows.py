"""``flows``, ``codes``, ``results``, ``export`` and ``replay``: working with flows."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import click

from app.cli.root import cli_settings, main


@main.group()
def flows() -> None:
    """Flow files: check them before the service loads them."""


@flows.command("check")
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of tables.")
def flows_check(directory: Path | None, as_json: bool) -> None:
    """Check every flow file in DIRECTORY [default: SMSFLOWS_FLOWS_DIR] and the set as a whole.

    Lists each flow with its numbers, keywords, window (Europe/Warsaw) and status, and each reply
    rendered with sample data: its encoding (GSM-7 or UCS-2), length and SMS parts. Every error is
    printed as `file: field: what is expected`, and any error makes the exit status 1.
    """
    import msgspec
    from rich.console import Console

    from app.cli.check_view import print_report
    from app.db.models import utcnow
    from app.flows.check import check_dir

    settings = cli_settings()
    report = check_dir(directory or Path(settings.flows_dir), utcnow(), settings.replies_per_day)
    if as_json:
        click.echo(msgspec.json.format(msgspec.json.encode(report)).decode())
    else:
        print_report(report, Console(), Console(stderr=True))
    if report.errors:
        sys.exit(1)


@main.group()
def codes() -> None:
    """Contest codes of `code` flows."""


@codes.command("import")
@click.argument("flow_id", metavar="ID")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
def codes_import(flow_id: str, file: Path | None) -> None:
    """Import the valid codes of code flow ID from FILE [default: the flow's code.file].

    One code per line, or a CSV file (.csv) with a header row and the code in the column named
    by code.column (else the first). Codes are stored normalised: upper case, no spaces or
    dashes. Lines that are not codes are listed with their numbers and skipped. Running it again
    is safe: codes already there are left as they are, and the summary says how many were new.

    \b
    Example:
      smsflows codes import summer codes/summer-batch2.csv
    """
    from app.cli.progress import codes_progress
    from app.flows.codes_import import import_target, run_import

    settings = cli_settings()
    flow, path = import_target(Path(settings.flows_dir), flow_id, file)
    with codes_progress(flow.id, path.stat().st_size) as show:
        report = asyncio.run(run_import(settings, flow, path, show))
    for line in report.problems():
        click.echo(line, err=True)
    click.echo(report.summary())


@main.command("results")
@click.argument("flow_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON instead of tables.")
def results_command(flow_id: str, as_json: bool) -> None:
    """Show the results of flow ID (a vote's tally, ...) and its decisions by outcome.

    The flow comes from SMSFLOWS_FLOWS_DIR, its data from SMSFLOWS_DATABASE_URL.
    """
    import msgspec
    from rich.console import Console

    from app.cli.results_view import print_results
    from app.db.migrate import open_database
    from app.flows.loader import find_flow
    from app.reads.results import FlowResults, flow_results

    settings = cli_settings()
    flow = find_flow(Path(settings.flows_dir), flow_id)

    async def read() -> FlowResults:
        async with open_database(settings) as engine, engine.connect() as conn:
            return await conn.run_sync(flow_results, flow)

    results = asyncio.run(read())
    if as_json:
        click.echo(msgspec.json.format(msgspec.json.encode(results)).decode())
    else:
        print_results(results, Console())


@main.command("export")
@click.argument("flow_id", metavar="ID")
@click.option(
    "--csv",
    "csv_file",
    required=True,
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="The CSV file to write ('-' for standard output).",
)
def export_command(flow_id: str, csv_file: Path) -> None:
    """Export the entries of flow ID as CSV, one row each, oldest first.

    A vote exports its votes, a contest its code redemptions, a list its subscriptions, a survey
    its answers; other kinds export their decisions from the event log. Times are UTC. Beside
    the file goes FILE.manifest.json with its row count and SHA-256 (see `smsflows check-export`).

    \b
    Example:
      smsflows export final --csv final-votes.csv
    """
    from collections.abc import Callable
    from contextlib import AbstractContextManager as ContextManager
    from contextlib import nullcontext
    from typing import TextIO

    from app.cli.terminal import printable
    from app.db.migrate import open_database
    from app.db.models import utcnow
    from app.evidence import write_manifest
    from app.flows.loader import find_flow
    from app.reads.csv_cells import write_csv
    from app.reads.results import entries_page

    settings = cli_settings()
    flow = find_flow(Path(settings.flows_dir), flow_id)

    async def write(opened: Callable[[], ContextManager[TextIO]], shown: Callable[[str], str] | None) -> int:
        """The entries written a page at a time as they are read; returns how many. The file is
        opened once the database has answered, so a failed read leaves no empty file behind."""
        async with open_database(settings) as engine, engine.connect() as conn:
            page = await conn.run_sync(lambda c: entries_page(c, flow))
            with opened() as out:
                write_csv(out, page.columns, page.items, shown=shown)
                written = len(page.items)
                while (after := page.next_cursor) is not None:
                    page = await conn.run_sync(lambda c: entries_page(c, flow, after=after))
                    write_csv(out, None, page.items, shown=shown)
                    written += len(page.items)
        return written

    if str(csv_file) == "-":
        shown = printable if sys.stdout.isatty() else None  # a file or a pipe gets the data as stored
        asyncio.run(write(lambda: nullcontext(sys.stdout), shown))
        return
    try:
        rows = asyncio.run(write(lambda: csv_file.open("w", newline="", encoding="utf-8"), None))
        manifest = write_manifest(csv_file, flow.id, flow.hash, rows, utcnow())
    except OSError as exc:
        if exc.filename is None:  # the database, not the file: as before, the command reports it
            raise
        raise click.ClickException(f"cannot write {exc.filename}: {exc.strerror}") from None
    click.echo(f"{rows} row(s) written to {csv_file}, SHA-256 {manifest.sha256}", err=True)
    click.echo(f"manifest: {csv_file}.manifest.json; `smsflows check-export {csv_file}` checks it", err=True)


@main.command()
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(["failed", "ignored", "received"]),  # REPLAYABLE in app/flows/replay.py
    default=("failed",),
    show_default=True,
    help="Replay the messages in this status; repeat the option for several.",
)
@click.option(
    "--flow",
    "flow_id",
    metavar="ID",
    default=None,
    help="Only flow ID acts; messages that go to other flows stay as they are.",
)
@click.option("--dry-run", is_flag=True, help="Show what would happen and save nothing.")
def replay(statuses: tuple[str, ...], flow_id: str | None, dry_run: bool) -> None:
    """Run stored messages through the flows again, e.g. after fixing a flow that failed.

    The flows are the files in SMSFLOWS_FLOWS_DIR as they are now (reload the service too:
    SIGHUP or POST /api/flows/reload). Nothing counts twice: a message that succeeds leaves its
    status, and each vote, redemption or answer belongs to one message. Processed messages are
    never replayed, since their flows would answer them again. Exits with 1 if any message fails.

    \b
    Example: after fixing a reply template
      smsflows flows check && smsflows replay --status failed
    """
    from dataclasses import replace

    from rich.console import Console

    from app.cli.replay_view import print_summary
    from app.flows.loader import load_dir
    from app.flows.replay import run_replay

    settings = cli_settings()
    # The summary lists every failure with its error; SMSFLOWS_LOG_LEVEL=DEBUG adds the tracebacks.
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("smsflows").setLevel("DEBUG" if settings.log_level == "DEBUG" else "CRITICAL")
    current = replace(load_dir(Path(settings.flows_dir)), replies_per_day=settings.replies_per_day)
    if flow_id is not None and flow_id not in current.flows:
        known = ", ".join(sorted(current.flows)) or "none"
        raise click.BadParameter(f"no flow {flow_id!r} in {settings.flows_dir} (flows: {known})")
    summary = asyncio.run(run_replay(settings, current, statuses, flow_id, dry_run=dry_run))
    print_summary(summary, Console())
    if summary.failures and not dry_run:
        sys.exit(1)
