"""``users``: who may sign in to the dashboard, with which role."""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click
from sqlalchemy.ext.asyncio import AsyncSession

from app.cli.root import cli_settings, main
from app.db.access_models import ROLES

T = TypeVar("T")


def _actor() -> str:
    """Who ran the command, for the audit log."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _in_session(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    from app.cli.service import _prepare_database
    from app.db.engine import create_engine, session_factory

    settings = cli_settings()
    asyncio.run(_prepare_database(settings))

    async def run() -> T:
        engine = create_engine(settings)
        try:
            async with session_factory(engine)() as session:
                result = await work(session)
                await session.commit()
                return result
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _read_password(from_stdin: bool) -> str:
    if from_stdin or not sys.stdin.isatty():
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise click.ClickException(
                "no password on standard input: pipe one line, e.g. `printf '%s\\n' …`"
            )
        return line
    password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return str(password)


@main.group()
def users() -> None:
    """Dashboard users and their roles.

    \b
    Roles: viewer (reads results and messages), operator (also runs the campaign: replay,
    repair, send, simulator, draws), admin (also manages users).

    \b
    The first admin of a new installation:
      smsflows users add anna --role admin
    """


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True, help="What the user may do.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (one line).")
@click.option("--exists-ok", is_flag=True, help="Do nothing, successfully, if the user exists already.")
def users_add(name: str, role: str, password_stdin: bool, exists_ok: bool) -> None:
    """Add user NAME with a role; the password is asked for (or read from standard input)."""
    from app.db import users as store

    async def work(session: AsyncSession) -> bool:
        if exists_ok and await store.get(session, name) is not None:
            return False
        password = _read_password(password_stdin)
        await store.add(session, name, role, password, actor=_actor())
        return True

    if _in_session(work):
        click.echo(f"user {name} added ({role})")
    else:
        click.echo(f"user {name} exists already")


@users.command("list")
def users_list() -> None:
    """List users: name, role, whether they may sign in, last sign-in (UTC)."""
    from app.db import users as store

    rows = _in_session(store.list_users)
    if not rows:
        click.echo("no users yet: add one with `smsflows users add NAME --role admin`")
        return
    width = max(len(u.name) for u in rows)
    for u in rows:
        last = u.last_login_at.strftime("%Y-%m-%d %H:%M") if u.last_login_at else "never"
        state = "active" if u.active else "disabled"
        click.echo(f"{u.name:<{width}}  {u.role:<8}  {state:<8}  last sign-in {last}")


@users.command("disable")
@click.argument("name")
@click.option("--enable", is_flag=True, help="Let the user sign in again instead.")
def users_disable(name: str, enable: bool) -> None:
    """Stop NAME signing in; their open sessions end at once."""
    from app.db import users as store

    async def work(session: AsyncSession) -> None:
        await store.set_active(session, name, enable, actor=_actor())

    _in_session(work)
    click.echo(f"user {name} {'enabled' if enable else 'disabled'}")


@users.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the new password from standard input (one line).")
def users_passwd(name: str, password_stdin: bool) -> None:
    """Set a new password for NAME; their open sessions end at once."""
    from app.db import users as store

    async def work(session: AsyncSession) -> None:
        await store.require(session, name)
        await store.set_password(session, name, _read_password(password_stdin), actor=_actor())

    _in_session(work)
    click.echo(f"password of {name} changed")
