"""The simulator page: a phone whose messages take the webhook's path and whose replies show up."""

from __future__ import annotations

import asyncio
from pathlib import Path

from app.db import users as store
from app.db.engine import create_engine, session_factory
from app.db.migrate import upgrade
from tests.conftest import running, write_flows
from tests.dashboard import (
    PASSWORD,
    browser,
    csrf_of,
    dashboard_service,
    dashboard_settings,
    sign_in,
    signed_in,
)

INFO = """
id = "info"
kind = "autoreply"
numbers = ["70120"]
keywords = ["INFO"]

[replies]
reply = "Odpowiedź na INFO"
"""


async def test_a_message_from_the_simulated_phone_is_stored_answered_and_shown(
    database_url: str, tmp_path: Path
) -> None:
    flows = write_flows(tmp_path / "flows", info=INFO)
    # The dispatcher runs in dry-run: the reply is "sent" as dry-run, the real outbox path.
    settings = dashboard_settings(database_url, flows_dir=str(flows), dispatcher="true", send_mode="dry-run")
    # The user exists before the service starts: on SQLite the running dispatcher's claims would
    # make the test's own read-then-write transaction that adds it fail as "database is locked".
    engine = create_engine(settings)
    await upgrade(engine)
    async with session_factory(engine)() as session:
        await store.add(session, "olek", "operator", PASSWORD, actor="test")
        await session.commit()
    await engine.dispose()
    async with running(settings) as svc, browser(svc) as client:
        assert (await sign_in(client, "olek")).status_code == 303
        page = await client.get("/simulator", params={"sender": "600 123 456", "number": "70120"})
        assert page.status_code == 200
        assert 'value="48600123456"' in page.text
        assert "No messages yet" in page.text
        sent = await client.post(
            "/simulator",
            data={
                "_csrf_token": csrf_of(page.text),
                "sender": "48600123456",
                "number": "70120",
                "text": "info",
            },
        )
        assert sent.status_code == 303
        assert sent.headers["location"] == "/simulator?sender=48600123456&number=70120"
        stored = await svc.rows("SELECT status, flow_id, client_ip FROM inbound_messages")
        assert [(r.status, r.flow_id) for r in stored] == [("processed", "info")]
        for _ in range(100):  # the dispatcher picks the reply up on its own
            if await svc.scalar("SELECT status FROM outbox") == "dry-run":
                break
            await asyncio.sleep(0.05)
        chat = await client.get("/simulator/chat", params={"sender": "48600123456", "number": "70120"})
        assert "info" in chat.text and "Odpowiedź na INFO" in chat.text
        assert "<html" not in chat.text  # the part alone, for polling
        assert await svc.scalar("SELECT count(*) FROM audit_log WHERE action = 'simulator.send'") == 1


async def test_htmx_gets_the_phone_back_and_html_in_a_message_is_shown_as_text(database_url: str) -> None:
    async with dashboard_service(database_url) as svc, signed_in(svc, "olek", "operator") as client:
        page = await client.get("/simulator")
        token = csrf_of(page.text)
        for text in ("<script>alert(1)</script>", '"><img onerror=x>'):
            resp = await client.post(
                "/simulator",
                data={"_csrf_token": token, "sender": "48600123456", "number": "70120", "text": text},
                headers={"hx-request": "true"},
            )
            assert resp.status_code == 200
            assert 'id="phone"' in resp.text and "<html" not in resp.text
        shown = (await client.get("/simulator")).text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in shown and "<script>alert" not in shown
        assert "&#34;&gt;&lt;img onerror=x&gt;" in shown and "<img onerror" not in shown


async def test_a_phone_number_that_mobitex_would_not_send_is_a_form_error(database_url: str) -> None:
    async with dashboard_service(database_url) as svc, signed_in(svc, "olek", "operator") as client:
        page = await client.get("/simulator")
        resp = await client.post(
            "/simulator",
            data={"_csrf_token": csrf_of(page.text), "sender": "12ab", "number": "70120", "text": "INFO"},
        )
        assert resp.status_code == 400
        assert "The phone cannot send that" in resp.text and "sender" in resp.text
        assert await svc.scalar("SELECT count(*) FROM quarantine") == 0
        assert await svc.scalar("SELECT count(*) FROM inbound_messages") == 0


async def test_only_operators_use_the_simulator_and_its_form_needs_the_csrf_token(database_url: str) -> None:
    async with dashboard_service(database_url) as svc:
        async with signed_in(svc, "vera", "viewer") as viewer:
            assert (await viewer.get("/simulator")).status_code == 403
            assert 'href="/simulator"' not in (await viewer.get("/")).text
        async with signed_in(svc, "ada", "admin") as admin:
            assert (await admin.get("/simulator")).status_code == 200
            resp = await admin.post(
                "/simulator", data={"sender": "48600123456", "number": "70120", "text": "x"}
            )
            assert resp.status_code == 403
        assert await svc.scalar("SELECT count(*) FROM inbound_messages") == 0
