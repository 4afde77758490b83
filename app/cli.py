"""The ``smsflows`` command."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import click

from app import __version__
from app.errors import SmsflowsError
from app.settings import Settings, load_settings


def _settings() -> Settings:
    try:
        return load_settings()
    except SmsflowsError as exc:
        raise click.ClickException(str(exc)) from None


class _CleanErrors(click.Group):
    """Domain errors become one readable line instead of a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except SmsflowsError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=_CleanErrors)
@click.version_option(__version__, prog_name="smsflows")
def main() -> None:
    """Two-way SMS keyword campaigns on the Mobitex gateway.

    Settings come from SMSFLOWS_* environment variables or a .env file in the current folder
    (see docs/configuration.md).
    """


@main.command()
@click.option("--host", default=None, help="Address to listen on [default: SMSFLOWS_HOST or 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port [default: SMSFLOWS_PORT or 8000].")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True, help="Worker processes.")
def serve(host: str | None, port: int | None, workers: int) -> None:
    """Run the service: the MO webhook, the API and /health.

    On the embedded SQLite database the schema is created and migrated at start; on PostgreSQL
    run `smsflows db upgrade` first.
    """
    import uvicorn

    from app.server import server_options

    settings = _settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_prepare_database(settings))
    uvicorn.run(
        "app.main:app_from_env",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        **server_options(settings),
    )


async def _prepare_database(settings: Settings) -> None:
    """Migrate the embedded SQLite once, before workers start; check PostgreSQL is migrated."""
    from app.db.engine import create_engine
    from app.db.migrate import is_current, upgrade
    from app.errors import MigrationsPending

    engine = create_engine(settings)
    try:
        if settings.is_sqlite:
            await upgrade(engine)
        elif not await is_current(engine):
            raise MigrationsPending("the database schema is not up to date: run `smsflows db upgrade` first")
    except OSError as exc:
        raise click.ClickException(
            f"cannot reach the database ({exc}); check SMSFLOWS_DATABASE_URL"
        ) from None
    finally:
        await engine.dispose()


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def db_upgrade(revision: str) -> None:
    """Create or migrate the database named by SMSFLOWS_DATABASE_URL."""
    from app.db.engine import create_engine
    from app.db.migrate import head_revision, upgrade

    settings = _settings()

    async def run() -> None:
        engine = create_engine(settings)
        try:
            await upgrade(engine, revision)
        finally:
            await engine.dispose()

    try:
        asyncio.run(run())
    except OSError as exc:
        raise click.ClickException(
            f"cannot reach the database ({exc}); check SMSFLOWS_DATABASE_URL"
        ) from None
    click.echo(f"database at revision {head_revision() if revision == 'head' else revision}")


