"""``outbox``: send again what failed once the cause is fixed (``requeue``), and decide on the
messages held as unknown after a gateway timeout (``unknown``, ``resend``, ``fail``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

import click
from sqlalchemy.ext.asyncio import AsyncConnection

from app.cli.root import cli_settings, main


@main.group()
def outbox() -> None:
    """The outbox: messages queued to send, and those waiting for a decision.

    A message whose request timed out may have reached the phone. With the `hold` policy (the
    default for flow replies) it is held as `unknown` and never resent by itself: look it up,
    then resend it or mark it failed.
    """


@outbox.command("requeue")
@click.option(
    "--status",
    type=click.Choice(["failed", "dry-run"]),
    required=True,
    help="Which messages: those that failed, or those recorded as dry runs.",
)
@click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"]),
    default=None,
    help="Only messages created at or after this time (Warsaw time without an offset).",
)
@click.option("--error", "code", default=None, help="Only those Mobitex refused with this status, e.g. 202.")
@click.option("--dry-run", is_flag=True, help="Say how many would be queued again; change nothing.")
def requeue_command(status: str, since: datetime | None, code: str | None, dry_run: bool) -> None:
    """Queue failed messages again, due now, with a fresh count of attempts.

    \b
    Example: the account ran out of funds (Mobitex status 202) this morning; after topping it up
      smsflows outbox requeue --status failed --error 202 --since "2026-12-01 06:00"
    """
    from app.db.engine import create_engine
    from app.db.models import utcnow
    from app.flows.kinds.base import WARSAW
    from app.outbox.requeue import requeue

    settings = cli_settings()
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=WARSAW)

    async def run() -> int:
        engine = create_engine(settings)
        try:
            async with engine.begin() as conn:
                return await conn.run_sync(
                    lambda sync: requeue(
                        sync, status=status, now=utcnow(), since=since, mobitex_status=code, dry_run=dry_run
                    )
                )
        finally:
            await engine.dispose()

    try:
        count = asyncio.run(run())
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--error") from None
    except OSError as exc:
        raise click.ClickException(
            f"cannot reach the database ({exc}); check SMSFLOWS_DATABASE_URL"
        ) from None
    if dry_run:
        click.echo(f"Dry run: {count} message(s) would be queued again; nothing was changed")
    else:
        sender = "the running service" if settings.dispatcher else "`smsflows worker`"
        mode = "" if settings.sends_for_real else " (in dry-run mode: recorded as dry-run, not sent)"
        click.echo(f"{count} message(s) queued again; {sender} sends them{mode}")


@outbox.command("unknown")
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True, help="Messages shown.")
def list_unknown(limit: int) -> None:
    """List the messages held as unknown, oldest first."""
    from app.outbox.unknown import held_messages

    async def run(conn: AsyncConnection) -> None:
        held = await held_messages(conn, limit)
        for m in held:
            click.echo(
                f"{m.id}\t{m.to_number}\t{m.created_at:%Y-%m-%d %H:%M:%S}Z\t{m.text[:40]!r}\t{m.last_error}"
            )
        click.echo(f"{len(held)} message(s) held as unknown", err=True)

    _with_connection(run)


@outbox.command()
@click.argument("ids", type=int, nargs=-1, required=True)
def resend(ids: Sequence[int]) -> None:
    """Queue held messages IDS again (the phone may get one twice if the first did arrive)."""
    from app.outbox.unknown import resend as resend_held

    _decide(resend_held, ids, "queued again")


@outbox.command()
@click.argument("ids", type=int, nargs=-1, required=True)
def fail(ids: Sequence[int]) -> None:
    """Mark held messages IDS failed: they are not sent again."""
    from app.outbox.unknown import mark_failed

    _decide(mark_failed, ids, "marked failed")


def _decide(
    decide: Callable[[AsyncConnection, Sequence[int]], Awaitable[None]], ids: Sequence[int], done: str
) -> None:
    async def run(conn: AsyncConnection) -> None:
        await decide(conn, ids)
        await conn.commit()
        click.echo(f"{len(ids)} message(s) {done}: {', '.join(map(str, ids))}")

    _with_connection(run)


def _with_connection(body: Callable[[AsyncConnection], Awaitable[None]]) -> None:
    from app.db.engine import create_engine

    settings = cli_settings()

    async def run() -> None:
        engine = create_engine(settings)
        try:
            async with engine.connect() as conn:
                await body(conn)
        finally:
            await engine.dispose()

    try:
        asyncio.run(run())
    except OSError as exc:
        raise click.ClickException(
            f"cannot reach the database ({exc}); check SMSFLOWS_DATABASE_URL"
        ) from None
