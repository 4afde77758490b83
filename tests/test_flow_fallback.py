"""Fallbacks: the answer to messages no keyword matched, through the real webhook."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import make_settings, running, send_mo, write_flows
from tests.test_flow_autoreply import INFO

FALLBACK = """
id = "nie-rozumiem"
kind = "fallback"
numbers = ["70120"]
[fallback]
min_interval_minutes = 60
[replies]
reply = "Nie rozumiemy wiadomości. Wyślij INFO."
"""


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
