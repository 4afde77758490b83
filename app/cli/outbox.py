"""``outbox``: the messages held as unknown after a gateway timeout, and an operator's decision on them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import click
from sqlalchemy.ext.asyncio import AsyncConnection

from app.cli.root import cli_settings, main


@main.group()
def outbox() -> None:
    """Messages Mobitex never answered and that wait for a decision (status `unknown`).

    A message whose request timed out may have reached the phone. With the `hold` policy (the
    default for flow replies) it is never resent by itself: look it up, then resend it or mark
    it failed.
    """


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
