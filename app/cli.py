"""The ``smsflows`` command."""

from __future__ import annotations

import asyncio
import logging
import sys

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


if __name__ == "__main__":
    main()
