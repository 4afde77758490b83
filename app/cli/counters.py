"""``counters check``: the running service's live dashboard counters against a full recount."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.table import Table

from app.cli.root import cli_settings, main
from app.settings import Settings

if TYPE_CHECKING:
    import httpx

    from app.dashboard.counter_check import CountersCheck


@main.group()
def counters() -> None:
    """The counts the dashboard keeps in the running service."""


def _default_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    return f"http://{f'[{host}]' if ':' in host else host}:{settings.port}"


@counters.command("check")
@click.option(
    "--url",
    default=None,
    help="The running service [default: http://SMSFLOWS_HOST:SMSFLOWS_PORT, 127.0.0.1:8000].",
)
@click.option("--timeout", type=click.FloatRange(min=0.1), default=60.0, show_default=True, help="Seconds.")
def check(url: str | None, timeout: float) -> None:
    """Compare the service's live counters with a full recount from the database, now.

    The dashboard counts vote tallies, event logs, today's totals and the charts' minutes once,
    then adds only new rows. This asks the running service (with SMSFLOWS_API_TOKEN) to count
    each again from the tables, up to the last id it has seen, and prints both. Exits 1 when
    any counter disagrees.

    \b
    Example:
      smsflows counters check --url http://127.0.0.1:8000
    """
    import httpx
    import msgspec

    from app.dashboard.counter_check import CountersCheck

    settings = cli_settings()
    base = (url or _default_url(settings)).rstrip("/")
    if not settings.api_token:
        raise click.ClickException(
            "no API token: set SMSFLOWS_API_TOKEN (in the environment or .env) to the service's token"
        )
    try:
        resp = httpx.get(
            f"{base}/api/counters/check",
            headers={"Authorization": f"Bearer {settings.api_token}"},
            timeout=timeout,
        )
    except httpx.HTTPError as exc:
        raise click.ClickException(
            f"no service answered at {base} ({exc.__class__.__name__}): start it with `smsflows serve`, "
            "or pass --url"
        ) from None
    if resp.status_code == 401:
        raise click.ClickException(
            f"the service at {base} refused the token: SMSFLOWS_API_TOKEN must be the one the service has"
        )
    if resp.status_code != 200:
        raise click.ClickException(f"the service at {base} answered {resp.status_code}: {_detail(resp)}")
    try:
        report = msgspec.json.decode(resp.content, type=CountersCheck)
    except msgspec.ValidationError as exc:
        raise click.ClickException(f"{base} did not answer as smsflows does: {exc}") from None
    _print(report, Console(), Console(stderr=True))
    if not report.agree:
        sys.exit(1)


def _detail(resp: httpx.Response) -> str:
    try:
        return str(resp.json().get("detail", resp.text))
    except ValueError:
        return resp.text[:200]


def _print(report: CountersCheck, out: Console, err: Console) -> None:
    if not report.counters:
        out.print("The service holds no counters yet: they start with the first dashboard page it shows.")
        return
    table = Table(title="Live counters against a full recount", title_justify="left")
    for column, justify in (("counter", "left"), ("up to id", "right"), ("live", "right"),
                            ("recounted", "right"), ("agree", "left")):  # fmt: skip
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for c in report.counters:
        agree = "[green]yes[/]" if c.agree else "[red]NO[/]"
        table.add_row(c.counter, str(c.through_id), str(c.live_total), str(c.recounted_total), agree)
    out.print(table)
    wrong = [c for c in report.counters if not c.agree]
    if not wrong:
        out.print(f"All {len(report.counters)} counters agree with the tables.")
        return
    for c in wrong:
        for key, live, full in c.differences():
            err.print(f"{c.counter}: {key}: live {live}, recounted {full}", markup=False)
    err.print(
        f"{len(wrong)} of {len(report.counters)} counters disagree with the tables. Run the check "
        "again in a minute: a row committed late on PostgreSQL, or a replaced vote, is counted by "
        "then. A difference that stays is shown until the next whole recount (every 10 minutes); "
        "restarting the service counts everything again.",
        markup=False,
    )
