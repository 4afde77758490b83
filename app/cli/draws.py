"""``smsflows draw``: draw winners anyone can check, verify a record, list rounds, tell winners."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from app.cli.root import cli_actor, cli_settings, main

T = TypeVar("T")

if TYPE_CHECKING:
    from rich.console import Console

    from app.draws import DrawRecord, RoundSummary, StoredPick, Verification


def _time(name: str, value: str | None) -> datetime | None:
    """ISO 8601; without an offset it is Warsaw time, as in flow files."""
    from app.flows.kinds.base import WARSAW

    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a time; e.g. 2026-12-01T20:00", param_hint=name) from None
    return at if at.tzinfo else at.replace(tzinfo=WARSAW)


def _convert(kind: type[T], values: dict[str, Any]) -> T:
    """The command's options as the Struct the API takes; a bad value is a clean error."""
    import msgspec

    try:
        return msgspec.convert(values, kind)
    except msgspec.ValidationError as exc:
        raise click.UsageError(str(exc).replace("$.", "--").replace("_", "-")) from None


@main.group()
def draw() -> None:
    """Winner draws that anyone can repeat from their record (see docs/draws.md)."""


@draw.command("run")
@click.argument("flow_id", metavar="FLOW")
@click.option("--winners", type=click.IntRange(1, 10_000), required=True, help="How many win.")
@click.option(
    "--reserves", type=click.IntRange(0, 10_000), default=0, show_default=True, help="Reserves after them."
)
@click.option("--seed", default=None, help="A seed nobody knew beforehand, e.g. a public lottery result.")
@click.option(
    "--exclude",
    "exclude_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Numbers that cannot win (staff), one per line.",
)
@click.option(
    "--per",
    type=click.Choice(["phone", "entry"]),
    default="phone",
    show_default=True,
    help="One chance per phone, or one per entry (each vote, code, ...).",
)
@click.option("--since", default=None, metavar="TIME", help="Only entries sent at or after TIME.")
@click.option("--until", default=None, metavar="TIME", help="Only entries sent before TIME.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the record (JSON, phones masked) to this file.",
)
@click.option("--new-round", is_flag=True, help="Draw a further round of a flow already drawn.")
@click.option("--reason", default=None, help="Why a further round is drawn (required with --new-round).")
@click.option("--by", default=None, metavar="NAME", help="Who runs the draw [default: your user name].")
def draw_run(
    flow_id: str,
    winners: int,
    reserves: int,
    seed: str | None,
    exclude_file: Path | None,
    per: str,
    since: str | None,
    until: str | None,
    output: Path | None,
    new_round: bool,
    reason: str | None,
    by: str | None,
) -> None:
    """Draw the winners of FLOW from its accepted entries and store the round.

    Entries are the flow's accepted votes, code redemptions, completed surveys or list members,
    sent between --since and --until (Warsaw time unless TIME has an offset); phones that sent
    STOP and the numbers in --exclude never win. Without --seed a seed is generated and its
    SHA-256 stored before anyone is picked. A flow is drawn once: a further round needs
    --new-round and --reason, and every round stays in `smsflows draw list`.

    \b
    Example: three winners and two reserves, staff excluded, seed from a public lottery
      smsflows draw run final --winners 3 --reserves 2 --exclude staff.txt \\
        --seed "Lotto 2026-12-01: 4 9 17 23 35 41" --until 2026-12-01T22:00 --output final-draw.json
    """
    from rich.console import Console

    from app.db.migrate import open_database
    from app.draws import DrawRequest, read_exclude_file, run_draw
    from app.flows.loader import find_flow

    settings = cli_settings()
    flow = find_flow(Path(settings.flows_dir), flow_id)
    exclude = read_exclude_file(exclude_file.read_text(encoding="utf-8").splitlines()) if exclude_file else []
    request = _convert(
        DrawRequest,
        {
            "winners": winners,
            "reserves": reserves,
            "seed": seed,
            "per": per,
            "since": _time("--since", since),
            "until": _time("--until", until),
            "exclude": exclude,
            "new_round": new_round,
            "reason": reason,
        },
    )

    async def go() -> DrawRecord:
        async with open_database(settings) as engine:
            return await run_draw(engine, flow, request, cli_actor(by), settings.pseudonym_key)

    record = asyncio.run(go())
    if output is not None:
        _write(output, record)
    _print_record(record, Console())


def _write(output: Path, record: DrawRecord) -> None:
    from app.draws import encode

    try:
        output.write_bytes(encode(record))
    except OSError as exc:
        raise click.ClickException(f"cannot write {output}: {exc.strerror}") from None
    click.echo(f"record written to {output}; check it with `smsflows draw verify {output}`", err=True)


def _print_record(record: DrawRecord, console: Console) -> None:
    from rich.table import Table

    console.print(f"[bold]{record.flow_name}[/] — round {record.round} of flow {record.flow}")
    console.print(
        f"{record.entries_count} entries ({record.rule.entries}, one per {record.rule.per}), "
        f"SHA-256 {record.entries_sha256}"
    )
    console.print(f"seed ({record.seed_source}): {record.seed}")
    console.print(
        f"seed SHA-256 (committed {record.committed_at:%Y-%m-%d %H:%M:%S} UTC): {record.seed_sha256}"
    )
    table = Table(title=f"drawn by {record.drawn_by} at {record.drawn_at:%Y-%m-%d %H:%M:%S} UTC")
    for column in ("#", "role", "entry", "phone"):
        table.add_column(column)
    for role, chosen in (("winner", record.winners), ("reserve", record.reserves)):
        for p in chosen:
            table.add_row(str(p.position), role, p.id, p.phone)
    console.print(table)


