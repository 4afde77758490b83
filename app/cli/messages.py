"""``send`` and ``broadcast``: messages from the command line, one or to a subscription list."""

from __future__ import annotations

import asyncio

import click

from app.cli.root import cli_settings, main

# One option object for both commands, so `send` and `broadcast` never drift apart on it.
on_timeout_option = click.option(
    "--on-timeout",
    type=click.Choice(["retry", "hold"]),
    default=None,
    help="When Mobitex does not answer in time: send again, or hold it as `unknown` for an operator "
    "(default SMSFLOWS_SEND_ON_TIMEOUT).",
)


@main.command()
@click.option("--to", required=True, help="The phone, e.g. 48600123456 or +48 600 123 456.")
@click.option("--idempotency-key", default=None, help="Running it again with this key queues nothing new.")
@click.option("--text", required=True, help="The message text (at most 3 SMS parts).")
@click.option("--tag", default=None, help="Answers go to the `reply` flow with this tag.")
@click.option("--data", default=None, metavar="JSON", help="A JSON object kept with the message.")
@click.option("--expires-at", default=None, metavar="TIME", help="Answers after TIME get `expired`.")
@on_timeout_option
def send(
    to: str,
    text: str,
    tag: str | None,
    data: str | None,
    expires_at: str | None,
    idempotency_key: str | None,
    on_timeout: str | None,
) -> None:
    """Queue one message, as POST /api/messages does; the outbox sends it.

    TIME is ISO 8601 (2026-12-01T20:00); without an offset it is Warsaw time, as in flow files.

    \b
    Example: a visit to confirm, answered by the `reply` flow with tag "visit"
      smsflows send --to 48600123456 --text "Wizyta jutro 10:00. Odpisz TAK lub NIE." \\
        --tag visit --data '{"visit": 1234}'
    """
    from app.cli.sending import new_message, run_send, send_note

    settings = cli_settings()
    message = new_message(
        to, text, tag=tag, data=data, expires_at=expires_at, key=idempotency_key, on_timeout=on_timeout
    )
    queued = asyncio.run(run_send(settings, message))
    state = "queued" if queued.created else "already queued with this key"
    click.echo(f"message {queued.id} {state} (ext_id {queued.ext_id}); {send_note(settings)}")
    click.echo(f"see it and its answers: GET /api/messages/{queued.id}")


@main.command()
@click.argument("list_id", metavar="LIST")
@click.option(
    "--idempotency-key",
    default=None,
    help="Each recipient's message gets KEY:phone; running it again sends only to those missed.",
)
@click.option("--dry-run", is_flag=True, help="Show how many messages and SMS parts it takes; queue nothing.")
@click.option("--text", required=True, help="The message text (at most 3 SMS parts).")
@click.option("--tag", default=None, help="Answers go to the `reply` flow with this tag.")
@click.option("--data", default=None, metavar="JSON", help="A JSON object kept with the message.")
@click.option("--expires-at", default=None, metavar="TIME", help="Answers after TIME get `expired`.")
@on_timeout_option
def broadcast(
    list_id: str,
    text: str,
    tag: str | None,
    data: str | None,
    expires_at: str | None,
    idempotency_key: str | None,
    dry_run: bool,
    on_timeout: str | None,
) -> None:
    """Queue one message to every active member of subscription list LIST.

    Phones that sent STOP are skipped. Try it with --dry-run first: it shows the number of
    recipients and what it costs in SMS parts.

    \b
    Example:
      smsflows broadcast nowosci --text "Nowy odcinek w piątek o 20:00!" --dry-run
    """
    from app.cli.progress import recipients_progress
    from app.cli.sending import new_message, send_note
    from app.flows.broadcast import run_broadcast

    settings = cli_settings()
    message = new_message(
        "", text, tag=tag, data=data, expires_at=expires_at, key=idempotency_key, on_timeout=on_timeout
    )
    with recipients_progress(f"broadcast to {list_id}") as show:
        report = asyncio.run(run_broadcast(settings, list_id, message, dry_run=dry_run, on_progress=show))
    click.echo(("Dry run: " if dry_run else "") + report.preview())
    if dry_run:
        click.echo("nothing was queued")
        return
    for reason in report.skipped[:20]:
        click.echo(f"  skipped {reason}", err=True)
    click.echo(f"{report.summary()}; {send_note(settings)}")
