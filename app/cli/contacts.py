"""``contacts``: one phone's part in a flow ("did my vote count?"), and erasing a phone's data."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import click

from app.cli.root import cli_actor, cli_settings, main

if TYPE_CHECKING:
    from app.reads.participation import Participation


@main.group()
def contacts() -> None:
    """The phones smsflows heard from."""


@contacts.command("show")
@click.argument("number")
@click.option("--flow", "flow_id", required=True, metavar="ID", help="The flow asked about.")
@click.option("--json", "as_json", is_flag=True, help="Print it as JSON.")
def contacts_show(number: str, flow_id: str, as_json: bool) -> None:
    """Every message NUMBER sent to flow ID, the flow's decision on each and why.

    Answers a participant who asks whether their vote (code, answer) counted: each message with
    its time (Warsaw), text, the decision in words and the reply that was sent.

    \b
    Example:
      smsflows contacts show 48600123456 --flow final
    """
    import msgspec

    from app.db.migrate import open_database
    from app.flows.kinds.base import WARSAW
    from app.flows.loader import find_flow
    from app.mobitex.mo_form import normalise_number
    from app.reads.participation import participation

    settings = cli_settings()
    flow = find_flow(Path(settings.flows_dir), flow_id)
    phone = normalise_number(number)

    async def go() -> Participation:
        async with open_database(settings) as engine, engine.connect() as conn:
            return await conn.run_sync(participation, flow, phone)

    found = asyncio.run(go())
    if as_json:
        click.echo(msgspec.json.format(msgspec.json.encode(found)).decode())
        return
    click.echo(f"{phone} in {found.kind} flow {found.flow}: {found.counted} entry(ies) counted now")
    if not found.messages:
        click.echo("  no messages from this number reached the flow")
    for m in found.messages:
        click.echo(
            f"  {m.sent_at.astimezone(WARSAW):%Y-%m-%d %H:%M:%S} message {m.id} {m.text!r} ({m.status})"
        )
        for d in m.decisions:
            click.echo(f"      {d.outcome}: {d.meaning} (version {d.flow_hash})")
            if d.reply:
                click.echo(f"      reply: {d.reply!r}")
        if m.error:
            click.echo(f"      error: {m.error}")


@contacts.command("forget")
@click.argument("number")
@click.option(
    "--by", default=None, metavar="NAME", help="Who asked for it, for the record [default: your user name]."
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def contacts_forget(number: str, by: str | None, yes: bool) -> None:
    """Erase NUMBER's personal data everywhere, keeping every count exact.

    The number becomes its pseudonym (a keyed hash, SMSFLOWS_PSEUDONYM_KEY) in every table: its
    votes, codes, list memberships, answers, decisions and draw picks stay and still count. Its
    message texts, the raw requests and the texts sent to it are emptied; quarantined requests
    that mention it are discarded. The erasure goes in the audit log, by pseudonym. It cannot be
    undone.

    \b
    Example:
      smsflows contacts forget 48600123456 --by "wniosek RODO 2026/12/01"
    """
    from app.db.migrate import open_database
    from app.mobitex.mo_form import normalise_number
    from app.privacy.forget import Forgotten, forget

    settings = cli_settings()
    phone = normalise_number(number)
    if not yes:
        click.confirm(f"Erase the data of {phone} for good?", abort=True)

    async def go() -> Forgotten:
        async with open_database(settings) as engine, engine.begin() as conn:
            return await conn.run_sync(lambda c: forget(c, phone, settings.pseudonym_key, cli_actor(by)))

    done = asyncio.run(go())
    if not done.rows:
        click.echo(f"nothing stored for {phone}; the request is recorded as {done.pseudonym}")
        return
    changed = ", ".join(f"{table} {n}" for table, n in done.rows.items())
    click.echo(f"{phone} erased; it is {done.pseudonym} from now on. Rows changed: {changed}")
