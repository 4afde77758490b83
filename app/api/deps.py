"""What handlers get from the application, by name, through Litestar's dependency injection:
the request's database session (``db_session``), the engine (``db_engine``), the settings, the
running flows (``live_flows``), the group-commit writer (``writer``) and the outbox dispatcher
(``dispatcher``, None when this process does not send); and a way to run the shared read
queries (``app.reads``) in a session.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Concatenate, ParamSpec, TypeVar

from litestar.datastructures import State
from litestar.di import Provide
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.flows.live import LiveFlows
from app.ingest.writer import GroupWriter
from app.outbox.dispatcher import Dispatcher
from app.settings import Settings

P = ParamSpec("P")
T = TypeVar("T")


async def _db_session(state: State) -> AsyncGenerator[AsyncSession, None]:
    sessions: async_sessionmaker[AsyncSession] = state.sessions
    async with sessions() as session:
        yield session


def _settings(state: State) -> Settings:
    settings: Settings = state.settings
    return settings


def _engine(state: State) -> AsyncEngine:
    engine: AsyncEngine = state.engine
    return engine


def _live_flows(state: State) -> LiveFlows:
    flows: LiveFlows = state.flows
    return flows


def _writer(state: State) -> GroupWriter:
    writer: GroupWriter = state.writer
    return writer


def _dispatcher(state: State) -> Dispatcher | None:
    dispatcher: Dispatcher | None = state.dispatcher
    return dispatcher


DEPENDENCIES = {
    "db_session": Provide(_db_session),
    "db_engine": Provide(_engine, sync_to_thread=False),
    "settings": Provide(_settings, sync_to_thread=False),
    "live_flows": Provide(_live_flows, sync_to_thread=False),
    "writer": Provide(_writer, sync_to_thread=False),
    "dispatcher": Provide(_dispatcher, sync_to_thread=False),
}


def read(
    session: AsyncSession, query: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
) -> Awaitable[T]:
    """Run ``query(connection, ...)`` in the request's session (and its transaction, if one is open)."""
    return session.run_sync(lambda sync: query(sync.connection(), *args, **kwargs))
