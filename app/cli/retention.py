"""``retention purge``: drop raw bodies, the quarantine and message texts past their age."""

from __future__ import annotations

import asyncio

import click

from app.cli.root import cli_settings, main


@main.group()
def retention() -> None:
    """How long raw requests and message texts are kept (see docs/operations.md)."""


@retention.command("purge")
def retention_purge() -> None:
    """Purge what is older than the configured ages, and say how much.

    Raw request bodies and quarantined requests older than SMSFLOWS_RETENTION_RAW_DAYS; texts
    of messages received and sent older than SMSFLOWS_RETENTION_TEXT_DAYS (not those that can
    still be replayed or are not sent yet). Results, entries and the decisions of the event log
    stay. The service runs it by itself every SMSFLOWS_RETENTION_PURGE_HOURS hours if that is set.

    \b
    Example:
      SMSFLOWS_RETENTION_RAW_DAYS=30 SMSFLOWS_RETENTION_TEXT_DAYS=180 smsflows retention purge
    """
    from app.db.migrate import open_database
    from app.privacy.retention import Purged, purge

    settings = cli_settings()
    if settings.retention_raw_days is None and settings.retention_text_days is None:
        raise click.ClickException(
            "nothing to purge: set SMSFLOWS_RETENTION_RAW_DAYS and/or SMSFLOWS_RETENTION_TEXT_DAYS "
            "(see docs/operations.md)"
        )

    async def go() -> Purged:
        async with open_database(settings) as engine:
            return await purge(engine, settings)

    click.echo(asyncio.run(go()).summary())
