"""``serve``, ``db`` and ``worker``: running the service and its database."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import click

from app.cli.root import cli_settings, main
from app.logs import configure_logging
from app.settings import Settings, is_loopback


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

    from app.metrics import prepare_multiprocess
    from app.server import server_options

    settings = cli_settings()
    host = host or settings.host
    settings.refuse_dev_secrets(host)
    configure_logging(settings)
    asyncio.run(_prepare_database(settings))
    if not is_loopback(host):
        asyncio.run(_refuse_dev_passwords(settings, host))
    counts = Path(tempfile.mkdtemp(prefix="smsflows-metrics-")) if workers > 1 else None
    if counts is not None:
        prepare_multiprocess(counts)  # one /metrics scrape adds up every worker's counts
    try:
        uvicorn.run(
            "app.main:app_from_env",
            factory=True,
            host=host,
            port=port or settings.port,
            workers=workers,
            **server_options(settings),
        )
    finally:
        if counts is not None:
            shutil.rmtree(counts, ignore_errors=True)


async def _prepare_database(settings: Settings) -> None:
    """Migrate the embedded SQLite, or check PostgreSQL is migrated: the rule of every command."""
    from app.db.migrate import open_database

    async with open_database(settings):
        pass


async def _refuse_dev_passwords(settings: Settings, host: str) -> None:
    """A dashboard user with the password `make run` gives must not be served to other machines."""
    from app.db.engine import session_factory
    from app.db.migrate import open_database
    from app.db.users import with_password
    from app.settings import DEV_PASSWORDS

    async with open_database(settings) as engine, session_factory(engine)() as session:
        names = await with_password(session, DEV_PASSWORDS)
    if names:
        raise click.ClickException(
            f"the dashboard user(s) {', '.join(names)} have the development password "
            f"{DEV_PASSWORDS[0]!r}, and the service would listen on {host}, where others can reach it: "
            f"set a password of your own (`smsflows users passwd {names[0]}`), or listen on 127.0.0.1"
        )


@main.group()
def db() -> None:
    """Database schema commands: create or migrate it, check its rows."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def db_upgrade(revision: str) -> None:
    """Create or migrate the database named by SMSFLOWS_DATABASE_URL."""
    from app.db.engine import create_engine
    from app.db.migrate import head_revision, unreachable, upgrade

    settings = cli_settings()

    async def run() -> None:
        engine = create_engine(settings)
        try:
            await upgrade(engine, revision)
        except OSError as exc:
            raise unreachable(exc) from None
        finally:
            await engine.dispose()

    asyncio.run(run())
    click.echo(f"database at revision {head_revision() if revision == 'head' else revision}")


@db.command("check")
@click.option(
    "--quick",
    is_flag=True,
    help="SQLite: run `PRAGMA quick_check`, a few seconds per GB instead of half a minute. It "
    "still checks every row's CHECK and NOT NULL constraints (what the writer skips, the reason for "
    "the check) and the file's pages; it leaves out UNIQUE constraints and whether each index "
    "matches its table.",
)
def db_check(quick: bool) -> None:
    """Check every stored row against the schema's CHECK and NOT NULL constraints.

    On SQLite this runs `PRAGMA integrity_check`: the service's writer skips CHECK constraints
    on its own connection for speed, and this proves the rows it wrote keep them (it also finds
    damaged pages and indexes). It reads the whole file and every index: about half a minute per
    GB with the file in the OS cache, more from disk (docs/operations.md); the service can keep
    running. Exits 1 if anything is wrong.

    On PostgreSQL there is nothing for it to check: the server enforces every constraint on every
    connection. It only checks that the database answers, and says so.

    \b
    Example (nightly, beside the backup):
      smsflows db check || mail -s "smsflows database check failed" ops@example.com
    """
    from app.db.engine import create_engine, sqlite_path
    from app.db.integrity import PROBLEMS_SHOWN, IntegrityReport, check_integrity
    from app.db.migrate import unreachable

    settings = cli_settings()
    path = sqlite_path(settings.database_url) if settings.is_sqlite else None
    if path is not None and not path.is_file():
        raise click.ClickException(f"no database at {path}: check SMSFLOWS_DATABASE_URL")
    if path is not None:
        click.echo(_check_notice(path, quick), err=True)

    async def run() -> IntegrityReport:
        engine = create_engine(settings)
        try:
            return await check_integrity(engine, quick=quick)
        except OSError as exc:
            raise unreachable(exc) from None
        finally:
            await engine.dispose()

    start = time.monotonic()
    report = asyncio.run(run())
    if not report.checked:
        click.echo(
            "ok: nothing to check on PostgreSQL, the server enforces every CHECK and NOT NULL "
            "constraint itself on every write; the database answers"
        )
        return
    if report.ok:
        what = "quick check" if quick else "check"
        click.echo(f"ok: every row keeps the schema's constraints ({what}, {time.monotonic() - start:.0f} s)")
        return
    for problem in report.problems:
        click.echo(problem, err=True)
    more = " (the first ones)" if len(report.problems) >= PROBLEMS_SHOWN else ""
    raise click.ClickException(
        f"the database check found {len(report.problems)} problem(s){more}; "
        "see docs/operations.md#checking-the-database"
    )


def _check_notice(path: Path, quick: bool) -> str:
    """What the check is about to read, said before it starts: it can take minutes."""
    size = sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.is_file())
    if quick:
        return (
            f"checking {size / 1e6:,.0f} MB at {path} (quick: every row's constraints and the pages, "
            "not whether each index matches its table)..."
        )
    return (
        f"checking {size / 1e6:,.0f} MB at {path}: this reads the whole file and every index, "
        "about half a minute per GB (--quick takes a few seconds)..."
    )


@main.command()
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    default=8,
    show_default=True,
    help="Messages in flight at most (also how many one claim takes).",
)
@click.option("--once", is_flag=True, help="Send what is due now, then exit.")
def worker(concurrency: int, once: bool) -> None:
    """Deliver the outbox: send queued messages through Mobitex, or record them as dry runs.

    The service does this itself unless SMSFLOWS_DISPATCHER=false; a worker is for more sending
    power or a separate process. On PostgreSQL any number of workers, on any machines, can run
    at once: each message is claimed by one of them. SMSFLOWS_SEND_RATE and
    SMSFLOWS_SEND_RATE_PER_NUMBER apply to each process, so give each worker its share.

    \b
    Example: a second sender beside the service
      SMSFLOWS_SEND_RATE=10 smsflows worker --concurrency 16
    """
    from app.db.engine import create_engine
    from app.outbox.dispatcher import Tick, run_worker

    settings = cli_settings()
    configure_logging(settings)
    asyncio.run(_prepare_database(settings))

    async def run() -> Tick | None:
        engine = create_engine(settings)
        try:
            return await run_worker(settings, engine, concurrency, once)
        finally:
            await engine.dispose()

    done = asyncio.run(run())
    if done is not None:
        click.echo(done.summary())
