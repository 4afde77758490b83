"""Auto-replies, fallbacks and failures, through the real webhook."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.conftest import make_settings, mo_form, running, send_mo, write_flows

INFO = """
id = "info"
kind = "autoreply"
numbers = ["70120"]
keywords = ["INFO", "POMOC"]
transliterate = true
[replies]
reply = "Cześć {{ sender }}! Wyślij GLOS A lub GLOS B na {{ number }}."
"""
FALLBACK = """
id = "nie-rozumiem"
kind = "fallback"
numbers = ["70120"]
[fallback]
min_interval_minutes = 60
[replies]
reply = "Nie rozumiemy wiadomości. Wyślij INFO."
"""


async def test_autoreply_renders_variables_and_transliterates(database_url: str, tmp_path: Path) -> None:
    flows = write_flows(tmp_path / "flows", info=INFO)
    async with running(make_settings(database_url, flows_dir=str(flows))) as svc:
        await send_mo(svc, text="pomoc", sender="48600111222")
        rows = await svc.rows("SELECT to_number, from_number, text, encoding, parts, status FROM outbox")
    assert [tuple(r) for r in rows] == [
        ("48600111222", "70120", "Czesc 48600111222! Wyslij GLOS A lub GLOS B na 70120.", "gsm7", 1, "queued")
    ]


async def test_fallback_answers_unmatched_messages_once_per_interval(
    database_url: str, tmp_path: Path
) -> None:
    flows = write_flows(tmp_path / "flows", info=INFO, fallback=FALLBACK)
    async with running(make_settings(database_url, flows_dir=str(flows))) as svc:
        for text in ("co to?", "halo", "INFO"):
            await send_mo(svc, text=text, sender="48600333444")
        await send_mo(svc, text="halo", sender="48600555666", number="4112")  # no fallback there
        replies = [r[0] for r in await svc.rows("SELECT text FROM outbox ORDER BY id")]
        outcomes = [r[0] for r in await svc.rows("SELECT outcome FROM flow_events ORDER BY id")]
        statuses = [r[0] for r in await svc.rows("SELECT status FROM inbound_messages ORDER BY id")]
    assert replies[0] == "Nie rozumiemy wiadomości. Wyślij INFO."
    assert len(replies) == 2  # the fallback once, then the INFO auto-reply
    assert outcomes == ["replied", "suppressed", "replied", "unmatched"]
    assert statuses == ["processed", "processed", "processed", "ignored"]


async def test_flow_that_raises_marks_the_message_failed_and_keeps_it(
    database_url: str, tmp_path: Path
) -> None:
    # Renders with the sample data `flows check` uses, divides by zero for any other phone.
    broken = INFO.replace("Cześć {{ sender }}!", "{{ 1 // ((sender == '48600123456') | int) }}")
    flows = write_flows(tmp_path / "flows", info=broken.replace("transliterate = true\n", ""))
    async with running(make_settings(database_url, flows_dir=str(flows))) as svc:
        failed = await send_mo(svc, text="INFO", sender="48600999000")
        ok = await send_mo(svc, text="something else")
        rows = dict(await svc.rows("SELECT sms_id, status FROM inbound_messages"))
        error = await svc.scalar("SELECT error FROM inbound_messages WHERE sms_id = :s", s=failed["sms_id"])
        assert await svc.scalar("SELECT count(*) FROM outbox") == 0
        assert (
            await svc.scalar(
                "SELECT count(*) FROM flow_events WHERE inbound_id IS NOT NULL AND outcome = 'replied'"
            )
            == 0
        )
    assert rows == {failed["sms_id"]: "failed", ok["sms_id"]: "ignored"}
    assert "ZeroDivisionError" in error


async def test_reply_echoing_a_long_message_is_cut_to_max_parts(database_url: str, tmp_path: Path) -> None:
    echo = INFO.replace(
        "Cześć {{ sender }}! Wyślij GLOS A lub GLOS B na {{ number }}.", "Napisałeś: {{ text }}"
    )
    flows = write_flows(tmp_path / "flows", info=echo.replace("transliterate = true\n", "max_parts = 1\n"))
    async with running(make_settings(database_url, flows_dir=str(flows))) as svc:
        await send_mo(svc, text="INFO " + "bardzo długa wiadomość " * 20, sender="48600777888")
        text, parts = (await svc.rows("SELECT text, parts FROM outbox"))[0]
    assert parts == 1
    assert text.startswith("Napisałeś: INFO bardzo długa") and text.endswith("…")


async def test_one_failing_message_in_a_batch_leaves_its_neighbours_processed(
    database_url: str, tmp_path: Path
) -> None:
    # Renders for the sample phone only: every other phone's INFO fails, the vote-free HELLO works.
    broken = INFO.replace("Cześć {{ sender }}!", "{{ 1 // ((sender == '48600123456') | int) }}")
    hello = INFO.replace('id = "info"', 'id = "hello"').replace(
        'keywords = ["INFO", "POMOC"]', 'keywords = ["HELLO"]'
    )
    flows = write_flows(tmp_path / "flows", info=broken.replace("transliterate = true\n", ""), hello=hello)
    forms = [mo_form(text="HELLO", sender=f"4860050{i:04d}") for i in range(20)]
    forms.insert(7, mo_form(text="INFO", sender="48600999111"))
    async with running(make_settings(database_url, flows_dir=str(flows))) as svc:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=25)) as client:
            answers = await asyncio.gather(*(client.post(svc.mo_url, data=f) for f in forms))
        assert all(a.status_code == 200 for a in answers)
        statuses = dict(await svc.rows("SELECT sender, status FROM inbound_messages"))
        replies = await svc.scalar("SELECT count(*) FROM outbox")
    assert statuses.pop("48600999111") == "failed"
    assert set(statuses.values()) == {"processed"} and len(statuses) == 20
    assert replies == 20
