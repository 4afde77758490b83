"""The fake Mobitex over real HTTP: it validates like Mobitex, fails on demand, and plays the phone."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import uvicorn

from app.db.engine import create_engine
from app.main import create_app
from app.mobitex.client import MobitexClient
from app.mobitex.fake_gateway import FakeGatewayConfig, fake_gateway_running
from app.server import server_options
from app.settings import Settings
from tests.conftest import free_port, make_settings, running

USER, PASSWORD = "konto", "sekret"
MD5 = hashlib.md5(PASSWORD.encode()).hexdigest()
PHONE = "48600123456"
CONFIG = FakeGatewayConfig(user=USER, password=PASSWORD, senders=("70120", "SMSFLOWS"))


@pytest.fixture
async def gateway() -> AsyncIterator[str]:
    async with fake_gateway_running(CONFIG) as url:
        yield url


def mt_form(**fields: str) -> dict[str, str]:
    """A valid sms.php request; keyword arguments replace fields (``from_`` is ``from``)."""
    form = {"user": USER, "pass": MD5, "type": "sms", "number": PHONE, "text": "GLOS A", "from": "70120"}
    form.update({k.rstrip("_"): v for k, v in fields.items()})
    return form


async def call(gateway: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gateway) as http:
        return await http.request(method, path, **kwargs)


async def status_of(gateway: str, **fields: str) -> str:
    """The status code of the one answer line to a POST of ``mt_form(**fields)``."""
    response = await call(gateway, "POST", "/sms.php", data=mt_form(**fields))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    line = response.text.strip()
    assert line.count("\n") == 0, line
    return line.split(",")[0].removeprefix("Status: ")


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    """Wait (10 s at most) for ``check`` to come true: the fake delivers in the background."""
    for _ in range(200):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("still not true after 10 s")


async def test_valid_request_is_accepted_with_a_32_hex_id_and_recorded(gateway: str) -> None:
    response = await call(gateway, "POST", "/sms.php", data=mt_form(ext_id="outbox-1"))
    status, message_id, number = (part.split(": ")[1] for part in response.text.strip().split(", "))
    assert (status, number) == ("002", PHONE)
    assert len(message_id) == 32 and int(message_id, 16) >= 0
    recorded = (await call(gateway, "GET", "/fake/messages")).json()
    assert len(recorded) == 1
    assert {k: v for k, v in recorded[0].items() if k != "received_at"} == {
        "id": message_id,
        "number": PHONE,
        "text": "GLOS A",
        "type": "sms",
        "from": "70120",
        "ext_id": "outbox-1",
    }


async def test_get_is_accepted_like_post(gateway: str) -> None:
    response = await call(gateway, "GET", "/sms.php", params=mt_form(text="Zażółć", type="unicode"))
    assert response.text.startswith("Status: 002, Id: ")
    assert (await call(gateway, "GET", "/fake/messages")).json()[0]["text"] == "Zażółć"


async def test_windows_1250_body_is_read_as_mobitex_reads_it(gateway: str) -> None:
    body = urlencode(mt_form(text="Głos na Łódź", type="unicode"), encoding="windows-1250")
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=windows-1250"}
    response = await call(gateway, "POST", "/sms.php", content=body, headers=headers)
    assert response.text.startswith("Status: 002")
    assert (await call(gateway, "GET", "/fake/messages")).json()[0]["text"] == "Głos na Łódź"


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"user": "someone"}, "001"),
        ({"pass": PASSWORD}, "001"),  # the password itself, not its MD5
        ({"pass": ""}, "001"),
        ({"number": "+48600123456"}, "106"),
        ({"number": "600123456"}, "106"),
        ({"number": ""}, "106"),
        ({"type": "mms"}, "107"),
        ({"type": ""}, "107"),
        ({"from_": ""}, "104"),
        ({"from_": "A-VERY-LONG-NAME"}, "104"),
        ({"from_": "OTHERBRAND"}, "114"),
        ({"text": ""}, "103"),
        ({"type": "wap_push", "text": "no separator"}, "103"),
        ({"type": "binary", "text": "xyz"}, "103"),
        ({"type": "sms", "text": "a" * 160}, "002"),
        ({"type": "sms", "text": "a" * 161}, "105"),
        ({"type": "sms", "text": "€" * 81}, "105"),  # extension characters count twice: 162
        ({"type": "sms_flash", "text": "a" * 161}, "105"),
        ({"type": "concat", "text": "a" * 459}, "002"),
        ({"type": "concat", "text": "a" * 460}, "105"),
        ({"type": "unicode", "text": "ą" * 70}, "002"),
        ({"type": "unicode", "text": "ą" * 71}, "105"),
        ({"type": "unicode_concat", "text": "ą" * 201}, "002"),
        ({"type": "unicode_concat", "text": "ą" * 202}, "105"),
        ({"type": "wap_push", "text": "Title|http://example.com"}, "002"),
        ({"type": "binary", "text": "0A" * 140}, "002"),
        ({"type": "binary", "text": "0A" * 141}, "105"),
        ({"from_": "SMSFLOWS"}, "002"),
    ],
)
async def test_requests_are_validated_like_mobitex(gateway: str, fields: dict[str, str], status: str) -> None:
    assert await status_of(gateway, **fields) == status


async def test_comma_list_of_numbers_gets_one_line_each(gateway: str) -> None:
    response = await call(gateway, "POST", "/sms.php", data=mt_form(number=f"{PHONE},123,48600111222"))
    lines = response.text.strip().splitlines()
    assert [line.split(",")[0] for line in lines] == ["Status: 002", "Status: 106", "Status: 002"]
    assert lines[1] == "Status: 106, Id: , Number: 123"
    assert len((await call(gateway, "GET", "/fake/messages")).json()) == 2


async def test_caller_outside_the_allowed_addresses_gets_206() -> None:
    config = FakeGatewayConfig(user=USER, password=PASSWORD, allowed_ips=("10.0.0.0/8",))
    async with fake_gateway_running(config) as url:
        assert await status_of(url) == "206"
        assert (
            await call(url, "GET", "/balance.php", params={"user": USER, "pass": MD5})
        ).text == "ERROR 206\n"


async def test_balance_answers_ok_or_error(gateway: str) -> None:
    ok = await call(gateway, "GET", "/balance.php", params={"user": USER, "pass": MD5})
    assert ok.text == "OK 100.00\n"
    wrong = await call(gateway, "POST", "/balance.php", data={"user": USER, "pass": "0" * 32})
    assert wrong.text == "ERROR 001\n"


async def test_messages_can_be_filtered_by_number_and_forgotten(gateway: str) -> None:
    for number in (PHONE, "48600111222", PHONE):
        await call(gateway, "POST", "/sms.php", data=mt_form(number=number))
    only = (await call(gateway, "GET", "/fake/messages", params={"number": PHONE})).json()
    assert [m["number"] for m in only] == [PHONE, PHONE]
    assert (await call(gateway, "DELETE", "/fake/messages")).status_code == 204
    assert (await call(gateway, "GET", "/fake/messages")).json() == []


async def test_injected_failures_apply_to_the_next_requests_only(gateway: str) -> None:
    assert (await call(gateway, "POST", "/fake/fail", json={"status": "202", "count": 2})).json() == {
        "pending": 2
    }
    assert [await status_of(gateway) for _ in range(3)] == ["202", "202", "002"]
    assert len((await call(gateway, "GET", "/fake/messages")).json()) == 1


async def test_injected_http_error_and_delay(gateway: str) -> None:
    await call(gateway, "POST", "/fake/fail", json={"http_status": 500})
    await call(gateway, "POST", "/fake/fail", json={"delay": 0.3})
    assert (await call(gateway, "POST", "/sms.php", data=mt_form())).status_code == 500
    started = time.monotonic()
    assert await status_of(gateway) == "002"
    assert time.monotonic() - started >= 0.3


async def test_held_request_waits_until_released_then_answers(gateway: str) -> None:
    assert (await call(gateway, "POST", "/fake/fail", json={"hold": True, "status": "202"})).json() == {
        "pending": 1
    }
    held = asyncio.create_task(status_of(gateway))
    await until(lambda: _released_after_arrival(gateway))
    assert await held == "202"  # the failure's status still applies once it goes on
    assert (await call(gateway, "POST", "/fake/release")).json() == {"released": 0}
    assert await status_of(gateway) == "002"  # only the next request was held


async def _released_after_arrival(gateway: str) -> bool:
    """Release what is held; true once the held request had arrived and was let go."""
    response = await call(gateway, "POST", "/fake/release")
    released: int = response.json()["released"]
    return released == 1


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"count": 0, "status": "201"},
        {"status": "2x1"},
        {"http_status": 200},
        {"sttus": "201"},
        {"hold": False},
    ],
)
async def test_a_failure_that_says_nothing_or_nonsense_is_refused(gateway: str, body: dict[str, Any]) -> None:
    assert (await call(gateway, "POST", "/fake/fail", json=body)).status_code == 400
    assert await status_of(gateway) == "002"


async def test_reply_needs_a_webhook_and_a_known_message(gateway: str) -> None:
    no_webhook = await call(gateway, "POST", "/fake/reply", json={"text": "TAK", "sender": PHONE})
    assert no_webhook.status_code == 400
    assert "--webhook" in no_webhook.json()["detail"]
    async with fake_gateway_running(FakeGatewayConfig(webhook_url="http://127.0.0.1:9/mo")) as url:
        unknown = await call(url, "POST", "/fake/reply", json={"text": "TAK", "message_id": "0" * 32})
        assert unknown.status_code == 404


# --- playing the phone against the real service -------------------------------------------------


async def sent_by(gateway: str, text: str = "Głosuj: odpisz TAK", ext_id: str | None = None) -> str:
    """Send one MT through the client as the service would, and return Mobitex's Id of it."""
    async with MobitexClient(f"{gateway}/sms.php", USER, PASSWORD, "70120") as client:
        return (await client.send(PHONE, text, ext_id=ext_id)).message_id


