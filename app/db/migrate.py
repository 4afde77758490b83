"""Alembic, driven from code (no alembic.ini to keep in step with the settings), and the one place
that decides whether a database's schema is fit to use."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.engine import create_engine
from app.errors import DatabaseUnavailable, MigrationsPending
from app.settings import Settings

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema up to ``revision`` inside one connection of the async engine."""
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: command.upgrade(alembic_config(sync), revision))


async def is_current(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        current = await conn.run_sync(current_revision)
    return current == head_revision()


async def prepare_schema(engine: AsyncEngine, settings: Settings) -> None:
    """The one rule for every command and the service: SQLite migrates itself, PostgreSQL must
    already be current (``smsflows db upgrade`` migrates it on purpose)."""
    try:
        if settings.is_sqlite:
            await upgrade(engine)
        elif not await is_current(engine):
            raise MigrationsPending("the database schema is not up to date: run `smsflows db upgrade` first")
    except OSError as exc:
        raise unreachable(exc) from None


def unreachable(exc: OSError) -> DatabaseUnavailable:
    return DatabaseUnavailable(f"cannot reach the database ({exc}); check SMSFLOWS_DATABASE_URL")


@asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """The database at SMSFLOWS_DATABASE_URL for one command, its schema checked as above."""
    engine = create_engine(settings)
    try:
        await prepare_schema(engine, settings)
        yield engine
    finally:
        await engine.dispose()
