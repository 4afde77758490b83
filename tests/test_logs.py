"""One logging set-up: the level and format hold once the service runs; outages are logged once."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.engine import create_engine
from app.outbox.actions import ActionDeliverer
from app.outbox.dispatcher import Dispatcher
from app.settings import Settings
from tests.conftest import _pg_dsn, free_port, make_settings


def _serve_and_collect(tmp_path: Path, **env: str) -> list[str]:
    """Run `smsflows serve`, post one MO from an address not allowed, stop it; its stderr lines."""
    port = free_port()
    full_env = {
        **os.environ,
        "SMSFLOWS_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'var' / 'x.db'}",
        "SMSFLOWS_MO_ALLOWED_IPS": "213.5.10.19",
        **env,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
        env=full_env,
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                refused = httpx.post(f"http://127.0.0.1:{port}/mobitex/mo", data={"x": "1"}, timeout=5)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "the service did not start"
                time.sleep(0.1)
        assert refused.status_code == 403
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    return err.splitlines()


def test_log_level_holds_once_the_service_runs(tmp_path: Path) -> None:
    lines = _serve_and_collect(tmp_path, SMSFLOWS_LOG_LEVEL="WARNING")
    assert any("WARNING smsflows.ingest: MO request refused: 127.0.0.1" in line for line in lines), lines
    assert not [line for line in lines if " INFO " in line or line.startswith("INFO")], lines


def test_json_log_format_covers_every_line_of_the_service(tmp_path: Path) -> None:
    lines = _serve_and_collect(tmp_path, SMSFLOWS_LOG_FORMAT="json", SMSFLOWS_LOG_LEVEL="INFO")
    entries = [json.loads(line) for line in lines]  # a line in another format fails here
    loggers = {e["logger"] for e in entries}
    assert {"smsflows", "smsflows.ingest", "uvicorn.error"} <= loggers
    refused = [e for e in entries if e["logger"] == "smsflows.ingest"]
    assert refused[0]["level"] == "WARNING"
    assert refused[0]["message"].startswith("MO request refused: 127.0.0.1")
    assert set(refused[0]) == {"time", "level", "logger", "message"}


def _dispatcher(engine: AsyncEngine, settings: Settings) -> Dispatcher:
    return Dispatcher(engine, settings, poll_interval=0.05)


async def _until(condition: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("make_loop", "logger", "failures"),
    [
        pytest.param(_dispatcher, "smsflows.outbox", 4, id="outbox-dispatcher"),
        pytest.param(ActionDeliverer, "smsflows.actions", 3, id="send-back-loop"),
    ],
)
async def test_database_outage_is_logged_once_and_its_end(
    pg_database: str,
    caplog: pytest.LogCaptureFixture,
    make_loop: Callable[[AsyncEngine, Settings], Dispatcher | ActionDeliverer],
    logger: str,
    failures: int,
) -> None:
    settings = make_settings(pg_database, action_secret="s" * 32)
    name = make_url(pg_database).database
    admin = await asyncpg.connect(_pg_dsn(pg_database).rsplit("/", 1)[0] + "/test")
    engine = create_engine(settings)
    loop = make_loop(engine, settings)
    caplog.set_level(logging.INFO, logger=logger)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
        await loop.start()
        # several rounds fail: the loop keeps trying
        await _until(lambda: loop.outage.failures >= failures, f"fewer than {failures} failed tries")
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await _until(lambda: not loop.outage.down, "the loop never saw the database back")
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()
        await loop.stop()
        await engine.dispose()
    records = [r for r in caplog.records if r.name == logger]
    errors = [r for r in records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert errors[0].exc_info is None  # one line, not a traceback per round
    assert "cannot reach the database" in errors[0].getMessage()
    back = [r.getMessage() for r in records if "the database is back" in r.getMessage()]
    assert len(back) == 1 and "failed tries" in back[0]
