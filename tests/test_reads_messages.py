"""``app.reads.messages``: a message with its links, read the way the API, the CLI and the
dashboard read it, after real traffic through the webhook and the API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import Connection

from app.reads.messages import inbound_detail, list_inbound, list_outbox, sent_message
from tests.conftest import Service, make_settings, running, send_mo, write_flows

T = TypeVar("T")
PHONE = "48600123456"
INFO = """
id = "info"
kind = "autoreply"
keywords = ["INFO"]
[replies]
reply = "Info: {{ args }}"
"""


@pytest.fixture
async def svc(database_url: str, tmp_path: Path) -> AsyncIterator[Service]:
    flows = write_flows(tmp_path / "flows", info=INFO)
    async with running(make_settings(database_url, flows_dir=str(flows))) as service:
        yield service


async def read(service: Service, query: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    def run(conn: Connection) -> T:
        return query(conn, *args, **kwargs)

    async with service.engine.connect() as conn:
        return await conn.run_sync(run)


async def test_inbound_detail_links_its_event_and_its_reply(svc: Service) -> None:
    form = await send_mo(svc, sender=PHONE, text="INFO ceny")
    await send_mo(svc, sms_id=form["sms_id"], sender=PHONE, text="INFO ceny")  # Mobitex resends it
    detail = await read(svc, inbound_detail, form["sms_id"])
    assert detail is not None
    assert (detail.message.text, detail.message.status, detail.message.deliveries) == (
        "INFO ceny",
        "processed",
        2,
    )
    (event,) = detail.events
    assert (event.flow_id, event.outcome, event.detail) == ("info", "replied", {"args": "CENY"})
    (reply,) = detail.replies
    assert (reply.text, reply.to_number, reply.status, reply.sent) == ("Info: CENY", PHONE, "queued", False)
    assert event.reply_id == reply.id and detail.answers is None


async def test_answer_and_sent_message_name_each_other(svc: Service) -> None:
    created = await svc.api.post("/api/messages", json={"to": PHONE, "text": "Wizyta jutro?", "tag": "visit"})
    assert created.status_code == 201, created.text
    sent = created.json()
    form = await send_mo(svc, sender=PHONE, text="TAK", ext_id=sent["ext_id"])
    detail = await read(svc, inbound_detail, form["sms_id"])
    assert detail is not None and detail.answers is not None
    assert (detail.answers.id, detail.answers.text) == (sent["id"], "Wizyta jutro?")
    message = await read(svc, sent_message, sent["id"])
    assert message is not None
    assert [a.sms_id for a in message.answers] == [form["sms_id"]] and message.tag == "visit"


async def test_unknown_messages_read_as_none(svc: Service) -> None:
    assert await read(svc, inbound_detail, "0" * 32) is None
    assert await read(svc, sent_message, 999) is None


async def test_pages_run_newest_first_and_the_last_has_no_cursor(svc: Service) -> None:
    for i in range(3):
        await send_mo(svc, sender=PHONE, text=f"INFO {i}")
    first = await read(svc, list_inbound, sender=PHONE, limit=2)
    assert [m.text for m in first.items] == ["INFO 2", "INFO 1"] and first.next_cursor is not None
    rest = await read(svc, list_inbound, sender=PHONE, limit=2, before=int(first.next_cursor))
    assert [m.text for m in rest.items] == ["INFO 0"] and rest.next_cursor is None
    replies = await read(svc, list_outbox, to=PHONE, flow="info", limit=10)
    assert [r.text for r in replies.items] == ["Info: 2", "Info: 1", "Info: 0"]
