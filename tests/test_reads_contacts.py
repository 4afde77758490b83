"""``app.reads.contacts``: one phone's thread and everything it took part in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.reads.contacts import ContactHistory, contact_history
from tests.conftest import Service, make_settings, running, send_mo, write_flows

PHONE, OTHER = "48600123456", "48600999888"
FLOWS = {
    "final": """
id = "final"
kind = "vote"
keywords = ["GLOS"]
[vote]
options = { A = ["ANNA"], B = ["BARTEK"] }
[replies]
accepted = "Głos na {{ option }} przyjęty."
""",
    "news": """
id = "news"
kind = "subscription"
keywords = ["NEWS"]
[subscription]
leave_keywords = ["STOPNEWS"]
[replies]
joined = "Zapisano."
left = "Wypisano z listy."
""",
    "stop": """
id = "stop"
kind = "optout"
keywords = ["STOP"]
[replies]
opted_out = "Wypisano."
""",
}


@pytest.fixture
async def svc(database_url: str, tmp_path: Path) -> AsyncIterator[Service]:
    flows = write_flows(tmp_path / "flows", **FLOWS)
    async with running(make_settings(database_url, flows_dir=str(flows))) as service:
        yield service


async def history(service: Service, phone: str, limit: int = 100) -> ContactHistory:
    async with service.engine.connect() as conn:
        return await conn.run_sync(lambda c: contact_history(c, phone, limit=limit))


async def test_history_interleaves_what_the_phone_sent_and_got(svc: Service) -> None:
    for text in ("GLOS A", "NEWS", "STOP"):
        await send_mo(svc, sender=PHONE, text=text)
    await send_mo(svc, sender=OTHER, text="GLOS B")
    found = await history(svc, PHONE)
    assert found.known and found.messages == 3 and found.opted_out_at is not None
    assert [(e.direction, e.text) for e in found.thread] == [
        ("out", "Wypisano."),
        ("in", "STOP"),
        ("out", "Zapisano."),
        ("in", "NEWS"),
        ("out", "Głos na A przyjęty."),
        ("in", "GLOS A"),
    ]
    assert [(v.flow_id, v.option) for v in found.votes] == [("final", "A")]
    assert [(s.list_id, s.status) for s in found.subscriptions] == [
        ("news", "left")
    ]  # STOP leaves every list
    assert found.redemptions == [] and found.survey_answers == [] and not found.more


async def test_thread_is_cut_at_the_limit_and_says_there_is_more(svc: Service) -> None:
    await send_mo(svc, sender=PHONE, text="GLOS A")
    await send_mo(svc, sender=PHONE, text="NEWS")  # two messages in, two replies out
    found = await history(svc, PHONE, limit=3)
    assert [e.text for e in found.thread] == ["Zapisano.", "NEWS", "Głos na A przyjęty."] and found.more


async def test_a_phone_never_seen_has_an_empty_history(svc: Service) -> None:
    found = await history(svc, "48500000000")
    assert not found.known and found.thread == [] and found.messages == 0 and found.opted_out_at is None
