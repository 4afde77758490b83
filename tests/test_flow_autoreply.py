"""Auto-replies through the real webhook."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import make_settings, running, send_mo, write_flows

INFO = """
id = "info"
kind = "autoreply"
numbers = ["70120"]
keywords = ["INFO", "POMOC"]
transliterate = true
[replies]
reply = "Cześć {{ sender }}! Wyślij GLOS A lub GLOS B na {{ number }}."
"""


async def test_autoreply_renders_variables_and_transliterates(database_url: str, tmp_path: Path) -> None:
    flows = write_flows(tmp_path / "flows", info=INFO)
    async with running(make_settings(database_url, flows_dir=str(flows))) as svc:
        await send_mo(svc, text="pomoc", sender="48600111222")
        rows = await svc.rows("SELECT to_number, from_number, text, encoding, parts, status FROM outbox")
    assert [tuple(r) for r in rows] == [
        ("48600111222", "70120", "Czesc 48600111222! Wyslij GLOS A lub GLOS B na 70120.", "gsm7", 1, "queued")
    ]


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