@draw.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def draw_verify(file: Path) -> None:
    """Repeat the draw in record FILE from the file alone; exit 1 unless it comes out the same.

    Checks the entry list's count and SHA-256, that the seed matches the commitment stored
    before the draw, and that the algorithm picks the same winners and reserves. Needs no
    database: anyone with the record can run it.
    """
    from rich.console import Console

    from app.draws import decode, verify

    result = verify(decode(file.read_bytes(), str(file)))
    _print_verification(result, Console())
    if not result.ok:
        sys.exit(1)


def _print_verification(result: Verification, console: Console) -> None:
    for line in result.checks:
        console.print(f"  checked: {line}")
    for line in result.problems:
        console.print(f"[red]  WRONG: {line}[/]")
    console.print("[green]the record verifies[/]" if result.ok else "[red]the record does not verify[/]")


@draw.command("list")
@click.argument("flow_id", metavar="FLOW")
@click.option("--json", "as_json", is_flag=True, help="Print the rounds as JSON.")
def draw_list(flow_id: str, as_json: bool) -> None:
    """Every round of FLOW's draws, with who drew it, when, and why a further round was drawn."""
    import msgspec
    from rich.console import Console

    from app.db.migrate import open_database
    from app.draws import list_rounds

    settings = cli_settings()

    async def go() -> list[RoundSummary]:
        async with open_database(settings) as engine, engine.connect() as conn:
            return await conn.run_sync(list_rounds, flow_id)

    found = asyncio.run(go())
    if as_json:
        click.echo(msgspec.json.format(msgspec.json.encode(found)).decode())
        return
    if not found:
        click.echo(f"flow {flow_id!r} has no draws yet; `smsflows draw run {flow_id} --winners N` draws one")
        return
    _print_rounds(found, Console())


def _print_rounds(found: list[RoundSummary], console: Console) -> None:
    from rich.table import Table

    table = Table(title=f"draws of flow {found[0].flow}")
    for column in ("round", "status", "by", "committed (UTC)", "entries", "winners", "reserves", "reason"):
        table.add_column(column)
    for r in found:
        table.add_row(
            str(r.round),
            r.status,
            r.drawn_by,
            f"{r.committed_at:%Y-%m-%d %H:%M:%S}",
            "" if r.entries_count is None else str(r.entries_count),
            str(r.winners),
            str(r.reserves),
            r.reason or "",
        )
    console.print(table)


@draw.command("show")
@click.argument("flow_id", metavar="FLOW")
@click.option("--round", "round_", type=int, default=None, help="The round [default: the latest drawn].")
@click.option(
    "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write its record to this file."
)
def draw_show(flow_id: str, round_: int | None, output: Path | None) -> None:
    """A stored round: its record (to --output) and its winners and reserves, numbers whole."""
    from rich.console import Console

    from app.db.migrate import open_database
    from app.draws import picks, stored_record

    settings = cli_settings()

    async def go() -> tuple[DrawRecord, list[StoredPick]]:
        async with open_database(settings) as engine, engine.connect() as conn:
            record = await conn.run_sync(stored_record, flow_id, round_)
            _, _, chosen = await conn.run_sync(picks, flow_id, record.round)
            return record, chosen

    record, chosen = asyncio.run(go())
    if output is not None:
        _write(output, record)
    console = Console()
    _print_record(record, console)
    for p in chosen:
        told = f"told in message {p.outbox_id}" if p.outbox_id else "not told yet"
        console.print(f"  {p.position}. {p.role} {p.entry_id}: {p.phone} ({told})")


@draw.command("notify")
@click.argument("flow_id", metavar="FLOW")
@click.option("--text", required=True, help="The message to each winner, e.g. asking them to answer TAK.")
@click.option("--round", "round_", type=int, default=None, help="The round [default: the latest drawn].")
@click.option("--reply-flow", default=None, metavar="ID", help="The `reply` flow that takes their answers.")
@click.option("--tag", default=None, help="Tag their answers go by (default: the reply flow's).")
@click.option("--reserves", is_flag=True, help="Tell the reserves too.")
@click.option("--by", default=None, metavar="NAME", help="Who tells them, for the audit log.")
def draw_notify(
    flow_id: str,
    text: str,
    round_: int | None,
    reply_flow: str | None,
    tag: str | None,
    reserves: bool,
    by: str | None,
) -> None:
    """Tell the winners of FLOW's draw by SMS, through the outbox.

    Their answers are tied to the message as any answer is, and a `reply` flow (--reply-flow, or
    the one with --tag) classifies them. Running it again queues nothing new.

    \b
    Example:
      smsflows draw notify final --reply-flow prize \\
        --text "Wygrales nagrode w konkursie Final! Odpisz TAK, aby ja przyjac."
    """
    import msgspec

    from app.cli.sending import send_note
    from app.db.migrate import open_database
    from app.db.models import utcnow
    from app.draws import Notified, NotifyRequest, notify
    from app.flows.loader import load_dir

    settings = cli_settings()
    flows = load_dir(Path(settings.flows_dir))
    request = msgspec.convert(
        {"text": text, "flow": reply_flow, "tag": tag, "reserves": reserves}, NotifyRequest
    )

    async def go() -> list[Notified]:
        async with open_database(settings) as engine, engine.begin() as conn:
            return await conn.run_sync(
                lambda c: notify(c, flow_id, round_, request, flows, utcnow(), cli_actor(by))
            )

    done = asyncio.run(go())
    for n in done:
        state = n.skipped or (
            f"message {n.outbox_id} queued" if n.created else f"message {n.outbox_id} already queued"
        )
        click.echo(f"{n.position}. {n.role} {n.entry_id}: {state}")
    click.echo(send_note(settings))
