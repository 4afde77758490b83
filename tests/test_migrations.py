"""The models and the Alembic head agree: a model changed without a migration fails here, on
SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection

from app.db import flow_models  # noqa: F401  (registers the flow tables on the metadata)
from app.db.engine import create_engine
from app.db.migrate import upgrade
from app.db.models import Base
from tests.conftest import make_settings, new_pg_database


def _differences(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
    return list(compare_metadata(context, Base.metadata))


async def _drift(url: str) -> list[Any]:
    engine = create_engine(make_settings(url))
    try:
        await upgrade(engine)
        async with engine.connect() as conn:
            return await conn.run_sync(_differences)
    finally:
        await engine.dispose()


# SQLite cannot reflect an index on an expression, so both SQLAlchemy and Alembic say they skip
# it; the PostgreSQL test below compares those indexes too.
@pytest.mark.filterwarnings("ignore:.*expression-based index")
async def test_sqlite_schema_at_head_matches_the_models(tmp_path: Path) -> None:
    assert await _drift(f"sqlite+aiosqlite:///{tmp_path / 'drift.db'}") == []


@pytest.mark.postgres
def test_postgresql_schema_at_head_matches_the_models() -> None:
    with new_pg_database("drift") as url:  # a database of its own: migrated from nothing
        assert asyncio.run(_drift(url)) == []
