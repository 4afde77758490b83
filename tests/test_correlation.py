"""Answers tied to the messages they answer, by our ext_id or Mobitex's Id, through the real webhook."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import text

from app.mobitex.fake_gateway import FakeGatewayConfig, create_fake_gateway
from tests.conftest import Service, free_port, make_settings, running, send_mo
from tests.test_fake_gateway import until

PHONE, OTHER = "48600123456", "48600999888"
USER, PASSWORD = "konto", "sekret"


@pytest.fixture
async def service(database_url: str) -> AsyncIterator[Service]:
    async with running(make_settings(database_url, dispatcher="false")) as svc:
        yield svc


async def post_message(service: Service, **fields: Any) -> dict[str, Any]:
    body = {"to": PHONE, "text": "Wizyta jutro 10:00. Odpisz TAK lub NIE.", "tag": "visit"} | fields
    response = await service.api.post("/api/messages", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def inbound(service: Service, sms_id: str) -> dict[str, Any]:
    response = await service.api.get(f"/api/inbound/{sms_id}")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def events_of(service: Service, sms_id: str) -> list[tuple[str, dict[str, Any]]]:
    rows = await service.rows(
        "SELECT e.outcome, e.detail FROM flow_events e JOIN inbound_messages m ON m.id = e.inbound_id "
        "WHERE m.sms_id = :s ORDER BY e.id",
        s=sms_id,
    )
    return [(outcome, json.loads(detail) if detail else {}) for outcome, detail in rows]


async def test_answer_with_our_ext_id_is_linked_even_when_no_flow_acts(service: Service) -> None:
    sent = await post_message(service)
    form = await send_mo(service, sender=PHONE, text="TAK", ext_id=sent["ext_id"])
    stored = await inbound(service, form["sms_id"])
    assert (stored["reply_to_id"], stored["correlation"], stored["status"]) == (
        sent["id"],
        "matched",
        "ignored",
    )
    shown = (await service.api.get(f"/api/messages/{sent['id']}")).json()
    assert [(a["sms_id"], a["text"]) for a in shown["answers"]] == [(form["sms_id"], "TAK")]


async def test_answer_with_mobitex_id_is_linked(service: Service) -> None:
    sent = await post_message(service)
    mobitex_id = "AA30CFCC92BBE2A920F35AA8628462AC"  # as the dispatcher stores it from sms.php's answer
    async with service.engine.begin() as conn:
        await conn.execute(
            text("UPDATE outbox SET mobitex_id = :m, status = 'sent' WHERE id = :i"),
            {"m": mobitex_id, "i": sent["id"]},
        )
    form = await send_mo(service, sender=PHONE, text="TAK", ext_id=mobitex_id.lower())
    stored = await inbound(service, form["sms_id"])
    assert (stored["reply_to_id"], stored["correlation"]) == (sent["id"], "matched")


async def test_ext_id_matching_nothing_is_kept_and_flagged(service: Service) -> None:
    form = await send_mo(service, sender=PHONE, text="TAK", ext_id="0123456789abcdef0123456789abcdef")
    stored = await inbound(service, form["sms_id"])
    assert (stored["reply_to_id"], stored["correlation"], stored["text"]) == (None, "unmatched", "TAK")
    listed = (await service.api.get("/api/inbound", params={"correlation": "unmatched"})).json()["items"]
    assert [m["sms_id"] for m in listed] == [form["sms_id"]]
    assert (await service.api.get("/api/inbound", params={"correlation": "matched"})).json()["items"] == []
    outcome, detail = (await events_of(service, form["sms_id"]))[0]
    assert outcome == "reply_unmatched"
    assert detail["reason"] == "no sent message has ext_id or Mobitex Id '0123456789abcdef0123456789abcdef'"


async def test_answer_from_another_phone_is_unmatched_and_the_event_says_why(service: Service) -> None:
    sent = await post_message(service)
    form = await send_mo(service, sender=OTHER, text="TAK", ext_id=sent["ext_id"])
    stored = await inbound(service, form["sms_id"])
    assert (stored["reply_to_id"], stored["correlation"]) == (None, "unmatched")
    _, detail = (await events_of(service, form["sms_id"]))[0]
    assert detail["outbox_id"] == sent["id"]
    assert detail["reason"] == f"message {sent['id']} was sent to {PHONE}, but this answer comes from {OTHER}"
    assert (await service.api.get(f"/api/messages/{sent['id']}")).json()["answers"] == []


async def test_message_without_ext_id_is_not_correlated(service: Service) -> None:
    form = await send_mo(service, sender=PHONE, text="TAK", ext_id="")
    stored = await inbound(service, form["sms_id"])
    assert (stored["reply_to_id"], stored["correlation"]) == (None, None)
    assert await events_of(service, form["sms_id"]) == [("unmatched", {})]  # no flow took it


async def test_redelivered_unmatched_answer_is_flagged_once(service: Service) -> None:
    form = {"sender": PHONE, "text": "TAK", "ext_id": "feedfacefeedfacefeedfacefeedface"}
    first = await send_mo(service, **form)
    await send_mo(service, **(form | {"sms_id": first["sms_id"]}))
    assert [o for o, _ in await events_of(service, first["sms_id"])] == ["reply_unmatched", "unmatched"]


@asynccontextmanager
async def gateway_on(port: int, config: FakeGatewayConfig) -> AsyncIterator[str]:
    """The fake Mobitex on a port chosen beforehand, so the service can be told its URL first."""
    server = uvicorn.Server(uvicorn.Config(create_fake_gateway(config), port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the fake gateway stopped during start-up")
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.mark.parametrize("ext_id_mode", ["mobitex_id", "client_ext_id"])
async def test_phone_answering_through_the_fake_gateway_is_linked_either_way(
    database_url: str, ext_id_mode: str
) -> None:
    port = free_port()
    settings = make_settings(
        database_url,
        send_mode="mobitex",
        dispatcher="true",
        mobitex_url=f"http://127.0.0.1:{port}/sms.php",
        mobitex_user=USER,
        mobitex_password=PASSWORD,
        mobitex_from="SMSFLOWS",
    )
    async with running(settings) as service:
        config = FakeGatewayConfig(
            user=USER,
            password=PASSWORD,
            webhook_url=service.mo_url,
            short_number="70120",
            ext_id_mode=ext_id_mode,
        )
        async with gateway_on(port, config) as gateway, httpx.AsyncClient(base_url=gateway) as fake:
            sent = await post_message(service)

            async def was_sent() -> bool:
                return bool((await service.api.get(f"/api/messages/{sent['id']}")).json()["status"] == "sent")

            await until(was_sent)
            shown = (await service.api.get(f"/api/messages/{sent['id']}")).json()
            reply = await fake.post("/fake/reply", json={"message_id": shown["mobitex_id"], "text": "TAK"})
            assert reply.status_code == 202, reply.text
            expected = shown["mobitex_id"] if ext_id_mode == "mobitex_id" else sent["ext_id"]
            assert reply.json()["form"]["ext_id"] == expected

            async def answered() -> bool:
                return bool((await service.api.get(f"/api/messages/{sent['id']}")).json()["answers"])

            await until(answered)
            shown = (await service.api.get(f"/api/messages/{sent['id']}")).json()
            stored = await inbound(service, shown["answers"][0]["sms_id"])
    assert [(a["sender"], a["text"]) for a in shown["answers"]] == [(PHONE, "TAK")]
    assert (stored["reply_to_id"], stored["correlation"], stored["number"]) == (
        sent["id"],
        "matched",
        "70120",
    )
