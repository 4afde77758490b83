"""The smsflows command, run as a real process."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import PG_URL, _pg_dsn, free_port

SMSFLOWS = [sys.executable, "-m", "app.cli"]


def _run(
    args: list[str], env: dict[str, str], cwd: Path, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **env}
    return subprocess.run(
        [*SMSFLOWS, *args], env=full_env, cwd=cwd, capture_output=True, text=True, timeout=60, input=stdin
    )


def test_db_upgrade_creates_the_sqlite_schema(tmp_path: Path) -> None:
    db = tmp_path / "var" / "x.db"
    result = _run(["db", "upgrade"], {"SMSFLOWS_DATABASE_URL": f"sqlite+aiosqlite:///{db}"}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "revision" in result.stdout
    tables = {r[0] for r in sqlite3.connect(db).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"inbound_messages", "quarantine", "alembic_version"} <= tables
    journal = sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0]
    assert journal == "wal"


def test_bad_setting_is_one_clear_line_not_a_traceback(tmp_path: Path) -> None:
    result = _run(["db", "upgrade"], {"SMSFLOWS_PORT": "eighty"}, tmp_path)
    assert result.returncode != 0
    assert "SMSFLOWS_PORT" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.postgres
def test_serve_refuses_an_unmigrated_postgres_database_with_instructions(
    tmp_path: Path, pg_database: str
) -> None:
    import asyncio

    name = f"{Path(pg_database).name}_empty"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(_pg_dsn(PG_URL))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        url = pg_database.rsplit("/", 1)[0] + "/" + name
        result = _run(["serve", "--port", str(free_port())], {"SMSFLOWS_DATABASE_URL": url}, tmp_path)
        assert result.returncode != 0
        assert "smsflows db upgrade" in result.stderr
        assert "Traceback" not in result.stderr
        assert _run(["db", "upgrade"], {"SMSFLOWS_DATABASE_URL": url}, tmp_path).returncode == 0
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_serve_on_a_fresh_folder_creates_the_database_and_answers(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "SMSFLOWS_MO_ALLOWED_IPS": "127.0.0.1", "SMSFLOWS_FLOWS_DIR": "missing"}
    env.pop("SMSFLOWS_DATABASE_URL", None)
    with subprocess.Popen(  # leaving the block closes the pipe too
        [*SMSFLOWS, "serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    ready = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1)
                    break
                except httpx.TransportError:
                    assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                    assert time.monotonic() < deadline, "service did not start"
                    time.sleep(0.1)
            assert ready.status_code == 200
            assert (tmp_path / "var" / "smsflows.db").exists()
        finally:
            proc.terminate()
            proc.wait(10)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SMSFLOWS_API_TOKEN", "dev"),
        ("SMSFLOWS_ACTION_SECRET", "dev-secret"),
        ("SMSFLOWS_PSEUDONYM_KEY", "dev-pseudonyms"),
    ],
)
def test_serve_refuses_a_development_secret_on_a_public_address(
    tmp_path: Path, variable: str, value: str
) -> None:
    env = {"SMSFLOWS_API_TOKEN": "a-real-secret-of-32-characters-x", variable: value}
    result = _run(["serve", "--host", "0.0.0.0", "--port", str(free_port())], env, tmp_path)
    assert result.returncode == 1
    assert f"{variable} is the development value {value!r}" in result.stderr
    assert "0.0.0.0" in result.stderr and "127.0.0.1" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "var").exists()  # refused before anything was created


def test_a_development_token_is_fine_on_loopback() -> None:
    from app.settings import load_settings

    settings = load_settings({"SMSFLOWS_API_TOKEN": "dev", "SMSFLOWS_ACTION_SECRET": "dev-secret"}, None)
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        settings.refuse_dev_secrets(host)


def test_serve_refuses_a_dashboard_user_with_the_development_password_on_a_public_address(
    tmp_path: Path,
) -> None:
    env = {
        "SMSFLOWS_API_TOKEN": "a-real-secret-of-32-characters-x",
        "SMSFLOWS_SESSION_SECRET": "another-real-secret-of-32-chars-y",
    }
    added = subprocess.run(
        [*SMSFLOWS, "users", "add", "dev", "--role", "admin", "--password-stdin"],
        input="dev-password\n",
        env={**os.environ, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert added.returncode == 0, added.stderr
    result = _run(["serve", "--host", "0.0.0.0", "--port", str(free_port())], env, tmp_path)
    assert result.returncode == 1
    assert "the dashboard user(s) dev have the development password 'dev-password'" in result.stderr
    assert "smsflows users passwd dev" in result.stderr
