"""The SQLite WAL checkpointer: the writer's pages reach the database file from its own thread."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from sqlalchemy import text

from app.db.checkpoint import WRITER_AUTOCHECKPOINT, WalCheckpointer
from app.db.engine import create_checkpointer, create_sqlite_writer_engine
from tests.conftest import make_settings, running, send_mo


def _wal_database(path: Path) -> sqlite3.Connection:
    """A WAL database whose own connection never checkpoints: the rows stay in the WAL."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.execute("CREATE TABLE t (x TEXT)")
    db.executemany("INSERT INTO t VALUES (?)", [("x" * 500,)] * 200)
    return db


def test_checkpoint_copies_the_whole_wal_into_the_database_file(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    writer = _wal_database(path)
    checkpointer = WalCheckpointer(path, "FULL")
    db = checkpointer.connect()
    try:
        checkpointer.checkpoint(db)
    finally:
        db.close()
    assert checkpointer.last is not None
    busy, wal, copied = checkpointer.last
    assert busy == 0 and wal > 0 and copied == wal
    # The database file alone (no WAL beside it) now holds the rows.
    writer.close()
    assert not (tmp_path / "wal.db-wal").exists()
    alone = sqlite3.connect(path)
    assert alone.execute("SELECT count(*) FROM t").fetchone() == (200,)
    alone.close()


def test_checkpointer_thread_runs_after_a_commit_and_stops(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'svc.db'}")
    engine = create_sqlite_writer_engine(settings)
    checkpointer = create_checkpointer(settings, engine)
    assert checkpointer is not None
    checkpointer.start()
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x TEXT)"))
            conn.execute(text("INSERT INTO t VALUES ('a')"))
        deadline = time.monotonic() + 10
        while checkpointer.last is None or not 0 < checkpointer.last[1] == checkpointer.last[2]:
            assert time.monotonic() < deadline, f"no checkpoint copied the commit: {checkpointer.last}"
            time.sleep(0.01)
    finally:
        checkpointer.stop()
        engine.dispose()
    assert not any(t.name == "smsflows-checkpoint" for t in threading.enumerate())


def test_writer_connection_checkpoints_only_as_a_bound(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'svc.db'}")
    engine = create_sqlite_writer_engine(settings)
    try:
        with engine.connect() as conn:
            pages = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
    finally:
        engine.dispose()
    assert pages == WRITER_AUTOCHECKPOINT > 1000  # 1000: SQLite's default


async def test_service_stops_its_checkpointer_and_keeps_every_message(tmp_path: Path) -> None:
    path = tmp_path / "svc.db"
    settings = make_settings(f"sqlite+aiosqlite:///{path}")
    async with running(settings) as svc:
        sent = [await send_mo(svc) for _ in range(5)]
        assert any(t.name == "smsflows-checkpoint" for t in threading.enumerate())
    assert not any(t.name == "smsflows-checkpoint" for t in threading.enumerate())
    db = sqlite3.connect(path)
    stored = {r[0] for r in db.execute("SELECT sms_id FROM inbound_messages")}
    db.close()
    assert stored == {form["sms_id"] for form in sent}
