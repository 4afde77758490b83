"""The ``smsflows`` command group: settings and clean errors shared by every command."""

from __future__ import annotations

import click

from app import __version__
from app.errors import SmsflowsError
from app.settings import Settings, load_settings


def cli_settings() -> Settings:
    """Settings for a command; a bad value is one line naming the variable, not a traceback."""
    try:
        return load_settings()
    except SmsflowsError as exc:
        raise click.ClickException(str(exc)) from None


def cli_actor(by: str | None) -> str:
    """Who runs a command, for the audit log and the records: ``--by NAME`` or ``cli:<login>``."""
    import getpass

    if by:
        return by
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return "cli"


class CleanErrors(click.Group):
    """Domain errors become one readable line instead of a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except SmsflowsError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=CleanErrors)
@click.version_option(__version__, prog_name="smsflows")
def main() -> None:
    """Two-way SMS keyword campaigns on the Mobitex gateway.

    Settings come from SMSFLOWS_* environment variables or a .env file in the current folder
    (see docs/configuration.md).
    """
