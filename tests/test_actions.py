"""Send-back actions: a signed POST to a real local receiver, retried until it lands or grows too old."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from app.outbox.actions import sign
from tests.conftest import Service, free_port, make_settings, running, send_mo, write_flows
from tests.test_fake_gateway import until

SECRET = "action-secret"
PHONE = "48600123456"
FLOW = """
id = "visits"
kind = "reply"

[reply]
tag = "visit"
answers = { confirmed = ["TAK"], declined = ["NIE"] }
webhook = "URL"

[replies]
confirmed = "Dziękujemy."
"""

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class Receiver:
    """An application's endpoint: answers with ``statuses`` in turn (the last one for ever) and keeps
    every request it got."""

    statuses: list[int]
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.requests.append((headers, body))
        status = self.statuses[min(len(self.requests), len(self.statuses)) - 1]
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"ok" if status < 300 else b"try again"})


@asynccontextmanager
async def receiving(*statuses: int) -> AsyncIterator[tuple[Receiver, str]]:
    receiver = Receiver(list(statuses))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(receiver, port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield receiver, f"http://127.0.0.1:{port}/answers"
    finally:
        server.should_exit = True
        await task


@asynccontextmanager
async def service_with_webhook(
    database_url: str, tmp_path: Path, url: str, **overrides: str
) -> AsyncIterator[Service]:
    flows = write_flows(tmp_path / "flows", visits=FLOW.replace("URL", url))
    settings = make_settings(
        database_url, flows_dir=str(flows), **({"action_secret": SECRET, "dispatcher": "true"} | overrides)
    )
    async with running(settings) as service:
        yield service


async def confirm_visit(service: Service) -> dict[str, Any]:
    """Send a tagged message with data, and the phone answers TAK; returns the message."""
    body = {"to": PHONE, "text": "Wizyta jutro. TAK/NIE?", "tag": "visit", "data": {"visit": 1234}}
    sent: dict[str, Any] = (await service.api.post("/api/messages", json=body)).json()
    await send_mo(service, sender=PHONE, text="tak", ext_id=sent["ext_id"], time=str(int(time.time())))
    return sent


async def actions_of(service: Service, message_id: int) -> list[dict[str, Any]]:
    actions: list[dict[str, Any]] = (await service.api.get(f"/api/messages/{message_id}")).json()["actions"]
    return actions


async def action_when(service: Service, message_id: int, status: str) -> dict[str, Any]:
    """The message's one action, once it has come to ``status`` (actions go in the background)."""

    async def reached() -> bool:
        return [a["status"] for a in await actions_of(service, message_id)] == [status]

    await until(reached)
    return (await actions_of(service, message_id))[0]


def documented_receiver() -> Callable[[dict[str, str], bytes, str], bool]:
    """The ``trusted`` function docs/api.md gives receivers, as written there."""
    text = (Path(__file__).parent.parent / "docs" / "api.md").read_text(encoding="utf-8")
    block = next(b for b in text.split("```python\n")[1:] if "def trusted(" in b).split("```")[0]
    scope: dict[str, Any] = {}
    exec(block, scope)
    trusted: Callable[[dict[str, str], bytes, str], bool] = scope["trusted"]
    return trusted


def verify(headers: dict[str, str], body: bytes) -> None:
    """What a receiver does: recompute the HMAC over id, timestamp and body, refuse stale timestamps."""
    assert documented_receiver()(headers, body, SECRET)
    assert abs(time.time() - int(headers["webhook-timestamp"])) < 60


async def test_answer_is_posted_signed_with_the_message_its_data_and_the_answer(
    database_url: str, tmp_path: Path
) -> None:
    async with (
        receiving(200) as (receiver, url),
        service_with_webhook(database_url, tmp_path, url) as service,
    ):
        sent = await confirm_visit(service)

        action = await action_when(service, sent["id"], "delivered")
    ((headers, body),) = receiver.requests
    verify(headers, body)
    assert headers["content-type"] == "application/json"
    assert headers["webhook-id"] == str(action["id"])
    assert headers["webhook-signature"].startswith("v1,")
    payload = json.loads(body)
    assert payload["message"] | {"sent_at": None} == {
        "id": sent["id"],
        "ext_id": sent["ext_id"],
        "to": PHONE,
        "text": "Wizyta jutro. TAK/NIE?",
        "tag": "visit",
        "data": {"visit": 1234},
        "sent_at": None,
    }
    assert payload["answer"]["class"] == "confirmed"
    assert payload["answer"]["text"] == "tak"
    assert len(payload["answer"]["sms_id"]) == 32
    assert (action["attempts"], action["last_error"], action["url"]) == (1, None, url)


