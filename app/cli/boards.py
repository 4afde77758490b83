"""``board``: links to a flow's public results board (made, listed, revoked)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import click

from app.cli.root import cli_actor, cli_settings, main

if TYPE_CHECKING:
    from app.boards import BoardLinkOut, NewLink


@main.group()
def board() -> None:
    """Public results boards: aggregated figures of a flow behind a revocable link, no login."""


@board.command("create")
@click.argument("flow_id", metavar="FLOW")
@click.option("--label", default=None, help="What the link is for, e.g. 'studio screen'.")
@click.option("--by", default=None, metavar="NAME", help="Who makes it, for the audit log.")
def board_create(flow_id: str, label: str | None, by: str | None) -> None:
    """Make a link to FLOW's board and print it; the token is shown this once.

    The board shows the flow's figures (a vote's tally, counts), never a phone number. Anyone
    with the link can open it: give it to the studio, and revoke it when the show is over.

    \b
    Example:
      smsflows board create final --label "studio screen"
    """
    from app.boards import create_link
    from app.db.migrate import open_database
    from app.flows.loader import find_flow

    settings = cli_settings()
    flow = find_flow(Path(settings.flows_dir), flow_id)

    async def go() -> NewLink:
        async with open_database(settings) as engine, engine.begin() as conn:
            return await conn.run_sync(create_link, flow.id, label, cli_actor(by))

    made = asyncio.run(go())
    base = f"http://{settings.host}:{settings.port}"
    click.echo(f"board link {made.link.id} for flow {flow.id}: {base}{made.path}")
    click.echo(f"figures as JSON: {base}/api/board/{made.token}")
    click.echo(f"revoke it with `smsflows board revoke {made.link.id}`", err=True)


@board.command("list")
@click.argument("flow_id", metavar="FLOW", required=False)
def board_list(flow_id: str | None) -> None:
    """The board links (of FLOW, or of every flow), live and revoked; tokens are not kept."""
    from app.boards import list_links
    from app.db.migrate import open_database

    settings = cli_settings()

    async def go() -> list[BoardLinkOut]:
        async with open_database(settings) as engine, engine.connect() as conn:
            return await conn.run_sync(list_links, flow_id)

    links = asyncio.run(go())
    if not links:
        click.echo("no board links yet; `smsflows board create FLOW` makes one")
    for link in links:
        state = (
            "live" if link.active else f"revoked by {link.revoked_by} at {link.revoked_at:%Y-%m-%d %H:%M} UTC"
        )
        made = f"made by {link.created_by} at {link.created_at:%Y-%m-%d %H:%M} UTC"
        click.echo(f"{link.id}  {link.flow}  {link.label or ''}  {made}, {state}")


@board.command("revoke")
@click.argument("link_id", metavar="ID", type=int)
@click.option("--by", default=None, metavar="NAME", help="Who revokes it, for the audit log.")
def board_revoke(link_id: int, by: str | None) -> None:
    """Revoke board link ID: the board stops answering to it at once."""
    from app.boards import revoke_link
    from app.db.migrate import open_database

    settings = cli_settings()

    async def go() -> BoardLinkOut:
        async with open_database(settings) as engine, engine.begin() as conn:
            return await conn.run_sync(revoke_link, link_id, cli_actor(by))

    link = asyncio.run(go())
    click.echo(f"board link {link.id} of flow {link.flow} revoked")
