"""Sending from applications: ``POST /api/messages`` over real HTTP, ``smsflows send`` and ``broadcast``."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import insert, text

from app.cli import main
from app.db.engine import create_engine
from app.db.flow_models import Subscription
from app.db.migrate import upgrade
from app.db.models import Contact
from tests.conftest import Service, make_settings, running

PHONE = "48600123456"
LONG = "Zażółć gęślą jaźń. " * 12  # UCS-2, 228 units: over the 201 of three parts


@pytest.fixture
async def service(database_url: str) -> AsyncIterator[Service]:
    # The dispatcher is off so that every message stays as it was queued.
    async with running(make_settings(database_url, dispatcher="false")) as svc:
        yield svc


async def post(service: Service, **body: Any) -> httpx.Response:
    return await service.api.post("/api/messages", json={"to": PHONE, "text": "Hej"} | body)


async def test_message_is_queued_with_our_ext_id_tag_data_and_expiry(service: Service) -> None:
    expires = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    response = await post(
        service,
        to="+48 600 123 456",
        tag="visit",
        data={"visit": 7, "who": "Anna"},
        expires_at=expires.isoformat(),
    )
    assert response.status_code == 201
    message = response.json()
    assert re.fullmatch("[0-9a-f]{32}", message["ext_id"])
    assert {
        k: message[k] for k in ("to", "text", "status", "tag", "data", "encoding", "parts", "attempts")
    } == {
        "to": PHONE,
        "text": "Hej",
        "status": "queued",
        "tag": "visit",
        "data": {"visit": 7, "who": "Anna"},
        "encoding": "gsm7",
        "parts": 1,
        "attempts": 0,
    }
    assert datetime.fromisoformat(message["expires_at"]) == expires
    assert (message["answers"], message["actions"], message["answer"]) == ([], [], None)
    assert await service.scalar("SELECT status FROM outbox WHERE id = :i", i=message["id"]) == "queued"
    assert (await service.api.get(f"/api/messages/{message['id']}")).json() == message


async def test_same_key_and_same_body_is_the_same_message(service: Service) -> None:
    first = await post(service, idempotency_key="order-1", data={"b": 1, "a": 2})
    again = await post(service, idempotency_key="order-1", data={"a": 2, "b": 1})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert await service.scalar("SELECT count(*) FROM outbox") == 1


async def test_same_key_with_another_body_is_a_conflict(service: Service) -> None:
    first = await post(service, idempotency_key="order-2")
    other = await post(service, idempotency_key="order-2", text="Hej!", tag="visit")
    assert other.status_code == 409
    assert other.json()["detail"] == (
        f"idempotency_key 'order-2' was used for message {first.json()['id']}, whose text, tag differ; "
        "use a new key for a new message"
    )
    assert await service.scalar("SELECT count(*) FROM outbox") == 1


async def test_retries_racing_each_other_make_one_message(service: Service) -> None:
    answers = await asyncio.gather(*(post(service, idempotency_key="race") for _ in range(10)))
    assert sorted(r.status_code for r in answers) == [200] * 9 + [201]
    assert len({r.json()["id"] for r in answers}) == 1
    assert await service.scalar("SELECT count(*) FROM outbox") == 1


async def test_without_a_key_each_request_is_a_new_message(service: Service) -> None:
    assert [(await post(service)).status_code for _ in range(2)] == [201, 201]
    assert await service.scalar("SELECT count(*) FROM outbox") == 2


async def test_too_long_text_is_refused_with_what_to_do(service: Service) -> None:
    response = await post(service, text=LONG)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail.startswith("The message is 228 UCS-2 units long (ucs2, 4 parts of up to 67)")
    assert "transliterate the Polish letters" in detail
    assert await service.scalar("SELECT count(*) FROM outbox") == 0


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"to": "12345"}, "to: '12345' is not a phone number (read as +4812345, which no numbering plan"),
        ({"to": "48 600 ABC"}, "to: '48 600 ABC' is not a phone number"),
        (
            {"to": "+48 (0) 600 123 456"},
            "to: '+48 (0) 600 123 456' is not a phone number (read as +480600123456",
        ),
        ({"to": "123456789"}, "to: '123456789' is a landline (+48123456789), which cannot get SMS"),
        ({"to": "+48 800 123 456"}, "to: '+48 800 123 456' is a toll-free line (+48800123456)"),
        ({"to": "4860012345"}, "to: '4860012345' is not a phone number"),
        ({"text": "  "}, "text: the message is empty"),
        ({"expires_at": "2026-12-01T20:00:00"}, "expires_at: give a timezone"),
        ({"expires_at": "2020-01-01T00:00:00Z"}, "expires_at: the time is already past"),
        ({"flow": "nope"}, "flow: no flow 'nope' is running (flows: none)"),
    ],
)
async def test_invalid_message_is_refused_with_the_field(
    service: Service, body: dict[str, Any], detail: str
) -> None:
    response = await post(service, **body)
    assert response.status_code == 422
    assert response.json()["detail"].startswith(detail)


@pytest.mark.parametrize(
    ("typed", "queued"),
    [
        ("+48 600 123 456", "48600123456"),
        ("0048 600-123-456", "48600123456"),
        ("600123456", "48600123456"),
        ("48600123456", "48600123456"),
        ("+49 151 12345678", "4915112345678"),
    ],
)
async def test_mobile_numbers_in_any_form_are_queued_in_international_digits(
    service: Service, typed: str, queued: str
) -> None:
    response = await post(service, to=typed)
    assert response.status_code == 201, response.text
    assert response.json()["to"] == queued


async def test_unknown_field_and_bad_tag_are_refused_by_the_schema(service: Service) -> None:
    unknown = await post(service, sender="70120")
    assert unknown.status_code == 400
    assert "unknown field `sender`" in str(unknown.json())
    tag = await post(service, tag="two words")
    assert tag.status_code == 400
    assert tag.json()["extra"][0]["key"] == "tag"


async def test_phone_that_sent_stop_gets_nothing(service: Service) -> None:
    async with service.engine.begin() as conn:
        now = datetime.now(UTC)
        await conn.execute(
            insert(Contact),
            [{"phone": PHONE, "first_seen": now, "last_seen": now, "messages": 1, "opted_out_at": now}],
        )
    response = await post(service)
    assert response.status_code == 422
    assert "sent STOP on" in response.json()["detail"]
    assert "until it sends START" in response.json()["detail"]


async def test_token_is_required_and_unknown_message_is_404(service: Service) -> None:
    async with httpx.AsyncClient(base_url=service.base_url) as anonymous:
        assert (await anonymous.post("/api/messages", json={"to": PHONE, "text": "x"})).status_code == 401
    missing = await service.api.get("/api/messages/999")
    assert missing.status_code == 404
    assert missing.json()["detail"] == "no message 999; GET /api/outbox lists them"


# The command line, against the same databases.


@pytest.fixture
def cli_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment of a `smsflows` run on a migrated database, away from any .env file."""
    monkeypatch.chdir(tmp_path)

    async def migrate() -> None:
        engine = create_engine(make_settings(database_url))
        await upgrade(engine)
        await engine.dispose()

    asyncio.run(migrate())
    return {"SMSFLOWS_DATABASE_URL": database_url, "SMSFLOWS_FLOWS_DIR": str(tmp_path / "none")}


