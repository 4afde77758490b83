"""Engine set-up: SQLite in WAL mode with a durable ``synchronous`` level, or PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from app.db.checkpoint import WRITER_AUTOCHECKPOINT, WalCheckpointer
from app.settings import Settings


def sqlite_path(database_url: str) -> Path | None:
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def _sqlite_setup(sync_engine: Engine, synchronous: str, begin: str = "BEGIN") -> None:
    @event.listens_for(sync_engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        # WAL lets the dashboard read while the writer commits; synchronous=FULL makes every
        # commit survive power loss, which is what "answer 200 only after commit" promises.
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()
        # Let SQLAlchemy, not the sqlite3 module, issue BEGIN: otherwise SAVEPOINTs (one per
        # message in the flow engine) do not work.
        dbapi_conn.isolation_level = None

    @event.listens_for(sync_engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)


def create_engine(settings: Settings, **kwargs: Any) -> AsyncEngine:
    """Create the engine; SQLite's folder is created so a fresh checkout just works."""
    if settings.is_sqlite:
        path = sqlite_path(settings.database_url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(settings.database_url, **kwargs)
        _sqlite_setup(engine.sync_engine, settings.sqlite_synchronous)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    # A prepared statement keeps the generic plan PostgreSQL made for it after five runs, and a
    # plan made while a table was small stays with it as the table grows: a campaign's tables
    # start empty and gain thousands of rows a second, so the writer's status update went on
    # reading all of inbound_messages (a hash join over a sequential scan) long after an index
    # lookup had become the cheaper way. Planning every execution for the rows it now has costs
    # less than one such scan of a few thousand rows.
    connect_args = kwargs.setdefault("connect_args", {})
    connect_args.setdefault("server_settings", {}).setdefault("plan_cache_mode", "force_custom_plan")
    return create_async_engine(settings.database_url, **kwargs)


def create_sqlite_writer_engine(settings: Settings) -> Engine:
    """A plain (synchronous) SQLite engine for the group-commit writer's own thread.

    Through aiosqlite every statement is a hop to another thread; the writer runs a whole
    batch (messages, flows, outbox) as one synchronous transaction in its thread instead.
    """
    url = make_url(settings.database_url).set(drivername="sqlite")
    # One writer thread owns the connection; check_same_thread guards a case that cannot occur.
    engine = sa_create_engine(url, connect_args={"check_same_thread": False}, pool_size=1, max_overflow=0)
    # IMMEDIATE takes the write lock at once (waiting up to busy_timeout for another writer),
    # so the batch never finds the database locked halfway through.
    _sqlite_setup(engine, settings.sqlite_synchronous, begin="BEGIN IMMEDIATE")

    @event.listens_for(engine, "connect")
    def _unchecked(dbapi_conn: Any, _record: Any) -> None:
        # SQLite evaluates a CHECK of the form `status IN (...)` by building a temporary b-tree
        # of the list for every row a statement writes: on the MO path (an inbound row, its
        # reply and its status each carry one) that was a tenth of a vote's CPU. This one
        # connection writes only values fixed by the code (statuses, encodings, outcomes);
        # every other connection, and PostgreSQL always, still checks them. `smsflows db check`
        # verifies it: PRAGMA integrity_check re-evaluates every CHECK over the stored rows.
        dbapi_conn.execute("PRAGMA ignore_check_constraints=ON")
        # The service checkpoints in a thread of its own (app/db/checkpoint.py); the writer's own
        # checkpoint, inside the commit of a batch, is the bound for a WAL the thread cannot reset.
        dbapi_conn.execute(f"PRAGMA wal_autocheckpoint={WRITER_AUTOCHECKPOINT}")

    return engine


def create_checkpointer(settings: Settings, writer_engine: Engine) -> WalCheckpointer | None:
    """The WAL checkpointer of the writer's database, woken by its commits (None in memory)."""
    path = sqlite_path(settings.database_url)
    if path is None:
        return None
    checkpointer = WalCheckpointer(path, settings.sqlite_synchronous)
    checkpointer.watch(writer_engine)
    return checkpointer


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
