"""The read API, quarantine repair, health and readiness, over real HTTP on both databases."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text

from app.db.migrate import head_revision
from tests.conftest import Service, make_settings, mo_form, start_service
from tests.dashboard import dashboard_service, signed_in


async def _post(service: Service, **fields: str) -> dict[str, str]:
    form = mo_form(**fields)
    async with httpx.AsyncClient() as client:
        resp = await client.post(service.mo_url, data=form)
    assert resp.status_code == 200
    return form


async def test_inbound_message_is_readable_by_sms_id(service: Service) -> None:
    form = await _post(service, text="Zażółć", ext_id="ab12")
    resp = await service.api.get(f"/api/inbound/{form['sms_id']}")
    assert resp.status_code == 200
    body = resp.json()
    assert body["sms_id"] == form["sms_id"]
    assert body["text"] == "Zażółć"
    assert body["ext_id"] == "ab12"
    assert body["status"] == "ignored"  # no flows are loaded in this service
    assert body["deliveries"] == 1
    assert body["time"] == 1764540000
    assert body["received_at"].endswith("Z") or "+00:00" in body["received_at"]


async def test_unknown_sms_id_is_404_with_a_message(service: Service) -> None:
    resp = await service.api.get("/api/inbound/" + "0" * 32)
    assert resp.status_code == 404
    assert "no inbound message" in resp.json()["detail"]


async def test_inbound_list_filters_and_paginates(service: Service) -> None:
    for i in range(5):
        await _post(service, sender="48600000001", text=f"a{i}")
    await _post(service, sender="48600000002", number="4112", text="other")

    resp = await service.api.get("/api/inbound", params={"sender": "+48 600 000 001", "limit": 2})
    page1 = resp.json()
    assert [m["text"] for m in page1["items"]] == ["a4", "a3"]
    assert page1["next_cursor"]
    page2 = (
        await service.api.get(
            "/api/inbound", params={"sender": "48600000001", "limit": 2, "cursor": page1["next_cursor"]}
        )
    ).json()
    assert [m["text"] for m in page2["items"]] == ["a2", "a1"]
    page3 = (
        await service.api.get(
            "/api/inbound", params={"sender": "48600000001", "limit": 2, "cursor": page2["next_cursor"]}
        )
    ).json()
    assert [m["text"] for m in page3["items"]] == ["a0"]
    assert page3["next_cursor"] is None

    by_number = (await service.api.get("/api/inbound", params={"number": "4112"})).json()
    assert [m["text"] for m in by_number["items"]] == ["other"]
    by_status = (await service.api.get("/api/inbound", params={"status": "ignored"})).json()
    assert len(by_status["items"]) == 6
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert (await service.api.get("/api/inbound", params={"since": future})).json()["items"] == []
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert len((await service.api.get("/api/inbound", params={"since": past})).json()["items"]) == 6


async def test_bad_filters_are_400_with_a_reason(service: Service) -> None:
    resp = await service.api.get("/api/inbound", params={"status": "lost"})
    assert resp.status_code == 400
    assert "status must be one of" in resp.json()["detail"]
    assert (await service.api.get("/api/inbound", params={"limit": 0})).status_code == 400
    assert (await service.api.get("/api/inbound", params={"cursor": "x'; drop"})).status_code == 400


async def test_integers_beyond_what_the_database_holds_are_400_with_a_reason(service: Service) -> None:
    too_big = "9999999999999999999"  # 19 digits, over the 64-bit signed limit
    for path in ("/api/inbound", "/api/outbox", "/api/quarantine"):
        resp = await service.api.get(path, params={"cursor": too_big})
        assert resp.status_code == 400, (path, resp.text)
        assert "cursor" in resp.text
    for resp in (
        await service.api.get("/api/messages/9223372036854775808"),
        await service.api.post("/api/quarantine/9223372036854775808/discard"),
        await service.api.post("/api/quarantine/9223372036854775808/reingest"),
    ):
        assert resp.status_code == 400, resp.text
        assert "9223372036854775807" in resp.text
    assert (await service.api.get("/api/messages/9223372036854775807")).status_code == 404


async def test_an_unexpected_error_is_logged_with_its_traceback_and_answered_500_json(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    # A damaged schema is an error no handler expects: the table the page reads is gone.
    async with service.engine.begin() as conn:
        await conn.execute(text("ALTER TABLE quarantine RENAME TO quarantine_moved"))
    try:
        with caplog.at_level(logging.ERROR, logger="smsflows"):
            resp = await service.api.get("/api/quarantine")
    finally:
        async with service.engine.begin() as conn:
            await conn.execute(text("ALTER TABLE quarantine_moved RENAME TO quarantine"))
    assert resp.status_code == 500
    assert resp.json()["detail"].startswith("Internal Server Error")
    assert "quarantine" not in resp.text  # nothing of the inside reaches the client
    logged = [r for r in caplog.records if r.name == "smsflows.api"]
    assert len(logged) == 1
    assert "GET /api/quarantine" in logged[0].getMessage()
    assert logged[0].exc_info is not None
    assert "Traceback" in caplog.text


async def test_api_needs_the_bearer_token(service: Service) -> None:
    async with httpx.AsyncClient(base_url=service.base_url) as anon:
        missing = await anon.get("/api/inbound")
        wrong = await anon.get("/api/inbound", headers={"Authorization": "Bearer nope"})
    assert missing.status_code == 401
    assert wrong.status_code == 401
    assert "SMSFLOWS_API_TOKEN" in wrong.json()["detail"]


async def test_api_without_configured_token_is_503_with_instructions(database_url: str) -> None:
    settings = make_settings(database_url, api_token="")
    server, task, base = await start_service(settings)
    try:
        async with httpx.AsyncClient(base_url=base) as client:
            resp = await client.get("/api/inbound", headers={"Authorization": "Bearer anything"})
        assert resp.status_code == 503
        assert "set SMSFLOWS_API_TOKEN" in resp.json()["detail"]
    finally:
        server.should_exit = True
        await task


async def test_quarantined_request_is_listed_with_its_raw_body(service: Service) -> None:
    body = b"number=70120&sender=48600123456&text=Cze%B6%E6&sms_id=tooshort&time=1764540000"
    async with httpx.AsyncClient() as client:
        await client.post(
            service.mo_url, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
    items = (await service.api.get("/api/quarantine")).json()["items"]
    assert len(items) == 1
    assert base64.b64decode(items[0]["raw_body"]) == body
    assert "sms_id" in items[0]["reason"]
    assert items[0]["status"] == "held"


async def test_quarantined_request_can_be_repaired_and_reingested_once(service: Service) -> None:
    good_id = "f" * 32
    body = b"number=70120&sender=48600123456&text=Cze%9C%E6&sms_id=tooshort&time=1764540000"
    async with httpx.AsyncClient() as client:
        await client.post(
            service.mo_url, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
    qid = (await service.api.get("/api/quarantine")).json()["items"][0]["id"]

    still_bad = await service.api.post(f"/api/quarantine/{qid}/reingest", json={"fields": {"time": "never"}})
    assert still_bad.status_code == 400
    assert "still invalid" in still_bad.json()["detail"]

    resp = await service.api.post(f"/api/quarantine/{qid}/reingest", json={"fields": {"sms_id": good_id}})
    assert resp.status_code == 200, resp.text
    assert resp.json()["text"] == "Cześć"  # decoded from the kept windows-1250 bytes
    assert resp.json()["sms_id"] == good_id
    stored = await service.rows("SELECT raw_body, status FROM inbound_messages WHERE sms_id = :s", s=good_id)
    assert bytes(stored[0][0]) == body
    assert stored[0][1] == "ignored"  # went through the (empty) flow set like any message
    held = (await service.api.get("/api/quarantine", params={"status": "reingested"})).json()["items"]
    assert [(q["id"], q["sms_id"]) for q in held] == [(qid, good_id)]

    again = await service.api.post(f"/api/quarantine/{qid}/reingest", json={"fields": {"sms_id": good_id}})
    assert again.status_code == 409


async def test_quarantined_request_can_be_discarded(service: Service) -> None:
    async with httpx.AsyncClient() as client:
        await client.post(service.mo_url, data={"garbage": "1"})
    qid = (await service.api.get("/api/quarantine")).json()["items"][0]["id"]
    resp = await service.api.post(f"/api/quarantine/{qid}/discard")
    assert resp.status_code == 200
    assert resp.json()["status"] == "discarded"
    assert (await service.api.post(f"/api/quarantine/{qid}/discard")).status_code == 409
    assert (await service.api.post("/api/quarantine/99999/discard")).status_code == 404


async def test_health_and_ready(service: Service) -> None:
    async with httpx.AsyncClient(base_url=service.base_url) as client:
        health = await client.get("/health")
        ready = await client.get("/ready")
    assert (health.status_code, health.json()["status"]) == (200, "ok")
    assert (ready.status_code, ready.json()["status"]) == (200, "ok")


async def test_ready_reports_pending_migrations(service: Service) -> None:
    async with service.engine.begin() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = 'old'"))
    async with httpx.AsyncClient(base_url=service.base_url) as client:
        ready = await client.get("/ready")
    async with service.engine.begin() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head_revision()})
    assert ready.status_code == 503
    assert "smsflows db upgrade" in ready.json()["detail"]


async def test_openapi_schema_describes_the_api(service: Service) -> None:
    resp = await service.api.get("/schema/openapi.json")
    assert resp.status_code == 200
    paths = resp.json()["paths"]
    for path in (
        "/mobitex/mo",
        "/api/inbound",
        "/api/inbound/{sms_id}",
        "/api/quarantine",
        "/api/quarantine/{qid}/reingest",
        "/api/flows/{flow_id}/results",
        "/api/outbox",
        "/api/messages/{message_id}",
        "/health",
        "/ready",
    ):
        assert path in paths, path
    params = {p["name"] for p in paths["/api/inbound"]["get"]["parameters"]}
    assert {"sender", "number", "status", "since", "limit", "cursor"} <= params


async def test_schema_needs_the_token_and_declares_the_bearer_scheme(service: Service) -> None:
    async with httpx.AsyncClient(base_url=service.base_url) as anon:
        for path in ("/schema", "/schema/openapi.json", "/schema/openapi.yaml"):
            assert (await anon.get(path)).status_code == 401, path
    schema = (await service.api.get("/schema/openapi.json")).json()
    assert schema["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "SMSFLOWS_API_TOKEN, sent as 'Authorization: Bearer <token>'",
    }
    assert schema["paths"]["/api/inbound"]["get"]["security"] == [{"bearer": []}]
    assert schema["paths"]["/api/messages"]["post"]["security"] == [{"bearer": []}]
    assert "security" not in schema["paths"]["/mobitex/mo"]["post"]
    assert (await service.api.get("/schema/openapi.yaml")).text.startswith(
        ("openapi:", "info:", "components:")
    )


async def test_schema_page_loads_nothing_from_another_site(service: Service) -> None:
    page = await service.api.get("/schema")
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)=["\']([^"\']+)', page.text)
    assert len(sources) == 4  # the script bundle, its preset, the stylesheet and the icon
    for source in sources:
        assert source.startswith("/schema/assets/"), source
        asset = await service.api.get(source)
        assert asset.status_code == 200, source
        assert len(asset.content) > 500
    assert "SwaggerUIBundle" in (await service.api.get("/schema/assets/swagger-ui-bundle.js")).text


async def test_schema_can_be_opened_or_turned_off(database_url: str) -> None:
    for setting, anonymous in (("open", 200), ("off", 404)):
        server, task, base = await start_service(make_settings(database_url, schema=setting))
        try:
            async with httpx.AsyncClient(base_url=base) as anon:
                assert (await anon.get("/schema/openapi.json")).status_code == anonymous, setting
        finally:
            server.should_exit = True
            await task


async def test_repair_with_an_unknown_field_name_is_refused(service: Service) -> None:
    async with httpx.AsyncClient() as client:
        await client.post(service.mo_url, data={"garbage": "1"})
    qid = (await service.api.get("/api/quarantine")).json()["items"][0]["id"]
    resp = await service.api.post(f"/api/quarantine/{qid}/reingest", json={"fields": {"sms-id": "x"}})
    assert resp.status_code == 400
    assert "sms-id" in resp.json()["detail"]


async def test_two_repairs_racing_store_the_message_once(service: Service) -> None:
    async with httpx.AsyncClient() as client:
        await client.post(service.mo_url, data={"number": "70120", "sender": "48600123456", "text": "x"})
    qid = (await service.api.get("/api/quarantine")).json()["items"][0]["id"]
    fields = {"sms_id": "e" * 32, "time": "1764540000"}
    answers = await asyncio.gather(
        *(service.api.post(f"/api/quarantine/{qid}/reingest", json={"fields": fields}) for _ in range(4))
    )
    assert sorted(a.status_code for a in answers) == [200, 409, 409, 409]
    assert await service.scalar("SELECT deliveries FROM inbound_messages WHERE sms_id = :s", s="e" * 32) == 1


async def test_the_audit_page_bounds_its_cursor_too(database_url: str) -> None:
    async with dashboard_service(database_url) as svc, signed_in(svc, "olek", "operator") as client:
        resp = await client.get("/audit", params={"before": "99999999999999999999"})
    assert resp.status_code == 400, resp.text
    assert "Traceback" not in resp.text