def smsflows(env: dict[str, str], *args: str) -> Any:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def rows(database_url: str, sql: str) -> list[Any]:
    async def read() -> list[Any]:
        engine = create_engine(make_settings(database_url))
        async with engine.connect() as conn:
            result = list((await conn.exec_driver_sql(sql)).all())
        await engine.dispose()
        return result

    return asyncio.run(read())


def test_send_command_sees_the_settings_of_the_service_make_run_started(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "var").mkdir(exist_ok=True)
    (tmp_path / "var" / "make-run.env").write_text(
        "SMSFLOWS_MOBITEX_USER=smsflows\nSMSFLOWS_MOBITEX_PASSWORD=smsflows\n"
        "SMSFLOWS_MOBITEX_URL=http://127.0.0.1:8099/sms.php\n"
    )
    result = smsflows(cli_env, "send", "--to", "600 123 456", "--text", "Wizyta?")
    assert result.exit_code == 0, result.output
    assert "the running service sends it" in result.stdout
    assert "dry-run" not in result.stdout


def test_send_command_queues_a_message(cli_env: dict[str, str], database_url: str) -> None:
    result = smsflows(cli_env, "send", "--to", "600 123 456", "--text", "Wizyta?", "--tag", "visit",
                      "--data", '{"visit": 12}')  # fmt: skip
    assert result.exit_code == 0, result.output
    assert re.match(r"message 1 queued \(ext_id [0-9a-f]{32}\); sending is in dry-run mode", result.stdout)
    assert rows(database_url, "SELECT to_number, text, tag, data, status FROM outbox") == [
        (PHONE, "Wizyta?", "visit", '{"visit":12}', "queued")
    ]


