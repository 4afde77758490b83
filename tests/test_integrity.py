"""The writer's SQLite connection skips CHECK constraints; ``PRAGMA integrity_check`` (and
``smsflows db check``) proves the rows it writes keep them anyway."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from app.db.engine import create_engine, create_sqlite_writer_engine
from app.db.integrity import check_integrity
from app.db.migrate import upgrade
from app.settings import Settings
from tests.conftest import Service, make_settings, mo_form, running, send_mo
from tests.test_cli import _run

FLOWS = Path(__file__).resolve().parent.parent / "flows"
PHONE = "48600123456"
# Renders for the sample phone `flows check` uses, divides by zero for any other.
BROKEN = """
id = "usterka"
kind = "autoreply"
numbers = ["70120"]
keywords = ["USTERKA"]

[replies]
reply = "{{ 1 // ((sender == '48600123456') | int) }}"
"""
BAD_STATUS = (
    "INSERT INTO quarantine (raw_body, client_ip, reason, received_at, status) "
    "VALUES (x'00', '127.0.0.1', 'test', '2026-12-01 10:00:00', 'lost')"
)


def _sqlite_settings(tmp_path: Path, **overrides: str) -> Settings:
    return make_settings(f"sqlite+aiosqlite:///{tmp_path / 'smsflows.db'}", **overrides)


async def _say(svc: Service, text: str, sender: str = PHONE, **fields: str) -> dict[str, str]:
    return await send_mo(svc, sender=sender, text=text, time=str(int(time.time())), **fields)


async def _every_kind_of_message(svc: Service) -> None:
    """One message down every path the writer's transaction takes."""
    other = "48600111222"
    for words in (
        ["INFO"],  # autoreply
        ["GLOS A", "GLOS B"],  # vote accepted, then a repeat refused
        ["KOD U7JA-DG69", "KOD U7JA-DG60"],  # a code redeemed, an invalid one
        ["NOWOSCI", "POTWIERDZAM", "WYPISZ", "NOWOSCI", "POTWIERDZAM"],  # join, leave, join
        ["ANKIETA", "8", "tak", "Więcej muzyki", "ANKIETA", "jedenaście"],  # a survey, a retry
        ["STOP", "START"],  # leaves every list (and the open survey), comes back
        ["hello", "hello again"],  # fallback, then suppressed within its interval
    ):
        for words_one in words:
            await _say(svc, words_one)
    for words_other in ("GLOS Z", "KOD U7JA-DG69"):  # an invalid option, a code already used
        await _say(svc, words_other, sender=other)

    sent = await svc.api.post("/api/messages", json={"to": PHONE, "text": "Wizyta jutro?", "tag": "visit"})
    assert sent.status_code == 201, sent.text
    for answer in ("TAK", "NIE"):  # the answer recorded, then "already answered"
        await _say(svc, answer, ext_id=sent.json()["ext_id"])

    await _say(svc, "USTERKA", sender="48600999000")  # the flow fails on it
    twice = mo_form(text="INFO", sender=other, time=str(int(time.time())))
    async with httpx.AsyncClient() as client:
        for _ in range(2):  # a duplicate sms_id: one row, two deliveries
            assert (await client.post(svc.mo_url, data=twice)).status_code == 200
        malformed = b"number=70120&sender=abc&text=GLOS%20C&sms_id=short&time=1764540000"
        resp = await client.post(
            svc.mo_url, content=malformed, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert "quarantined" in resp.text
    qid = await svc.scalar("SELECT id FROM quarantine")
    repair = {"fields": {"sender": "48600333444", "sms_id": "e" * 32}}
    assert (await svc.api.post(f"/api/quarantine/{qid}/reingest", json=repair)).status_code == 200


async def test_every_path_of_the_writer_leaves_rows_that_keep_the_check_constraints(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    shutil.copytree(FLOWS, flows)
    (flows / "usterka.toml").write_text(BROKEN, encoding="utf-8")
    async with running(_sqlite_settings(tmp_path, flows_dir=str(flows))) as svc:
        await _every_kind_of_message(svc)
        statuses = {r[0] for r in await svc.rows("SELECT DISTINCT status FROM inbound_messages")}
        flows_seen = {r[0] for r in await svc.rows("SELECT DISTINCT flow_id FROM flow_events")}
        outcomes = {r[0] for r in await svc.rows("SELECT DISTINCT outcome FROM flow_events")}
        deliveries = await svc.scalar("SELECT max(deliveries) FROM inbound_messages")
        quarantined = await svc.scalar("SELECT status FROM quarantine")
        report = await check_integrity(svc.engine)
        async with svc.engine.connect() as conn:
            pragma = (await conn.exec_driver_sql("PRAGMA integrity_check")).all()
    # The run went down the paths it meant to, so "ok" below speaks of all of them.
    assert {"processed", "failed"} <= statuses
    assert {"final", "lato", "nowosci", "ankieta", "stop", "wizyty", "info", "inne"} <= flows_seen
    assert {"accepted", "repeat", "invalid", "used"} <= outcomes
    assert (deliveries, quarantined) == (2, "reingested")
    assert pragma == [("ok",)]
    assert report.checked and report.ok and report.problems == []


def _corrupt(settings: Settings) -> None:
    """Write a quarantine row whose status is not one the schema allows, the way only the
    writer's connection could: it ignores CHECK constraints."""
    writer = create_sqlite_writer_engine(settings)
    try:
        with writer.begin() as conn:
            conn.execute(text(BAD_STATUS))
            # On this connection integrity_check skips CHECK constraints too, and sees nothing.
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalars().all() == ["ok"]
    finally:
        writer.dispose()


async def _migrated(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


async def test_integrity_check_names_a_row_the_writer_connection_let_through(tmp_path: Path) -> None:
    settings = _sqlite_settings(tmp_path)
    await _migrated(settings)
    engine = create_engine(settings)
    try:
        with pytest.raises(IntegrityError, match="CHECK constraint failed"):
            async with engine.begin() as conn:
                await conn.execute(text(BAD_STATUS))  # every other connection refuses it
        await asyncio.to_thread(_corrupt, settings)
        assert await _scalar(engine, "SELECT status FROM quarantine") == "lost"
        report = await check_integrity(engine)
    finally:
        await engine.dispose()
    assert report.checked and not report.ok
    assert report.problems == ["CHECK constraint failed in quarantine"]


async def _scalar(engine: Any, sql: str) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(text(sql))).scalar()


def test_db_check_says_ok_on_a_sound_database(tmp_path: Path) -> None:
    env = {"SMSFLOWS_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'smsflows.db'}"}
    assert _run(["db", "upgrade"], env, tmp_path).returncode == 0
    result = _run(["db", "check"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")
    # Before it starts, what it is about to read: on a large file that takes minutes.
    assert result.stderr.startswith("checking ") and "reads the whole file" in result.stderr


def test_db_check_quick_says_ok_on_a_sound_database(tmp_path: Path) -> None:
    env = {"SMSFLOWS_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'smsflows.db'}"}
    assert _run(["db", "upgrade"], env, tmp_path).returncode == 0
    result = _run(["db", "check", "--quick"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok") and "quick check" in result.stdout
    assert "not whether each index matches its table" in result.stderr


def test_db_check_names_the_broken_table_and_fails(tmp_path: Path) -> None:
    settings = _sqlite_settings(tmp_path)
    asyncio.run(_migrated(settings))
    _corrupt(settings)
    result = _run(["db", "check"], {"SMSFLOWS_DATABASE_URL": settings.database_url}, tmp_path)
    assert result.returncode == 1
    assert "CHECK constraint failed in quarantine" in result.stderr
    assert "found 1 problem(s)" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_db_check_quick_still_finds_a_row_that_breaks_a_check_constraint(tmp_path: Path) -> None:
    # quick_check leaves out the indexes, not the CHECK constraints the writer skips.
    settings = _sqlite_settings(tmp_path)
    asyncio.run(_migrated(settings))
    _corrupt(settings)
    result = _run(["db", "check", "--quick"], {"SMSFLOWS_DATABASE_URL": settings.database_url}, tmp_path)
    assert result.returncode == 1
    assert "CHECK constraint failed in quarantine" in result.stderr
    assert "found 1 problem(s)" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


async def test_quick_integrity_check_names_a_row_the_writer_connection_let_through(tmp_path: Path) -> None:
    settings = _sqlite_settings(tmp_path)
    await _migrated(settings)
    await asyncio.to_thread(_corrupt, settings)
    engine = create_engine(settings)
    try:
        report = await check_integrity(engine, quick=True)
    finally:
        await engine.dispose()
    assert report.checked and report.problems == ["CHECK constraint failed in quarantine"]


def test_db_check_refuses_a_database_that_is_not_there(tmp_path: Path) -> None:
    missing = tmp_path / "var" / "nothing.db"
    result = _run(["db", "check"], {"SMSFLOWS_DATABASE_URL": f"sqlite+aiosqlite:///{missing}"}, tmp_path)
    assert result.returncode == 1
    assert f"no database at {missing}" in result.stderr and "Traceback" not in result.stderr
    assert not missing.exists()  # the check created no empty database


@pytest.mark.postgres
def test_db_check_on_postgres_says_the_server_enforces_the_constraints(
    tmp_path: Path, pg_database: str
) -> None:
    for args in (["db", "check"], ["db", "check", "--quick"]):
        result = _run(args, {"SMSFLOWS_DATABASE_URL": pg_database}, tmp_path)
        assert result.returncode == 0, result.stderr
        assert "nothing to check on PostgreSQL" in result.stdout
        assert "the server enforces every CHECK and NOT NULL constraint" in result.stdout
        assert "checking" not in result.stderr  # no file to read


def test_sqlite_reports_check_failures_in_integrity_check() -> None:
    # The SQLite this runs on re-evaluates CHECK constraints in integrity_check (3.33 onwards).
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (status TEXT NOT NULL CHECK (status IN ('a', 'b')))")
    conn.execute("PRAGMA ignore_check_constraints=ON")
    conn.execute("INSERT INTO t VALUES ('c')")
    conn.execute("PRAGMA ignore_check_constraints=OFF")
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("CHECK constraint failed in t",)]