@main.command()
@click.option("--url", default="http://127.0.0.1:8000/mobitex/mo", show_default=True, help="Webhook URL.")
@click.option("--count", type=click.IntRange(1), default=1, show_default=True, help="Messages to send.")
@click.option(
    "--rate",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="New messages per second (0 = as fast as --concurrency allows).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1024),
    default=16,
    show_default=True,
    help="Requests in flight at most.",
)
@click.option("--number", default="70120", show_default=True, help="Destination number (ours).")
@click.option("--sender", default="48600123456", show_default=True, help="The phone sending.")
@click.option("--text", default="GLOS A", show_default=True, help="Message text.")
@click.option("--ext-id", default="", help="ext_id: the message this one answers (S1 service).")
@click.option(
    "--charset",
    type=click.Choice(["utf-8", "windows-1250", "iso-8859-2"]),
    default="utf-8",
    show_default=True,
    help="Encoding of the text's bytes (Mobitex accepts all three).",
)
@click.option(
    "--retry-interval",
    type=click.FloatRange(min=0),
    default=180.0,
    show_default=True,
    help="Seconds before resending a request that did not get 200 (Mobitex waits 180).",
)
@click.option("--max-attempts", type=click.IntRange(1), default=None, help="Give up after this many tries.")
@click.option("--forwarded-for", default=None, help="Send X-Forwarded-For (testing behind a proxy).")
def simulate(**options: object) -> None:
    """Send MO requests to a running service exactly as Mobitex does.

    Each is a form POST with number, sender, text, a fresh 32-character sms_id, the current unix
    time and the optional ext_id; a request that does not get 200 is sent again after
    --retry-interval seconds, like Mobitex.

    \b
    Example: 500 votes at 100 per second
      smsflows simulate --count 500 --rate 100 --text "GLOS A"
    """
    import msgspec

    from app.mobitex.simulator import SimulationOptions, run_simulation

    try:
        simulation = msgspec.convert(options, SimulationOptions)
    except msgspec.ValidationError as exc:
        raise click.UsageError(str(exc)) from None
    result = asyncio.run(run_simulation(simulation))
    click.echo(result.summary())
    if result.failed:
        sys.exit(1)


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

    from app.db.models import utcnow
    from app.flows.check import check_dir, print_report

    report = check_dir(directory or Path(_settings().flows_dir), utcnow())
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
    from rich.console import Console

    from app.flows.codes_import import run_import

    report = asyncio.run(run_import(_settings(), flow_id, file, Console(stderr=True)))
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

    from app.flows.results import find_flow, print_results, read_results

    settings = _settings()
    results = asyncio.run(read_results(settings, find_flow(Path(settings.flows_dir), flow_id)))
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
    its answers; other kinds export their decisions from the event log. Times are UTC.

    \b
    Example:
      smsflows export final --csv final-votes.csv
    """
    from app.flows.results import find_flow, read_entries, write_csv

    settings = _settings()
    columns, rows = asyncio.run(read_entries(settings, find_flow(Path(settings.flows_dir), flow_id)))
    if str(csv_file) == "-":
        write_csv(sys.stdout, columns, rows)
        return
    try:
        with csv_file.open("w", newline="", encoding="utf-8") as out:
            write_csv(out, columns, rows)
    except OSError as exc:
        raise click.ClickException(f"cannot write {csv_file}: {exc.strerror}") from None
    click.echo(f"{len(rows)} row(s) written to {csv_file}", err=True)


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
    from rich.console import Console

    from app.flows.loader import load_dir
    from app.flows.replay import print_summary, run_replay

    settings = _settings()
    # The summary lists every failure with its error; SMSFLOWS_LOG_LEVEL=DEBUG adds the tracebacks.
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("smsflows").setLevel("DEBUG" if settings.log_level == "DEBUG" else "CRITICAL")
    current = load_dir(Path(settings.flows_dir))
    if flow_id is not None and flow_id not in current.flows:
        known = ", ".join(sorted(current.flows)) or "none"
        raise click.BadParameter(f"no flow {flow_id!r} in {settings.flows_dir} (flows: {known})")
    summary = asyncio.run(run_replay(settings, current, statuses, flow_id, dry_run=dry_run))
    print_summary(summary, Console())
    if summary.failures and not dry_run:
        sys.exit(1)


@main.command()
def balance() -> None:
    """Show the Mobitex account balance (balance.php of SMSFLOWS_MOBITEX_URL).

    Uses SMSFLOWS_MOBITEX_USER and SMSFLOWS_MOBITEX_PASSWORD; the balance may be negative on a
    postpaid account.
    """
    from decimal import Decimal

    from app.mobitex.client import MobitexClient

    settings = _settings()
    user, password = settings.mobitex_user, settings.mobitex_password
    if not user or not password:
        raise click.ClickException(
            "no Mobitex account: set SMSFLOWS_MOBITEX_USER and SMSFLOWS_MOBITEX_PASSWORD "
            "(in the environment or .env)"
        )

    async def read() -> Decimal:
        async with MobitexClient(settings.mobitex_url, user, password) as client:
            return await client.balance()

    click.echo(f"Mobitex balance of {user}: {asyncio.run(read())}")


@main.command("fake-mobitex")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=8099, show_default=True, help="Port.")
@click.option("--user", default="smsflows", show_default=True, help="The fake account's login.")
@click.option("--password", default="smsflows", show_default=True, help="The fake account's password.")
@click.option(
    "--sender",
    "senders",
    multiple=True,
    default=("70120", "SMSFLOWS"),
    show_default=True,
    help="A `from` authorised on the account (others get status 114); repeat for several.",
)
@click.option(
    "--webhook", default=None, help="Where replies are POSTed, e.g. http://127.0.0.1:8000/mobitex/mo."
)
@click.option("--short-number", default=None, help="The `number` of replies [default: the `from` answered].")
@click.option(
    "--ext-id-mode",
    type=click.Choice(["mobitex_id", "client_ext_id"]),
    default="mobitex_id",
    show_default=True,
    help="What a reply's ext_id holds: Mobitex's Id of the message answered, or its ext_id.",
)
@click.option(
    "--retry-interval",
    type=click.FloatRange(min=0, min_open=True),
    default=180.0,
    show_default=True,
    help="Seconds before resending a reply that did not get 200 (Mobitex waits 180).",
)
@click.option("--auto-reply", default=None, help="Answer every accepted message with this text.")
@click.option(
    "--auto-reply-delay",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Seconds between a message and its automatic reply.",
)
def fake_mobitex(host: str, port: int, webhook: str | None, **options: object) -> None:
    """Run a fake Mobitex gateway: sms.php and balance.php, plus a phone that replies.

    It checks credentials, numbers, types, lengths and senders as Mobitex does, records every
    message it accepts, and can fail on demand. The control API (JSON): GET/DELETE
    /fake/messages, POST /fake/fail, POST /fake/reply, GET /fake/deliveries (see docs/mobitex.md).

    \b
    Example: the service and the fake, talking to each other
      smsflows fake-mobitex --webhook http://127.0.0.1:8000/mobitex/mo
      SMSFLOWS_MOBITEX_URL=http://127.0.0.1:8099/sms.php SMSFLOWS_MO_ALLOWED_IPS=127.0.0.1 smsflows serve
    """
    import msgspec

    from app.mobitex.fake_gateway import FakeGatewayConfig, run_fake_gateway

    try:
        config = msgspec.convert({**options, "webhook_url": webhook}, FakeGatewayConfig)
    except msgspec.ValidationError as exc:
        raise click.UsageError(str(exc)) from None
    url = f"http://{host}:{port}"
    click.echo(f"fake Mobitex at {url}/sms.php; use it with:")
    click.echo(f"  SMSFLOWS_MOBITEX_URL={url}/sms.php")
    click.echo(f"  SMSFLOWS_MOBITEX_USER={config.user}")
    click.echo(f"  SMSFLOWS_MOBITEX_PASSWORD={config.password}")
    click.echo(f"  SMSFLOWS_MOBITEX_FROM={config.senders[0]}")
    if webhook:
        click.echo(
            f"replies go to {webhook}; a local service must allow them: SMSFLOWS_MO_ALLOWED_IPS=127.0.0.1"
        )
    run_fake_gateway(config, host, port)


if __name__ == "__main__":
    main()