def test_send_command_takes_the_timeout_policy(cli_env: dict[str, str], database_url: str) -> None:
    held = smsflows(cli_env, "send", "--to", PHONE, "--text", "Wynik", "--on-timeout", "hold")
    assert held.exit_code == 0, held.output
    default = smsflows(cli_env, "send", "--to", PHONE, "--text", "Wynik 2")
    assert default.exit_code == 0, default.output
    assert rows(database_url, "SELECT text, on_timeout FROM outbox ORDER BY id") == [
        ("Wynik", "hold"),
        ("Wynik 2", None),  # the setting decides when it is sent
    ]
    wrong = smsflows(cli_env, "send", "--to", PHONE, "--text", "x", "--on-timeout", "never")
    assert wrong.exit_code == 2
    assert "'never' is not one of 'retry', 'hold'" in wrong.output


def test_send_command_explains_bad_input_without_a_traceback(cli_env: dict[str, str]) -> None:
    bad_json = smsflows(cli_env, "send", "--to", PHONE, "--text", "x", "--data", "{nope")
    assert bad_json.exit_code == 1
    assert "--data: not JSON" in bad_json.output
    landline = smsflows(cli_env, "send", "--to", "22 123 45 67", "--text", "x")
    assert landline.exit_code == 1
    assert "Error: to: '22 123 45 67' is a landline (+48221234567), which cannot get SMS" in landline.output
    assert "Traceback" not in landline.output
    too_long = smsflows(cli_env, "send", "--to", PHONE, "--text", LONG)
    assert too_long.exit_code == 1
    assert "Error: The message is 228 UCS-2 units long" in too_long.output


def subscribe(database_url: str, active: list[str], left: list[str], stopped: list[str]) -> None:
    async def write() -> None:
        engine = create_engine(make_settings(database_url))
        now = datetime.now(UTC)
        common = {"list_id": "news", "flow_id": "news", "flow_hash": "x", "requested_at": now}
        async with engine.begin() as conn:
            members = [
                {"phone": p, "status": "active", "confirmed_at": now, "left_at": None}
                for p in active + stopped
            ]
            members += [{"phone": p, "status": "left", "confirmed_at": now, "left_at": now} for p in left]
            await conn.execute(insert(Subscription), [common | m for m in members])
            if stopped:
                await conn.execute(
                    insert(Contact),
                    [
                        {"phone": p, "first_seen": now, "last_seen": now, "messages": 1, "opted_out_at": now}
                        for p in stopped
                    ],
                )
        await engine.dispose()

    asyncio.run(write())


def test_broadcast_dry_run_shows_count_and_cost_and_queues_nothing(
    cli_env: dict[str, str], database_url: str
) -> None:
    subscribe(database_url, ["48600000001", "48600000002", "48600000003"], ["48600000004"], ["48600000005"])
    text = "Nowy odcinek w piątek o 20:00! " * 3  # UCS-2 (ą), 93 units: 2 parts
    result = smsflows(cli_env, "broadcast", "news", "--text", text, "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "Dry run: 3 recipient(s) on list news (1 opted out, skipped); each message is 93 UCS-2 characters "
        "in 2 part(s): 6 SMS part(s) in all",
        "nothing was queued",
    ]
    assert rows(database_url, "SELECT count(*) FROM outbox") == [(0,)]


