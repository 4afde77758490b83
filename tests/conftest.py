"""Fixtures: real SQLite and real PostgreSQL, and the real service over real HTTP."""

from __future__ import annotations

import asyncio
import gc
import os
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from litestar import Litestar
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.engine import create_engine
from app.db.migrate import upgrade
from app.main import create_app
from app.server import server_options
from app.settings import Settings, load_settings

PG_URL = os.environ.get("SMSFLOWS_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
API_TOKEN = "test-token"
NO_FLOWS = Path(__file__).parent / "no-flows-here"  # a folder that does not exist: no flows


def _pg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _pg_admin(sql: str) -> None:
    conn = await asyncpg.connect(_pg_dsn(PG_URL), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def new_pg_database(purpose: str) -> Iterator[str]:
    """An empty database on the real PostgreSQL (no schema at all), dropped afterwards."""
    name = f"smsflows_{purpose}_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"PostgreSQL not reachable at {PG_URL} ({exc}); start it or set SMSFLOWS_TEST_PG_URL")
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(autouse=True)
def _collectable_after_test() -> Iterator[None]:
    """Undo the service's ``gc.freeze()`` after each test: a frozen object is never collected, so a
    pooled connection a test or the service left behind would never be reported."""
    yield
    gc.unfreeze()


@pytest.fixture
def empty_pg_url() -> Iterator[str]:
    """A PostgreSQL database that was never migrated."""
    with new_pg_database("empty") as url:
        yield url


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A database of this test run's own on the real PostgreSQL, dropped at the end."""
    name = f"smsflows_test_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"PostgreSQL not reachable at {PG_URL} ({exc}); start it or set SMSFLOWS_TEST_PG_URL")
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    settings = load_settings({"SMSFLOWS_DATABASE_URL": url}, None)

    async def migrate() -> None:
        engine = create_engine(settings)
        await upgrade(engine)
        await engine.dispose()

    asyncio.run(migrate())
    yield url
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every test that takes this runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'smsflows.db'}"
    url: str = request.getfixturevalue("pg_database")

    asyncio.run(empty_database(url))
    return url


async def empty_database(url: str) -> None:
    """Empty every table of the run's PostgreSQL database (the schema stays migrated)."""
    engine = create_engine(load_settings({"SMSFLOWS_DATABASE_URL": url}, None))
    async with engine.begin() as conn:
        tables = (
            await conn.execute(
                text(
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                    "AND tablename <> 'alembic_version'"
                )
            )
        ).scalars()
        await conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY"))
    await engine.dispose()


def make_settings(database_url: str, **overrides: str) -> Settings:
    env = {
        "SMSFLOWS_DATABASE_URL": database_url,
        "SMSFLOWS_MO_ALLOWED_IPS": "127.0.0.1",
        "SMSFLOWS_API_TOKEN": API_TOKEN,
        "SMSFLOWS_LOG_LEVEL": "WARNING",
        "SMSFLOWS_FLOWS_DIR": str(NO_FLOWS),
        "SMSFLOWS_DISPATCHER": "false",  # replies stay queued; tests that deliver turn it on
    }
    env.update({f"SMSFLOWS_{k.upper()}": v for k, v in overrides.items()})
    return load_settings(env, None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Service:
    """The real app served by uvicorn on a loopback port."""

    settings: Settings
    base_url: str
    engine: AsyncEngine
    api: httpx.AsyncClient
    app: Litestar | None = None
    """The app in this process: its state holds what the service keeps in memory."""

    @property
    def mo_url(self) -> str:
        return self.base_url + self.settings.mo_path

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.engine.connect() as conn:
            return (await conn.execute(text(sql), params)).scalar()

    async def rows(self, sql: str, **params: Any) -> list[Any]:
        async with self.engine.connect() as conn:
            return list((await conn.execute(text(sql), params)).all())


async def start_service(
    settings: Settings, app: Litestar | None = None
) -> tuple[uvicorn.Server, asyncio.Task[None], str]:
    port = free_port()
    app = app or create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, **server_options(settings))
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the service stopped during start-up")
        await asyncio.sleep(0.01)
    return server, task, f"http://127.0.0.1:{port}"


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Service]:
    """The service on a loopback port for the duration of the block."""
    app = create_app(settings)
    server, task, base_url = await start_service(settings, app)
    engine = create_engine(settings)
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    try:
        async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as api:
            yield Service(settings, base_url, engine, api, app)
    finally:
        server.should_exit = True
        await task
        await engine.dispose()


@pytest.fixture
async def service(database_url: str) -> AsyncIterator[Service]:
    async with running(make_settings(database_url)) as svc:
        yield svc


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """A migrated database's engine, on SQLite and on PostgreSQL."""
    engine = create_engine(make_settings(database_url))
    await upgrade(engine)
    yield engine
    await engine.dispose()


def new_sms_id() -> str:
    return secrets.token_hex(16)


def mo_form(**fields: str) -> dict[str, str]:
    """A complete MO form as Mobitex sends it; keyword arguments replace fields."""
    form = {
        "number": "70120",
        "sender": "48600123456",
        "text": "GLOS A",
        "sms_id": new_sms_id(),
        "smcsc": "48602951111",
        "time": "1764540000",
        "ext_id": "",
    }
    form.update(fields)
    return form


def write_flows(directory: Path, **files: str) -> Path:
    """Write flow files (name → TOML text) into a folder and return it."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, body in files.items():
        (directory / f"{name}.toml").write_text(body, encoding="utf-8")
    return directory


async def send_mo(service: Service, **fields: str) -> dict[str, str]:
    """POST one MO as Mobitex would; returns the form that was sent."""
    form = mo_form(**fields)
    async with httpx.AsyncClient() as client:
        resp = await client.post(service.mo_url, data=form)
    assert resp.status_code == 200, resp.text
    return form