async def stored(settings: Settings, sms_id: str) -> dict[str, Any] | None:
    from sqlalchemy import text

    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT number, sender, text, ext_id, smcsc FROM inbound_messages WHERE sms_id = :s"
                    ),
                    {"s": sms_id},
                )
            ).first()
    finally:
        await engine.dispose()
    return dict(row._mapping) if row else None


async def deliveries(gateway: str) -> list[dict[str, Any]]:
    response = await call(gateway, "GET", "/fake/deliveries")
    assert response.status_code == 200
    result: list[dict[str, Any]] = response.json()
    return result


async def all_delivered(gateway: str, count: int = 1) -> bool:
    done = [d for d in await deliveries(gateway) if d["delivered_at"]]
    return len(done) >= count


@pytest.mark.parametrize(("mode", "client_ext_id"), [("mobitex_id", False), ("client_ext_id", True)])
async def test_reply_reaches_the_service_with_the_ext_id_of_the_message_answered(
    database_url: str, mode: str, client_ext_id: bool
) -> None:
    async with running(make_settings(database_url)) as service:
        config = FakeGatewayConfig(
            user=USER,
            password=PASSWORD,
            webhook_url=service.mo_url,
            ext_id_mode=mode,  # type: ignore[arg-type]
        )
        async with fake_gateway_running(config) as gateway:
            message_id = await sent_by(gateway, ext_id="outbox-17")
            answer = await call(
                gateway, "POST", "/fake/reply", json={"text": "TAK", "message_id": message_id}
            )
            assert answer.status_code == 202
            sms_id = answer.json()["form"]["sms_id"]
            await until(lambda: all_delivered(gateway))
            assert (await deliveries(gateway))[0]["attempts"] == 1
        row = await stored(service.settings, sms_id)
    assert row == {
        "number": "70120",  # the `from` of the message answered
        "sender": PHONE,
        "text": "TAK",
        "ext_id": "outbox-17" if client_ext_id else message_id,
        "smcsc": "48602951111",
    }


