"""``simulate``, ``balance`` and ``fake-mobitex``: talking to Mobitex, or pretending to be it."""

from __future__ import annotations

import asyncio
import sys

import click

from app.cli.root import cli_settings, main


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


@main.command()
def balance() -> None:
    """Show the Mobitex account balance (balance.php of SMSFLOWS_MOBITEX_URL).

    Uses SMSFLOWS_MOBITEX_USER and SMSFLOWS_MOBITEX_PASSWORD; the balance may be negative on a
    postpaid account.
    """
    from decimal import Decimal

    from app.mobitex.client import MobitexClient

    settings = cli_settings()
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
@click.option("--quiet", is_flag=True, help="Log no line per request (for load tests).")
def fake_mobitex(host: str, port: int, webhook: str | None, quiet: bool, **options: object) -> None:
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
    run_fake_gateway(config, host, port, access_log=not quiet)