def test_signature_is_base64_hmac_sha256_over_id_dot_timestamp_dot_body() -> None:
    body = b'{"answer":{"class":"confirmed"}}'
    expected = base64.b64encode(hmac.new(b"k", b"7.1764540000." + body, hashlib.sha256).digest()).decode()
    assert sign("k", "7", "1764540000", body) == f"v1,{expected}"
    assert sign("k", "7", "1764540001", body) != sign("k", "7", "1764540000", body)  # nor a new time
    assert sign("k", "8", "1764540000", body) != sign("k", "7", "1764540000", body)  # nor a new id


def test_a_whsec_secret_is_the_base64_key_standard_webhooks_libraries_use() -> None:
    key = b"0123456789abcdef0123456789abcdef"
    secret = "whsec_" + base64.b64encode(key).decode()
    expected = base64.b64encode(hmac.new(key, b"msg_1.1764540000.{}", hashlib.sha256).digest()).decode()
    assert sign(secret, "msg_1", "1764540000", b"{}") == f"v1,{expected}"


async def test_documented_receiver_refuses_a_captured_request_replayed_under_another_id(
    database_url: str, tmp_path: Path
) -> None:
    async with (
        receiving(200) as (receiver, url),
        service_with_webhook(database_url, tmp_path, url) as service,
    ):
        sent = await confirm_visit(service)

        await action_when(service, sent["id"], "delivered")
    ((headers, body),) = receiver.requests
    trusted = documented_receiver()
    assert trusted(headers, body, SECRET)
    replayed = headers | {"webhook-id": str(int(headers["webhook-id"]) + 1)}
    assert not trusted(replayed, body, SECRET)
    assert not trusted(headers, body.replace(b"confirmed", b"declined"), SECRET)
    assert not trusted(headers | {"webhook-timestamp": str(int(time.time()) - 600)}, body, SECRET)


async def test_action_is_retried_after_the_receiver_answers_500(database_url: str, tmp_path: Path) -> None:
    async with (
        receiving(500, 200) as (receiver, url),
        service_with_webhook(database_url, tmp_path, url) as service,
    ):
        sent = await confirm_visit(service)

        action = await action_when(service, sent["id"], "delivered")
    assert len(receiver.requests) == 2
    for headers, body in receiver.requests:
        verify(headers, body)
    assert receiver.requests[0][1] == receiver.requests[1][1]  # the same body, signed anew
    assert (action["attempts"], action["last_error"]) == (2, None)


async def test_action_fails_once_older_than_the_max_age(database_url: str, tmp_path: Path) -> None:
    async with (
        receiving(503) as (receiver, url),
        service_with_webhook(database_url, tmp_path, url, send_max_age="1") as service,
    ):
        sent = await confirm_visit(service)

        action = await action_when(service, sent["id"], "failed")
    assert action["last_error"].startswith(f"gave up after {action['attempts']} attempt(s) in ")
    assert action["last_error"].endswith("s (SMSFLOWS_SEND_MAX_AGE=1): HTTP 503: try again")
    assert action["attempts"] == len(receiver.requests) >= 1


async def test_without_a_secret_the_action_is_held_and_says_why(database_url: str, tmp_path: Path) -> None:
    async with (
        receiving(200) as (receiver, url),
        service_with_webhook(database_url, tmp_path, url, action_secret="") as service,
    ):
        sent = await confirm_visit(service)

        async def tried() -> bool:
            return any(a["last_error"] for a in await actions_of(service, sent["id"]))

        await until(tried)
        action = (await actions_of(service, sent["id"]))[0]
    assert action["status"] == "pending"
    assert "SMSFLOWS_ACTION_SECRET is not set" in action["last_error"]
    assert receiver.requests == []


@pytest.mark.parametrize("answer", ["zobaczymy", "NIE"])
async def test_only_an_understood_first_answer_posts_an_action(
    database_url: str, tmp_path: Path, answer: str
) -> None:
    async with (
        receiving(200) as (_, url),
        service_with_webhook(database_url, tmp_path, url) as service,
    ):
        sent = await confirm_visit(service)
        await send_mo(service, sender=PHONE, text=answer, ext_id=sent["ext_id"], time=str(int(time.time())))
        actions = await service.rows("SELECT count(*) FROM send_back_actions")
    assert actions[0][0] == 1  # the first answer (TAK) posted one; later answers none