async def test_phone_writing_first_sends_no_ext_id_and_the_short_number(database_url: str) -> None:
    async with running(make_settings(database_url)) as service:
        config = FakeGatewayConfig(webhook_url=service.mo_url, short_number="4112")
        async with fake_gateway_running(config) as gateway:
            body = {"text": "START", "sender": "48600999888"}
            sms_id = (await call(gateway, "POST", "/fake/reply", json=body)).json()["form"]["sms_id"]
            await until(lambda: all_delivered(gateway))
        row = await stored(service.settings, sms_id)
    assert row is not None
    assert (row["number"], row["sender"], row["ext_id"]) == ("4112", "48600999888", None)


async def test_auto_reply_answers_every_accepted_message(database_url: str) -> None:
    async with running(make_settings(database_url)) as service:
        config = FakeGatewayConfig(
            user=USER, password=PASSWORD, webhook_url=service.mo_url, auto_reply="STOP", auto_reply_delay=0.05
        )
        async with fake_gateway_running(config) as gateway:
            first, second = await sent_by(gateway), await sent_by(gateway, "Druga wiadomość")
            await until(lambda: all_delivered(gateway, 2))
        rows = await service.rows("SELECT ext_id, text, sender FROM inbound_messages ORDER BY ext_id")
    assert sorted(map(tuple, rows)) == sorted([(first, "STOP", PHONE), (second, "STOP", PHONE)])