def test_broadcast_queues_one_message_per_member_and_a_rerun_with_a_key_adds_none(
    cli_env: dict[str, str], database_url: str
) -> None:
    subscribe(database_url, ["48600000001", "48600000002"], [], ["48600000005"])
    args = ("broadcast", "news", "--text", "Hej", "--tag", "news", "--idempotency-key", "dec-1")
    first = smsflows(cli_env, *args)
    assert first.exit_code == 0, first.output
    assert "2 message(s) queued;" in first.stdout
    again = smsflows(cli_env, *args)
    assert "0 message(s) queued, 2 already queued by an earlier run with this key" in again.stdout
    assert rows(database_url, "SELECT to_number, tag, idempotency_key FROM outbox ORDER BY to_number") == [
        ("48600000001", "news", "dec-1:48600000001"),
        ("48600000002", "news", "dec-1:48600000002"),
    ]


def test_broadcast_to_an_unknown_list_names_the_lists(cli_env: dict[str, str], database_url: str) -> None:
    subscribe(database_url, ["48600000001"], [], [])
    result = smsflows(cli_env, "broadcast", "sport", "--text", "Hej", "--dry-run")
    assert result.exit_code == 1
    assert "list 'sport' has no active member who may get messages (lists: news)" in result.output


def test_broadcast_skips_a_member_whose_number_cannot_get_sms(
    cli_env: dict[str, str], database_url: str
) -> None:
    subscribe(database_url, ["48600000001", "48221234567"], [], [])
    result = smsflows(cli_env, "broadcast", "news", "--text", "Hej")
    assert result.exit_code == 0, result.output
    assert "1 message(s) queued, 1 skipped;" in result.stdout
    assert "skipped 48221234567: to: '48221234567' is a landline" in result.stderr
    assert rows(database_url, "SELECT to_number FROM outbox") == [("48600000001",)]


def test_outbox_requeue_queues_failed_messages_again_by_mobitex_status(
    cli_env: dict[str, str], database_url: str
) -> None:
    for i in range(4):
        assert smsflows(cli_env, "send", "--to", PHONE, "--text", f"Wiadomosc {i}").exit_code == 0
    no_funds = f"Mobitex refused the message to {PHONE}: status 202 (no funds); top up the account"
    asyncio.run(_fail_messages(database_url, {1: no_funds, 2: no_funds, 3: "gave up after 3 attempt(s)"}))
    preview = smsflows(cli_env, "outbox", "requeue", "--status", "failed", "--error", "202", "--dry-run")
    assert preview.exit_code == 0, preview.output
    assert "2 message(s) would be queued again" in preview.stdout
    done = smsflows(cli_env, "outbox", "requeue", "--status", "failed", "--error", "202")
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith("2 message(s) queued again")
    assert rows(database_url, "SELECT id, status, attempts FROM outbox ORDER BY id") == [
        (1, "queued", 0),
        (2, "queued", 0),
        (3, "failed", 2),
        (4, "queued", 0),
    ]
    later = smsflows(cli_env, "outbox", "requeue", "--status", "failed", "--since", "2999-01-01")
    assert later.stdout.startswith("0 message(s)")
    unknown = smsflows(cli_env, "outbox", "requeue", "--status", "failed", "--error", "999")
    assert unknown.exit_code == 2
    assert "'999' is not a Mobitex status code; known codes: " in unknown.output


async def _fail_messages(database_url: str, errors: dict[int, str]) -> None:
    engine = create_engine(make_settings(database_url))
    async with engine.begin() as conn:
        for message_id, error in errors.items():
            await conn.execute(
                text("UPDATE outbox SET status = 'failed', attempts = 2, last_error = :e WHERE id = :i"),
                {"e": error, "i": message_id},
            )
    await engine.dispose()