async def test_reply_refused_with_403_is_resent_every_retry_interval(database_url: str) -> None:
    # A service whose allowlist leaves out loopback answers 403: Mobitex would retry forever.
    async with running(make_settings(database_url, mo_allowed_ips="10.9.8.7")) as service:
        config = FakeGatewayConfig(webhook_url=service.mo_url, retry_interval=0.1)
        async with fake_gateway_running(config) as gateway:
            await call(
                gateway, "POST", "/fake/reply", json={"text": "TAK", "sender": PHONE, "number": "70120"}
            )

            async def three_tries() -> bool:
                return bool((await deliveries(gateway))[0]["attempts"] >= 3)

            await until(three_tries)
            delivery = (await deliveries(gateway))[0]
        assert await service.scalar("SELECT count(*) FROM inbound_messages") == 0
    assert (delivery["last_answer"], delivery["delivered_at"]) == ("HTTP 403", None)


async def test_reply_is_resent_until_the_service_is_up_and_answers_200(database_url: str) -> None:
    port = free_port()
    settings = make_settings(database_url)
    config = FakeGatewayConfig(webhook_url=f"http://127.0.0.1:{port}{settings.mo_path}", retry_interval=0.1)
    async with fake_gateway_running(config) as gateway:
        body = {"text": "TAK", "sender": PHONE, "number": "70120"}
        sms_id = (await call(gateway, "POST", "/fake/reply", json=body)).json()["form"]["sms_id"]

        async def refused_twice() -> bool:
            delivery = (await deliveries(gateway))[0]
            return bool(delivery["attempts"] >= 2 and delivery["last_answer"] == "ConnectError")

        await until(refused_twice)
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, **server_options(settings))
        )
        task = asyncio.create_task(server.serve())
        try:
            await until(lambda: all_delivered(gateway))
            row = await stored(settings, sms_id)
        finally:
            server.should_exit = True
            await task
    assert row is not None
    assert row["text"] == "TAK"


def test_fake_mobitex_command_serves_and_prints_what_to_use() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "fake-mobitex", "--port", str(port), "--user", "demo",
         "--password", "demo-pass", "--sender", "SMSFLOWS"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                response = httpx.post(
                    f"http://127.0.0.1:{port}/sms.php",
                    data={"user": "demo", "pass": hashlib.md5(b"demo-pass").hexdigest(), "type": "sms",
                          "number": PHONE, "text": "hej", "from": "SMSFLOWS"},
                )  # fmt: skip
                break
            except httpx.ConnectError:
                assert process.poll() is None, process.communicate()[1]
                assert time.monotonic() < deadline, "the fake gateway did not start"
                time.sleep(0.1)
        assert response.text.startswith("Status: 002, Id: ")
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=20)
    assert f"SMSFLOWS_MOBITEX_URL=http://127.0.0.1:{port}/sms.php" in out
    assert "SMSFLOWS_MOBITEX_USER=demo" in out
    assert "SMSFLOWS_MOBITEX_PASSWORD=demo-pass" in out
    assert "SMSFLOWS_MOBITEX_FROM=SMSFLOWS" in out


def test_fake_mobitex_command_refuses_auto_reply_without_a_webhook() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "fake-mobitex", "--auto-reply", "TAK"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "auto_reply needs webhook_url" in result.stderr
    assert "Traceback" not in result.stderr
